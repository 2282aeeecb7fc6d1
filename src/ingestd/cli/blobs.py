"""``ingestd blobs usage | gc | copy``: what the blob store holds, collecting unreferenced blobs,
and moving blobs to another backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar

import typer

from ingestd.blobs import blob_backend, open_blob_store
from ingestd.blobs.gc import blob_usage, collect_garbage
from ingestd.blobs.transfer import CopyReport, copy_blobs
from ingestd.cli.common import JsonOpt, app, console, load_settings, print_json, run_command
from ingestd.config import Settings
from ingestd.db import Database
from ingestd.ports import BlobStore

T = TypeVar("T")

blobs_app = typer.Typer(help="Inspect the blob store and collect unreferenced blobs.")
app.add_typer(blobs_app, name="blobs", no_args_is_help=True)


@asynccontextmanager
async def _opened(settings: Settings) -> AsyncIterator[tuple[Database, BlobStore]]:
    async with Database.from_settings(settings) as db:
        with open_blob_store(settings, db.url) as store:
            yield db, store


async def _with_store(settings: Settings, body: Callable[[Database, BlobStore], Awaitable[T]]) -> T:
    async with _opened(settings) as (db, store):
        return await body(db, store)


@blobs_app.command("usage")
def usage(as_json: bool = JsonOpt) -> None:
    """Blobs and bytes stored, and how many of them nothing refers to."""
    settings = load_settings()
    found = run_command(_with_store(settings, blob_usage))
    result: dict[str, Any] = {"backend": blob_backend(settings), **found.to_json()}
    if as_json:
        print_json(result)
        return
    console.print(
        f"{result['backend']}: {found.blobs} blobs, {found.bytes / 1e6:.1f} MB; "
        f"unreferenced {found.unreferenced} ({found.unreferenced_bytes / 1e6:.1f} MB)"
    )


@blobs_app.command("gc")
def gc(
    older_than: float = typer.Option(
        3600.0, help="Only blobs stored at least this many seconds ago (uploads in flight)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would go; delete nothing."),
    as_json: bool = JsonOpt,
) -> None:
    """Delete blobs that no document or job refers to."""
    settings = load_settings()
    grace = timedelta(seconds=older_than)

    async def body(db: Database, store: BlobStore) -> list[Any]:
        return await collect_garbage(db, store, grace=grace, dry_run=dry_run)

    garbage = run_command(_with_store(settings, body))
    total = sum(b.size_bytes for b in garbage)
    if as_json:
        print_json({"dry_run": dry_run, "blobs": [b.key for b in garbage], "bytes": total})
        return
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} {len(garbage)} unreferenced blobs ({total / 1e6:.1f} MB)")


@blobs_app.command("copy")
def copy(
    source: str = typer.Option(
        ..., "--from", help="The backend to copy from: local, postgres or s3 (its settings)."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Copy every blob from another backend into the configured one (safe to run again)."""
    if source not in ("local", "postgres", "s3"):
        raise typer.BadParameter("one of local, postgres, s3", param_hint="--from")
    settings = load_settings()
    source_settings = settings.model_copy(
        update={"blobs": settings.blobs.model_copy(update={"backend": source})}
    )
    if blob_backend(source_settings) == blob_backend(settings):
        raise typer.BadParameter(f"the configured backend is already {source}", param_hint="--from")

    async def body(db: Database, target: BlobStore) -> CopyReport:
        with open_blob_store(source_settings, db.url) as origin:
            return await asyncio.to_thread(copy_blobs, origin, target)

    report = run_command(_with_store(settings, body))
    if as_json:
        print_json(report.to_json())
        return
    console.print(
        f"copied {report.copied} blobs ({report.bytes_copied / 1e6:.1f} MB) from {source} to "
        f"{blob_backend(settings)}; {report.already_there} were there already"
    )
