"""The ports of the pipeline: the small interfaces that stages call and adapters implement.

The pipeline core (stages, worker) imports these, never a concrete parser, chunker, embedder or
blob store; ``app.build_app`` wires the concrete adapters from settings.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ingestd.errors import IngestdError


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """A parser's output: the document as Markdown, plus what it learned on the way."""

    markdown: str
    page_count: int | None = None
    title: str | None = None
    language: str | None = None
    # Character offsets in ``markdown`` where each page after the first starts (PDF, PPTX, ...).
    page_starts: tuple[int, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    def stored_metadata(self) -> dict[str, Any]:
        """What later stages need, besides the Markdown, to rebuild this (kept on the job)."""
        meta: dict[str, Any] = {
            "page_count": self.page_count,
            "title": self.title,
            "language": self.language,
            "page_starts": list(self.page_starts),
            "chars": len(self.markdown),
        }
        if self.metadata:
            meta["extra"] = json.loads(json.dumps(self.metadata, default=str))
        return meta

    @classmethod
    def from_stored(cls, markdown: str, meta: dict[str, Any]) -> ParsedDocument:
        return cls(
            markdown=markdown,
            page_count=meta.get("page_count"),
            title=meta.get("title"),
            language=meta.get("language"),
            page_starts=tuple(meta.get("page_starts") or ()),
            metadata=meta.get("extra") or {},
        )


@runtime_checkable
class Parser(Protocol):
    """bytes + media type -> Markdown; ``PermanentError`` with a ``parse.*`` code on bad input."""

    name: str

    def parse(self, data: bytes, media_type: str, filename: str = "") -> ParsedDocument: ...


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a document, sized for the embedder."""

    ordinal: int
    text: str
    token_count: int
    heading_path: tuple[str, ...] = ()
    page: int | None = None
    start_offset: int = 0  # character offset of the chunk's start in the parsed Markdown


@runtime_checkable
class Chunker(Protocol):
    """Markdown -> ordered chunks. ``version`` changes whenever the output for a text may change."""

    version: str

    def chunk(self, doc: ParsedDocument) -> list[Chunk]: ...


@dataclass(frozen=True, slots=True)
class EmbeddingUsage:
    """What an embedding call cost: tokens as the provider counted them, and requests made."""

    prompt_tokens: int = 0
    requests: int = 0


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    """Vectors in input order. An input the provider rejected (poison) has an empty vector and
    its error in ``failures`` (by input index); the other inputs are embedded."""

    vectors: list[list[float]]
    usage: EmbeddingUsage
    failures: dict[int, IngestdError] = field(default_factory=dict)


@runtime_checkable
class Embedder(Protocol):
    """A batch of texts -> one vector each, in order. ``model`` names the vector space stored."""

    model: str
    dimensions: int
    max_input_tokens: int

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult: ...


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """One stored blob, as a store lists it (``ingestd blobs usage`` and ``gc``)."""

    key: str
    size_bytes: int
    stored_at: datetime  # UTC


@runtime_checkable
class BlobStore(Protocol):
    """Content-addressed bytes: ``put`` returns the key (the sha256 hex of the content).

    Calls block (file or network I/O): callers on the event loop run them in a thread, except
    small ones on a store whose ``inline_io`` attribute is true (a local folder).
    ``get`` of an unknown key raises ``PermanentError("blob.missing")``; a store that cannot be
    reached raises ``TransientError("blob.unavailable")``.
    """

    def put(self, data: bytes) -> str: ...

    def put_file(self, path: Path) -> str:
        """Store a file's content, read in pieces (never whole in memory where the store can)."""
        ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def list_blobs(self) -> Iterator[BlobInfo]:
        """Every blob stored, in no particular order."""
        ...
