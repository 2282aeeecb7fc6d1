"""What the OpenAPI schema says beyond the routes: the description, tags, shared error answers."""

from __future__ import annotations

from typing import Any

from ingestd.api.schemas import ErrorBody

API_DESCRIPTION = """\
Upload documents, follow their jobs, search their chunks. Every `/v1` route but the LlamaParse
webhook needs `Authorization: Bearer <API key>` (`ingestd keys create`). A caller sees only its
owner's documents and jobs; another owner's id answers 404. Every error is
`{"error": {"code", "message", "request_id"}}` and every answer has an `X-Request-ID` header.
"""

TAGS: list[dict[str, Any]] = [
    {"name": "documents", "description": "Upload, list, read and delete documents."},
    {"name": "jobs", "description": "Follow, retry and cancel the processing of documents."},
    {"name": "events", "description": "A live stream of job transitions (server-sent events)."},
    {"name": "search", "description": "Semantic search over the caller's chunks."},
    {"name": "health", "description": "Liveness and readiness."},
    {"name": "webhooks", "description": "Vendor callbacks (signed, not API-key authenticated)."},
    {"name": "dashboard", "description": "What the dashboard page reads (admins only)."},
    {"name": "alerts", "description": "The alert rules, evaluated now (admins only)."},
]


def error_answer(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# Answers every authenticated route may give.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: error_answer("No API key, a malformed one, or an unknown or revoked key."),
    413: error_answer("The request body is larger than allowed."),
    422: error_answer("The request is not valid (parameters, body or JSON depth)."),
    431: error_answer("The request's headers are larger than allowed."),
    500: error_answer("An unexpected error (the request id finds it in the server log)."),
}

Responses = dict[int | str, dict[str, Any]]

NOT_FOUND: Responses = {
    404: error_answer("No such object for this caller (another owner's answers the same).")
}
CONFLICT: Responses = {409: error_answer("The object is not in a state that allows this.")}
NOT_FOUND_OR_CONFLICT: Responses = {**NOT_FOUND, **CONFLICT}
