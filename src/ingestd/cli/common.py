"""Shared pieces of the ``ingestd`` command: the Typer apps, consoles, settings, runners."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from ingestd.app import App, open_app
from ingestd.config import Settings, read_settings
from ingestd.db import Database
from ingestd.errors import IngestdError
from ingestd.logs import configure_logging
from ingestd.redact import redact

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")

app = typer.Typer(
    help="ingestd: durable document ingestion into PostgreSQL + pgvector.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Manage the embedded PostgreSQL server.", no_args_is_help=True)
jobs_app = typer.Typer(help="Inspect and retry jobs.", no_args_is_help=True)
mock_app = typer.Typer(
    help="Run a mock vendor server (OpenAI, LlamaParse) for offline work.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(jobs_app, name="jobs")
app.add_typer(mock_app, name="mock")


@functools.cache
def rich_console(*, stderr: bool = False) -> Console:
    """The command's rich console on stdout (or stderr), made on first use: importing rich costs
    ~0.1 s of CPU, which the worker and ``serve`` (they print nothing through it) paid at start."""
    from rich.console import Console

    return Console(stderr=stderr)


class _LazyConsole:
    """``console.print(...)`` etc. on ``rich_console(stderr)``; pass ``rich_console(...)`` itself
    where a real Console is needed (a ``Progress``)."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr

    def __getattr__(self, name: str) -> Any:
        return getattr(rich_console(stderr=self._stderr), name)


if TYPE_CHECKING:
    console: Console
    err_console: Console
else:
    console = _LazyConsole(stderr=False)
    err_console = _LazyConsole(stderr=True)

OwnerOpt = typer.Option(
    None, "--owner", envvar="INGESTD_OWNER", help="Owner of the documents (default: 'local')."
)
AllOwnersOpt = typer.Option(
    False, "--all-owners", help="Every owner's jobs (default: only --owner's, as `search`)."
)
JsonOpt = typer.Option(False, "--json", help="Print one JSON document instead of a table.")


def scoped_owner(settings: Settings, all_owners: bool) -> str | None:
    """The owner a command reads or changes jobs of: ``settings.owner`` (from --owner, else
    INGESTD_OWNER, else 'local') like ``search``; None (every owner) only with --all-owners."""
    return None if all_owners else settings.owner


def load_settings(*, service: bool = False, **overrides: Any) -> Settings:
    """Settings from the environment plus the command's flags; logging configured.

    Commands a person runs and reads (everything but ``worker`` and ``serve``) log warnings only
    unless INGESTD_LOG_LEVEL says otherwise, so their output stays readable.
    """
    settings = reporting_errors(read_settings)
    if not service and "INGESTD_LOG_LEVEL" not in os.environ:
        overrides.setdefault("log_level", "WARNING")
    worker = {k: v for k, v in overrides.pop("worker", {}).items() if v is not None}
    if worker:
        overrides["worker"] = settings.worker.model_copy(update=worker)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    settings = settings.model_copy(update=overrides)
    configure_logging(settings.log_level, settings.log_format)
    return settings


def run_command(coro: Coroutine[Any, Any, T]) -> T:
    return reporting_errors(lambda: asyncio.run(coro))


def reporting_errors(call: Callable[[], T]) -> T:
    """``call()``; an ingestd error becomes its code and message (redacted) and exit 2."""
    try:
        result = call()
    except IngestdError as exc:
        err_console.print(f"[red]error[/red] {exc.code}: {redact(exc.message)}", soft_wrap=True)
        raise typer.Exit(2) from exc
    return result


async def with_app(settings: Settings, body: Callable[[App], Awaitable[T]]) -> T:
    async with open_app(settings) as opened:
        return await body(opened)


async def with_db(settings: Settings, body: Callable[[Database], Awaitable[T]]) -> T:
    """Only the database (migrated), for commands that need no adapters: quicker to start."""
    async with Database.from_settings(settings) as db:
        return await body(db)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


# -- init and db ------------------------------------------------------------------------------
