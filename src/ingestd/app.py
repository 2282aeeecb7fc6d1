"""Wiring: the one place that turns settings into concrete adapters and hands them to the core."""

from __future__ import annotations

import asyncio
import functools
import os
import socket
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx

from ingestd.blobs import open_blob_store
from ingestd.chunking import MarkdownChunker
from ingestd.config import (
    HashEmbedderSettings,
    LlamaParseSettings,
    LocalEmbedderSettings,
    LocalParserSettings,
    OpenAIEmbedderSettings,
    Settings,
)
from ingestd.db import Database
from ingestd.errors import ConfigurationError
from ingestd.faultpoints import FaultPoints
from ingestd.jobs import JobStore
from ingestd.observability import metrics
from ingestd.observability.transport import metered_client
from ingestd.parsers.isolation import ParserPool
from ingestd.parsers.limits import DEFAULT_MAX_CHARS
from ingestd.ports import BlobStore, Chunker, Embedder, ParsedDocument
from ingestd.remote_parse import RemoteParseConfig
from ingestd.stages import ParseFn, Pipeline, StagePorts
from ingestd.traffic import Traffic, build_traffic
from ingestd.worker import Worker, new_worker_id

# Plain-text and Markdown files are parsed in the worker's process: small ones on the event
# loop, up to TRIVIAL_THREAD_BYTES in a thread (decoding text is linear and bounded: it cannot
# hang or balloon). Everything else, and larger text, goes to the parser pool. Starting a pool
# process costs ~0.25 s of CPU (it imports every parser library; 1.5 s of wall for two at load
# 9), which a Markdown backlog of 100 KB documents paid twice per worker for nothing.
TRIVIAL_MEDIA_TYPES = frozenset({"text/plain", "text/markdown"})
TRIVIAL_INLINE_BYTES = 64 * 1024
TRIVIAL_THREAD_BYTES = 1024 * 1024

# Chunk size cap (cl100k tokens) for models that count their input in their own tokens.
LOCAL_MODEL_CHUNK_TOKENS = 200


def build_embedder(
    settings: Settings, http: httpx.AsyncClient | None = None, traffic: Traffic | None = None
) -> Embedder:
    config = settings.embedder
    if isinstance(config, HashEmbedderSettings):
        from ingestd.embedders.hash import HashEmbedder

        return HashEmbedder(dimensions=config.dimensions)
    if isinstance(config, LocalEmbedderSettings):
        from ingestd.embedders.local import LocalEmbedder

        return LocalEmbedder(
            model=config.model,
            batch_size=config.batch_size,
            device=config.device,
            num_threads=config.num_threads,
            backend=config.backend,
            cache_dir=settings.home / "models",
        )
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
            concurrency=config.concurrency,
            max_retries=config.max_retries,
            truncate=config.truncate,
            http_client=http,
            governor=traffic.governor if traffic is not None else None,
        )
    raise ConfigurationError(f"unknown embedder provider: {config!r}")


