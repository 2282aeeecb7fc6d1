"""Wiring: the one place that turns settings into concrete adapters and hands them to the core."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ingestd.chunking import MarkdownChunker
from ingestd.config import (
    HashEmbedderSettings,
    LocalEmbedderSettings,
    LocalParserSettings,
    OpenAIEmbedderSettings,
    Settings,
)
from ingestd.db import Database
from ingestd.errors import ConfigurationError
from ingestd.faultpoints import FaultPoints
from ingestd.jobs import JobStore
from ingestd.ports import Chunker, Embedder, ParsedDocument
from ingestd.stages import ParseFn, Pipeline, StagePorts
from ingestd.storage import LocalBlobStore
from ingestd.worker import Worker, new_worker_id


def build_embedder(settings: Settings) -> Embedder:
    config = settings.embedder
    if isinstance(config, HashEmbedderSettings):
        from ingestd.embedders.hash import HashEmbedder

        return HashEmbedder(dimensions=config.dimensions)
    if isinstance(config, LocalEmbedderSettings):
        from ingestd.embedders.local import LocalEmbedder

        return LocalEmbedder(model=config.model, batch_size=config.batch_size, device=config.device)
    if isinstance(config, OpenAIEmbedderSettings):
        from ingestd.embedders.openai import OpenAIEmbedder

        api_key = config.resolved_api_key()
        if not api_key:
            raise ConfigurationError(
                "the openai embedder needs an API key: set OPENAI_API_KEY or "
                "INGESTD_EMBEDDER__API_KEY"
            )
        return OpenAIEmbedder(
            model=config.model,
            api_key=api_key,
            base_url=config.base_url,
            dimensions=config.dimensions,
            timeout=config.timeout_seconds,
            max_inputs_per_request=config.max_inputs_per_request,
            max_tokens_per_request=config.max_tokens_per_request,
            max_tokens_per_input=config.max_tokens_per_input,
        )
    raise ConfigurationError(f"unknown embedder provider: {config!r}")


def build_chunker(settings: Settings, embedder: Embedder | None = None) -> Chunker:
    limit = embedder.max_input_tokens if embedder is not None else None
    return MarkdownChunker(
        max_tokens=min(settings.chunker.tokens, limit or settings.chunker.tokens),
        overlap_tokens=settings.chunker.overlap,
        encoding=settings.chunker.encoding,
        hard_limit_tokens=limit,
    )


def build_parse(settings: Settings) -> tuple[ParseFn, str]:
    config = settings.parser
    if not isinstance(config, LocalParserSettings):
        raise ConfigurationError(
            "only the local parser runs inside the parse stage; "
            "LlamaParse jobs are submitted by the remote parse stage"
        )
    from ingestd.parsers.isolation import parse_isolated
    from ingestd.parsers.local import LocalParser

    parser = LocalParser()

    async def parse(data: bytes, media_type: str, filename: str) -> ParsedDocument:
        if len(data) > config.max_bytes:
            from ingestd.errors import PermanentError

            raise PermanentError(
                "parse.too_large", f"the file is {len(data)} bytes; the limit is {config.max_bytes}"
            )
        return await parse_isolated(
            parser, data, media_type, filename, timeout=config.timeout_seconds
        )

    return parse, parser.name


def build_ports(settings: Settings) -> StagePorts:
    from ingestd.parsers.validate import validate_parsed

    embedder = build_embedder(settings)
    parse, parser_name = build_parse(settings)
    return StagePorts(
        blobs=LocalBlobStore(settings.blob_dir),
        parse=parse,
        validate=functools.partial(validate_parsed),
        chunker=build_chunker(settings, embedder),
        embedder=embedder,
        parser_name=parser_name,
    )


@dataclass
class App:
    """An opened database plus the adapters chosen by settings."""

    settings: Settings
    db: Database
    ports: StagePorts

    @property
    def blobs(self) -> LocalBlobStore:
        assert isinstance(self.ports.blobs, LocalBlobStore)
        return self.ports.blobs

    def worker(self, *, burst: bool = False, worker_id: str | None = None) -> Worker:
        store = JobStore(self.db, worker_id or new_worker_id(), self.settings.worker.lease_seconds)
        pipeline = Pipeline(
            self.db,
            store,
            self.ports,
            self.settings.worker,
            embed_slice=self.settings.worker.embed_slice,
            faults=FaultPoints(self.settings.faults),
        )
        return Worker(self.db, store, pipeline, self.settings.worker, burst=burst)


@asynccontextmanager
async def open_app(settings: Settings) -> AsyncIterator[App]:
    ports = build_ports(settings)
    db = Database.from_settings(settings)
    await db.open()
    try:
        embedder = ports.embedder
        await db.ensure_vector_index(embedder.model, embedder.dimensions)
        yield App(settings, db, ports)
    finally:
        await db.close()
