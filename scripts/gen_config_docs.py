#!/usr/bin/env python
"""Write docs/reference/configuration.md from the settings model, so it can never go stale.

python scripts/gen_config_docs.py          # rewrite the file
python scripts/gen_config_docs.py --check  # exit 1 if the file is out of date (tests do this)
"""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ingestd.config import (
    ApiSettings,
    BlobSettings,
    BreakerSettings,
    BudgetSettings,
    ChunkerSettings,
    EmbedBatchingSettings,
    HashEmbedderSettings,
    LlamaParseSettings,
    LocalEmbedderSettings,
    LocalParserSettings,
    ObservabilitySettings,
    OpenAIEmbedderSettings,
    ServiceLimitSettings,
    Settings,
    TrafficSettings,
    WorkerSettings,
)
from ingestd.faultpoints import FaultSpec

OUT = Path(__file__).resolve().parent.parent / "docs" / "reference" / "configuration.md"

HELP: dict[str, str] = {
    "home": "Where ingestd keeps its data: the embedded PostgreSQL (`pgdata/`) and the blob store "
    "(`blobs/`). Default: the per-user data folder (`~/.local/share/ingestd` on Linux).",
    "database_url": "A PostgreSQL (>= 15, with pgvector) URL; treated as a secret (printed "
    "redacted). Prefer `passfile=` to a password in it. Unset: the embedded server under the "
    "home is used (started on demand; scram password in `pgdata.pgpass`).",
    "db_pool_size": "Connections per process.",
    "statement_timeout_ms": "Every SQL statement's time limit.",
    "owner": "The owner of documents ingested from the CLI, and whose results `search` shows.",
    "log_level": "DEBUG, INFO, WARNING or ERROR.",
    "log_format": "`console` (for people) or `json` (one object per line, for machines).",
    "faults": "Named fault points to arm, as JSON (chaos testing only); see "
    "`ingestd/faultpoints.py`.",
    "worker.concurrency": "Jobs one worker process holds at once.",
    "worker.batch_size": "Jobs claimed per statement; a batch's stage outputs commit together.",
    "worker.lease_seconds": "A claim's lease; heartbeats renew it every third of it. A crashed "
    "worker's jobs are taken over after this long.",
    "worker.poll_seconds": "How often an idle worker looks for work when no notification came.",
    "worker.grace_seconds": "On SIGTERM/SIGINT: time for running stages to finish before the "
    "rest are released.",
    "worker.max_attempts": "Tries of a stage before the job fails (rate limits and outages get "
    "ten times as many).",
    "worker.backoff_base_seconds": "First retry delay; doubles per retry, with jitter.",
    "worker.backoff_max_seconds": "Longest retry delay.",
    "worker.embed_slice": "Chunks embedded, and their vectors committed, per step of the embed "
    "stage (progress and resumption granularity).",
    "worker.fuse_stages": "Commit a batch's consecutive cheap stages (progress-only states, "
    "parse, validate, chunk) in one transaction; every transition and event is still recorded, "
    "in order. Off: one transaction per state.",
    "parser.provider": "`local` (parsers in this process's pool) or `llamaparse` (the cloud API).",
    "parser.timeout_seconds": "local: a document's parse time limit (`parse.timeout`). "
    "llamaparse: the HTTP timeout.",
    "parser.max_bytes": "Larger files fail with `parse.too_large` (checked before reading; "
    "`ingest` skips them as `ingest.too_large`).",
    "parser.pool_size": "local: parser processes per worker (default: one per core, up to 8).",
    "parser.max_memory_bytes": "local: address space (`RLIMIT_AS`) a parse may add before it "
    "fails with `parse.too_large`.",
    "parser.base_url": "llamaparse: the API (EU: https://api.cloud.eu.llamaindex.ai).",
    "parser.api_key": "llamaparse: the key; falls back to `LLAMA_CLOUD_API_KEY`.",
    "parser.api_version": "llamaparse: `v2` (current) or `v1` (legacy API).",
    "parser.tier": "llamaparse: fast, cost_effective, agentic or agentic_plus.",
    "parser.webhook_url": "llamaparse: the public URL of `ingestd serve`'s "
    "`/v1/webhooks/llamaparse`. Unset: no webhooks, polling only.",
    "parser.webhook_secret": "llamaparse: the secret webhooks are signed with (`LC-Signature`).",
    "parser.poll_after_seconds": "llamaparse: poll a job this long after submitting it when no "
    "webhook came; later polls back off.",
    "parser.max_poll_seconds": "llamaparse: the longest wait between polls.",
    "parser.price_per_credit_usd": "llamaparse: for the cost recorded on jobs.",
    "chunker.tokens": "Largest chunk, in tokens of `chunker.encoding` (also capped by the "
    "embedder's per-input limit; 200 for the local model).",
    "chunker.overlap": "Tokens shared by consecutive chunks.",
    "chunker.encoding": "The tokenizer (cl100k_base, shipped offline).",
    "embedder.provider": "`hash` (deterministic, lexical, no dependencies), `local` "
    "(sentence-transformers on this machine) or `openai` (any OpenAI-compatible API).",
    "embedder.dimensions": "hash: vector size. openai: the `dimensions` parameter "
    "(text-embedding-3 models only).",
    "embedder.model": "local: the model (shipped: all-MiniLM-L6-v2). openai: the model name.",
    "embedder.backend": "local: `torch` (sentence-transformers) or `onnx` (ONNX Runtime, on a "
    "model exported once from the model's own weights into `<home>/models`, under a lock; the "
    "same vectors, 1.3-1.8x torch's speed on one thread: "
    "docs/decisions/0010-local-model-runtime.md).",
    "embedder.batch_size": "local: texts per forward pass (16: larger batches of 256-piece "
    "chunks measured slower).",
    "embedder.device": "local: torch device (`onnx`: the CPU only).",
    "embedder.num_threads": "local: torch or ONNX Runtime threads (default: half the cores).",
    "embedder.base_url": "openai: the API base URL (any OpenAI-compatible server).",
    "embedder.api_key": "openai: the key; falls back to `OPENAI_API_KEY`.",
    "embedder.timeout_seconds": "openai: per-request timeout.",
    "embedder.max_inputs_per_request": "openai: inputs packed per request (<= 2048).",
    "embedder.max_tokens_per_request": "openai: tokens packed per request (<= 300,000).",
    "embedder.max_tokens_per_input": "openai: the per-input limit (<= 8191).",
    "embedder.price_per_million_tokens": "openai: for the cost recorded on jobs.",
    "embedder.concurrency": "openai: requests in flight per worker process.",
    "embedder.truncate": "openai: cut over-long inputs instead of failing.",
    "embedder.max_retries": "openai: the SDK's own retries (ingestd retries itself).",
}