def build_chunker(settings: Settings, embedder: Embedder | None = None) -> Chunker:
    """Chunks sized in cl100k tokens, never above what the embedder takes per input.

    A model with its own tokenizer (the local one: 256 word pieces) hands the chunker a counter,
    and chunks stay at most ``LOCAL_MODEL_CHUNK_TOKENS`` so few need to be split to fit.
    """
    counter = getattr(embedder, "input_token_counter", None)
    limit = embedder.max_input_tokens if embedder is not None else None
    size = settings.chunker.tokens
    if counter is not None:
        size = min(size, LOCAL_MODEL_CHUNK_TOKENS)
    return MarkdownChunker(
        max_tokens=min(size, limit or size),
        overlap_tokens=min(settings.chunker.overlap, max(0, min(size, limit or size) // 4)),
        encoding=settings.chunker.encoding,
        hard_limit_tokens=limit,
        hard_limit_counter=counter,
    )


def build_remote(
    settings: Settings, http: httpx.AsyncClient, traffic: Traffic | None = None
) -> RemoteParseConfig | None:
    """LlamaParse, when the parser setting chooses it."""
    config = settings.parser
    if not isinstance(config, LlamaParseSettings):
        return None
    from ingestd.parsers.llamaparse import LlamaParseClient

    api_key = config.resolved_api_key()
    if not api_key:
        raise ConfigurationError(
            "the llamaparse parser needs an API key: set LLAMA_CLOUD_API_KEY or "
            "INGESTD_PARSER__API_KEY"
        )
    client = LlamaParseClient(
        http,
        api_key=api_key,
        base_url=config.base_url,
        api_version=config.api_version,
        timeout=config.timeout_seconds,
        governor=traffic.governor if traffic is not None else None,
    )
    secret = config.webhook_secret.get_secret_value() if config.webhook_secret else None
    return RemoteParseConfig(
        client=client,
        tier=config.tier,
        webhook_url=config.webhook_url,
        webhook_secret=secret,
        poll_after_seconds=config.poll_after_seconds,
        max_poll_seconds=config.max_poll_seconds,
        price_per_credit_usd=config.price_per_credit_usd,
        budgets=traffic.budgets if traffic is not None else None,
    )


def external_services(settings: Settings) -> dict[str, str]:
    """Base URL -> service name, for the labels of the external-call metrics."""
    services: dict[str, str] = {}
    if isinstance(settings.embedder, OpenAIEmbedderSettings):
        services[settings.embedder.base_url] = "openai"
    if isinstance(settings.parser, LlamaParseSettings):
        services[settings.parser.base_url] = "llamaparse"
    return services


def parser_pool_size(settings: Settings) -> int | None:
    config = settings.parser
    return config.pool_size if isinstance(config, LocalParserSettings) else 1


def build_parse(settings: Settings, pool: ParserPool) -> tuple[ParseFn, str]:
    """The local parsers: in ``pool``'s child processes, with a time (and memory) limit."""
    config = settings.parser
    if not isinstance(config, LocalParserSettings):
        config = LocalParserSettings()
    from ingestd.parsers.isolation import parse_in_process
    from ingestd.parsers.local import LocalParser

    parser = LocalParser(config.parse_limits())
    limits = config

    async def parse(data: bytes, media_type: str, filename: str) -> ParsedDocument:
        if media_type in TRIVIAL_MEDIA_TYPES and len(data) <= TRIVIAL_THREAD_BYTES:
            if len(data) <= TRIVIAL_INLINE_BYTES:
                return parse_in_process(parser, data, media_type, filename)
            return await asyncio.to_thread(parse_in_process, parser, data, media_type, filename)
        return await pool.parse(
            parser,
            data,
            media_type,
            filename,
            timeout=limits.timeout_seconds,
            max_memory_bytes=limits.max_memory_bytes,
        )

    return parse, parser.name


def _max_chars(settings: Settings) -> int:
    config = settings.parser
    return config.max_chars if isinstance(config, LocalParserSettings) else DEFAULT_MAX_CHARS


def micro_batched(settings: Settings, embedder: Embedder) -> Embedder:
    """A remote embedder behind the worker-wide micro-batcher, when enabled."""
    config = settings.embedder
    if not isinstance(config, OpenAIEmbedderSettings) or not settings.embed_batching.enabled:
        return embedder
    from ingestd.embedders.batching import BatchLimits
    from ingestd.embedders.microbatch import MicroBatcher

    limits = BatchLimits(
        max_inputs=config.max_inputs_per_request,
        max_tokens=config.max_tokens_per_request,
        max_tokens_per_input=config.max_tokens_per_input,
    )
    batching = settings.embed_batching
    return MicroBatcher(
        embedder,
        limits,
        linger_seconds=batching.linger_ms / 1000,
        truncate=config.truncate,
        fill_wait_seconds=batching.fill_wait_ms / 1000,
        max_in_flight=config.concurrency,
    )


def build_ports(
    settings: Settings,
    http: httpx.AsyncClient | None,
    pool: ParserPool,
    blobs: BlobStore,
    traffic: Traffic | None = None,
) -> StagePorts:
    from ingestd.parsers.validate import validate_parsed

    embedder = build_embedder(settings, http, traffic)
    parse, parser_name = build_parse(settings, pool)
    remote = build_remote(settings, http, traffic) if http is not None else None
    return StagePorts(
        blobs=blobs,
        parse=parse,
        validate=functools.partial(validate_parsed, max_chars=_max_chars(settings)),
        chunker=build_chunker(settings, embedder),
        embedder=micro_batched(settings, embedder),
        parser_name=remote.client.name if remote is not None else parser_name,
        max_parse_bytes=settings.parser.max_bytes,
        remote=remote,
        embedding_price_per_million=(
            settings.embedder.price_per_million_tokens
            if isinstance(settings.embedder, OpenAIEmbedderSettings)
            else 0.0
        ),
        embedding_service=settings.embedder.provider,
        traffic=traffic,
    )


@dataclass
class App:
    """An opened database plus the adapters chosen by settings."""

    settings: Settings
    db: Database
    ports: StagePorts

    @property
    def blobs(self) -> BlobStore:
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
        from ingestd.embedders.microbatch import MicroBatcher

        batching = self.settings.embed_batching
        fill = self.ports.embedder if batching.fill else None
        return Worker(
            self.db,
            store,
            pipeline,
            self.settings.worker,
            burst=burst,
            fill=fill if isinstance(fill, MicroBatcher) else None,
            fill_max_jobs=batching.fill_max_jobs,
        )


def process_id() -> str:
    """Who acts, in breaker events: this machine and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


@asynccontextmanager
async def open_app(settings: Settings) -> AsyncIterator[App]:
    """Open the database (migrating it) and build the adapters; close both at the end."""
    metrics.set_enabled(settings.observability.metrics_enabled)
    services = external_services(settings)
    # Only the remote embedder and parser call out: without them no client is made (its
    # transport and TLS context cost ~0.1 s of CPU at every start).
    http = metered_client(services) if services else None
    pool = ParserPool(parser_pool_size(settings))
    db = Database.from_settings(settings)
    ports: StagePorts | None = None
    stores = ExitStack()
    try:
        await db.open()
        # After the migrations: the PostgreSQL blob store's tables must exist.
        blobs = stores.enter_context(open_blob_store(settings, db.url))
        traffic = build_traffic(db, settings.traffic, process_id())
        ports = build_ports(settings, http, pool, blobs, traffic)
        embedder = ports.embedder
        await db.ensure_vector_index(embedder.model, embedder.dimensions)
        yield App(settings, db, ports)
    finally:
        await db.close()
        if http is not None:
            await http.aclose()
        await asyncio.to_thread(pool.close)
        await asyncio.to_thread(stores.close)
        if ports is not None:
            close = getattr(ports.embedder, "aclose", None)
            if close is not None:
                await close()
