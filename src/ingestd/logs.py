"""Structured logging: JSON lines (for machines) or console lines (for people), on stderr.

Every job log line carries the job's ``correlation_id``; secrets never reach a log line (settings
hold them as ``SecretStr``, adapters log vendor codes and messages, not requests, and every line
passes through ``ingestd.redact`` on its way out).
"""

from __future__ import annotations

import logging
import sys

import structlog

from ingestd.redact import RedactingFilter, redact_event

# One instance, so configuring twice does not stack filters.
REDACTING_FILTER = RedactingFilter()


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(REDACTING_FILTER)
    for noisy in ("httpx", "httpcore", "psycopg.pool", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