SHOWN_DEFAULTS = {"home": "per-user data folder", "traffic.limits": "see below"}
# Groups documented in sections of their own.
NESTED = (
    "worker",
    "parser",
    "chunker",
    "embedder",
    "observability",
    "blobs",
    "traffic",
    "breaker",
    "api",
    "embed_batching",
)

PROVIDERS: list[tuple[str, str, list[type[BaseModel]]]] = [
    ("parser", "INGESTD_PARSER__", [LocalParserSettings, LlamaParseSettings]),
    ("chunker", "INGESTD_CHUNKER__", [ChunkerSettings]),
    (
        "embedder",
        "INGESTD_EMBEDDER__",
        [HashEmbedderSettings, LocalEmbedderSettings, OpenAIEmbedderSettings],
    ),
    ("worker", "INGESTD_WORKER__", [WorkerSettings]),
    ("observability", "INGESTD_OBSERVABILITY__", [ObservabilitySettings]),
    ("blobs", "INGESTD_BLOBS__", [BlobSettings]),
    ("api", "INGESTD_API__", [ApiSettings]),
    ("embed_batching", "INGESTD_EMBED_BATCHING__", [EmbedBatchingSettings]),
]


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if value is PydanticUndefined or value is None:
        return ""
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, dict) and not value:
        return "{}"
    return f"`{value}`"


def _type(field: FieldInfo) -> str:
    text = str(field.annotation).replace("typing.", "").replace("pydantic.types.", "")
    text = text.replace("<class '", "").replace("'>", "").replace("pathlib.", "")
    text = text.replace("ingestd.faultpoints.", "").replace("NoneType", "None")
    if "Literal" in text:
        args = typing.get_args(field.annotation)
        text = " \\| ".join(f"`{a}`" for a in args)
    return text.replace("|", "\\|") if "Literal" not in str(field.annotation) else text


