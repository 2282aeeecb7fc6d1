"""``/v1/documents``: upload (streamed), list, read, page chunks, delete — the caller's own."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from ingestd.api.auth import CurrentPrincipal
from ingestd.api.errors import ApiError
from ingestd.api.openapi import NOT_FOUND, Responses, error_answer
from ingestd.api.routes.common import CursorQuery, LimitQuery, StateQuery, blobs_of, db_of
from ingestd.api.schemas import ChunkPage, Document, DocumentPage, UploadResult
from ingestd.api.uploads import ReceivedUpload, escaped, receive_upload
from ingestd.config import Settings
from ingestd.ingest import NewDocument, record_documents
from ingestd.parsers.detect import SUPPORTED_MEDIA_TYPES, detect_file_media_type
from ingestd.service import documents
from ingestd.service.uploads import StoredAnswer, answer_once

router = APIRouter(prefix="/v1", tags=["documents"])

UPLOAD_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "string", "format": "binary"},
                        "description": "One part per file (repeat the field).",
                    },
                    "metadata": {
                        "type": "string",
                        "description": "A JSON object stored with every file of the request.",
                        "example": '{"team": "finance"}',
                    },
                },
            }
        }
    },
}

UPLOAD_RESPONSES: Responses = {
    200: {"model": UploadResult, "description": "Every file was a duplicate of the owner's."},
    403: error_answer("A non-admin key asked to upload for another owner."),
    413: error_answer("A file, the metadata, the number of parts or the body is too large."),
    409: error_answer(
        "A concurrent request with the same `Idempotency-Key` was still being recorded after "
        "30 s (`idempotency.in_progress`): send it again."
    ),
    415: error_answer("Not multipart/form-data, or a file of an unsupported type."),
    422: error_answer(
        "Not a valid upload (empty file, malformed multipart or metadata), or an "
        "`Idempotency-Key` first used for a different request (`idempotency.mismatch`)."
    ),
}


@router.post(
    "/documents",
    status_code=201,
    response_model=UploadResult,
    responses=UPLOAD_RESPONSES,
    openapi_extra={"requestBody": UPLOAD_BODY},
)
async def upload_documents(
    request: Request,
    principal: CurrentPrincipal,
    owner: Annotated[
        str | None, Query(max_length=200, description="Admins: upload for this owner.")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            description="The same key with the same request (files, names, metadata) answers "
            "the first answer, changing nothing (a concurrent one waits for it); with another "
            "request, 422 `idempotency.mismatch`.",
        ),
    ] = None,
) -> Response:
    """Upload one or more files (form field `file`, repeatable), streamed to the blob store.
    The type is judged from the content. Identical content the owner already has answers the
    existing document (`duplicate`); the answer is 201 if anything new was queued, else 200."""
    target = principal.owner_for_upload(owner)
    settings: Settings = request.app.state.settings
    received = await receive_upload(
        request.headers.get("content-type"), request.stream(), settings.api, settings.home / "tmp"
    )
    try:
        answer = (
            await _answer_once(request, received, target, idempotency_key)
            if idempotency_key
            else await _record(request, received, target)
        )
    finally:
        received.cleanup()
    return JSONResponse(answer.body, status_code=answer.status)


async def _answer_once(
    request: Request, received: ReceivedUpload, owner: str, key: str
) -> StoredAnswer:
    """The answer kept for ``key`` if it was used with this same request; else record the
    upload and keep its answer. The body is read first: it is what the key is compared on."""
    return await answer_once(
        db_of(request),
        owner,
        key,
        received.fingerprint(),
        lambda: _record(request, received, owner),
    )


async def _record(request: Request, received: ReceivedUpload, owner: str) -> StoredAnswer:
    """Store the files and queue their jobs: 201 if anything new was queued, else 200."""
    settings: Settings = request.app.state.settings
    blobs = blobs_of(request)
    rows = await _checked(received)

    async def put_blobs() -> None:
        for f in received.files:
            if await asyncio.to_thread(blobs.put_file, f.path) != f.sha256:
                raise RuntimeError(f"{blobs} keyed {f.filename!r} other than by its sha256")

    results = await record_documents(
        db_of(request),
        rows,
        owner=owner,
        max_attempts=settings.worker.max_attempts,
        put_blobs=put_blobs,
    )
    body = {
        "documents": [
            {
                "document_id": str(r.document_id),
                "job_id": str(r.job_id) if r.job_id else None,
                "filename": r.filename,
                "duplicate": r.duplicate,
            }
            for r in results
        ]
    }
    return StoredAnswer(200 if all(r.duplicate for r in results) else 201, body)


async def _checked(received: ReceivedUpload) -> list[NewDocument]:
    """The documents to record, each file checked first (nothing is stored if one is refused).
    Blobs are content-addressed: a file's key is its sha256."""
    rows = []
    for f in received.files:
        if f.size == 0:
            raise ApiError(422, "upload.empty", f"{f.filename!r} is empty")
        media_type = await asyncio.to_thread(detect_file_media_type, f.path, f.filename)
        if media_type not in SUPPORTED_MEDIA_TYPES:
            raise ApiError(
                415, "upload.unsupported_type", f"{f.filename!r} is {media_type}: not supported"
            )
        metadata = dict(received.metadata)
        if f.raw_filename != f.filename:
            metadata["original_filename"] = escaped(f.raw_filename)
        rows.append(NewDocument(f.filename, media_type, f.size, f.sha256, f.sha256, metadata))
    return rows


@router.get("/documents", response_model=DocumentPage)
async def list_documents(
    request: Request,
    principal: CurrentPrincipal,
    states: StateQuery = None,
    media_types: Annotated[
        list[str] | None, Query(alias="media_type", description="Repeatable.", max_length=20)
    ] = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> dict[str, Any]:
    """Documents, newest first, filtered by their job's state and by media type; cursor-paged."""
    page, next_cursor = await documents.find_documents(
        db_of(request),
        owner=principal.scope,
        states=states,
        media_types=media_types,
        limit=limit,
        cursor=cursor,
    )
    return {"documents": page, "next_cursor": next_cursor}


@router.get("/documents/{document_id}", response_model=Document, responses=NOT_FOUND)
async def get_document(
    request: Request, principal: CurrentPrincipal, document_id: uuid.UUID
) -> Any:
    """One document, with the state of its job."""
    return await documents.get_document(db_of(request), document_id, owner=principal.scope)


@router.get("/documents/{document_id}/chunks", response_model=ChunkPage, responses=NOT_FOUND)
async def get_document_chunks(
    request: Request,
    principal: CurrentPrincipal,
    document_id: uuid.UUID,
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
) -> dict[str, Any]:
    """The document's stored chunks in order (empty until its job is complete); cursor-paged."""
    page, next_cursor = await documents.document_chunks(
        db_of(request), document_id, owner=principal.scope, limit=limit, cursor=cursor
    )
    return {"chunks": page, "next_cursor": next_cursor}


@router.delete(
    "/documents/{document_id}",
    status_code=204,
    response_class=Response,
    responses=NOT_FOUND,
)
async def delete_document(
    request: Request, principal: CurrentPrincipal, document_id: uuid.UUID
) -> Response:
    """Delete a document: its job is cancelled in whatever state it is, its chunks and buffers
    removed, and its blob deleted unless another document uses the same content."""
    await documents.delete_document(
        db_of(request), blobs_of(request), document_id, owner=principal.scope
    )
    return Response(status_code=204)