def _rows(
    prefix: str, key_prefix: str, model: type[BaseModel], upper: bool = True
) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{key_prefix}{name}"
        if name in NESTED:
            continue
        default = SHOWN_DEFAULTS.get(key) or _default(field)
        meaning = HELP.get(key) or field.description or ""
        shown = name.upper() if upper else name
        rows.append(f"| `{prefix}{shown}` | {_type(field)} | {default} | {meaning} |")
    return rows


def _traffic_section() -> list[str]:
    """Traffic control: its own settings, the breaker, a service's limits, a budget's fields."""
    header = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    limits = ", ".join(
        f"{name}: {limit.model_dump(exclude_none=True)}"
        for name, limit in TrafficSettings().limits.items()
    )
    return [
        "## Traffic",
        "",
        (TrafficSettings.__doc__ or "").strip() + " See docs/howto/traffic.md.",
        "",
        *header,
        *_rows("INGESTD_TRAFFIC__", "traffic.", TrafficSettings),
        "",
        "### Circuit breakers (`INGESTD_TRAFFIC__BREAKER__...`)",
        "",
        *header,
        *_rows("INGESTD_TRAFFIC__BREAKER__", "traffic.breaker.", BreakerSettings),
        "",
        "### Rate limits of a service (`INGESTD_TRAFFIC__LIMITS__<SERVICE>__...`)",
        "",
        " ".join((ServiceLimitSettings.__doc__ or "").split()) + f" Defaults: {limits}.",
        "",
        *header,
        *_rows("INGESTD_TRAFFIC__LIMITS__<SERVICE>__", "traffic.limits.", ServiceLimitSettings),
        "",
        "### A budget (an item of the JSON list `INGESTD_TRAFFIC__BUDGETS`)",
        "",
        "| field | type | default | meaning |",
        "|---|---|---|---|",
        *_rows("", "traffic.budgets.", BudgetSettings, upper=False),
        "",
    ]


def render() -> str:
    lines = [
        "# Configuration",
        "",
        "Every setting is an environment variable (a `.env` file is not read). Nested settings",
        "use `__`: `INGESTD_EMBEDDER__PROVIDER=openai`. CLI flags override the same settings",
        "(`--help` shows the variable behind each flag). This page is generated from",
        "`ingestd/config.py` by `scripts/gen_config_docs.py`; a test fails when it is stale.",
        "",
        "Secrets (`*_API_KEY`, `*WEBHOOK_SECRET`) are held as secret strings and never logged.",
        "",
        "## General",
        "",
        "| variable | type | default | meaning |",
        "|---|---|---|---|",
        *_rows("INGESTD_", "", Settings),
        "",
    ]
    for section, env, models in PROVIDERS:
        lines += [f"## {section.capitalize()}", ""]
        for model in models:
            provider = model.model_fields.get("provider")
            if provider is not None:
                lines += [
                    f"### `{env}PROVIDER={provider.default}`",
                    "",
                    (model.__doc__ or "").strip(),
                    "",
                ]
            lines += ["| variable | type | default | meaning |", "|---|---|---|---|"]
            lines += [r for r in _rows(env, f"{section}.", model) if "PROVIDER`" not in r]
            lines.append("")
    lines += _traffic_section()
    lines += [
        "## Fault points (`INGESTD_FAULTS`)",
        "",
        "A JSON object from point name to a spec: "
        + ", ".join(f"`{n}`" for n in FaultSpec.model_fields)
        + ". For chaos tests only.",
        "",
        "## Vendor keys read directly",
        "",
        "| variable | used when |",
        "|---|---|",
        "| `OPENAI_API_KEY` | `INGESTD_EMBEDDER__PROVIDER=openai` and no "
        "`INGESTD_EMBEDDER__API_KEY` |",
        "| `LLAMA_CLOUD_API_KEY` | `INGESTD_PARSER__PROVIDER=llamaparse` and no "
        "`INGESTD_PARSER__API_KEY` |",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is out of date: run python scripts/gen_config_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
