"""Blob store throughput: put and get MB/s of the local folder, PostgreSQL and S3 (moto).

    .venv/bin/python benchmarks/bench_blobs.py [--quick] [--write]

Each store gets many 5 KB blobs (an upload or parsed text of a small document) and a few 10 MB
ones, written then read back one at a time by one thread, as a stage does. PostgreSQL is an
embedded server started for the run in a temporary folder (Unix socket); S3 is a moto server in
this process (real HTTP on loopback, but an in-memory Python server: its figures say what the
client side costs, not what a real S3 does). ``--write`` replaces docs/benchmarks/blobs.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from ingestd.blobs.postgres import PostgresBlobStore
from ingestd.blobs.s3 import S3BlobStore, s3_client
from ingestd.config import BlobSettings
from ingestd.db.database import migrate_database
from ingestd.db.embedded import EmbeddedPostgres
from ingestd.ports import BlobStore
from ingestd.storage import LocalBlobStore

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "blobs.md"
SMALL, LARGE = 5 * 1024, 10 * 1024 * 1024


@dataclass(frozen=True)
class Figure:
    store: str
    size: int
    count: int
    put_seconds: float
    get_seconds: float

    @property
    def megabytes(self) -> float:
        return self.size * self.count / 1e6

    def row(self) -> str:
        label = f"{self.size // 1024} KB" if self.size < 1024 * 1024 else f"{self.size >> 20} MB"
        return (
            f"| {self.store} | {label} | {self.count} | {self.megabytes / self.put_seconds:.1f} "
            f"| {self.megabytes / self.get_seconds:.1f} | {self.count / self.put_seconds:,.0f} "
            f"| {self.count / self.get_seconds:,.0f} |"
        )


def measure(store: BlobStore, name: str, size: int, count: int) -> Figure:
    """Put ``count`` distinct blobs of ``size`` bytes, then get each back; checks the bytes."""
    blobs = [os.urandom(size) for _ in range(count)]
    started = time.perf_counter()
    keys = [store.put(data) for data in blobs]
    put_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for key, data in zip(keys, blobs, strict=True):
        if store.get(key) != data:
            raise AssertionError(f"{name} returned other bytes for {key}")
    get_seconds = time.perf_counter() - started
    return Figure(name, size, count, put_seconds, get_seconds)


@contextmanager
def postgres_store(folder: Path) -> Iterator[PostgresBlobStore]:
    server = EmbeddedPostgres(folder / "pgdata")
    url = server.ensure_running().url()
    try:
        asyncio.run(migrate_database(url))
        store = PostgresBlobStore(url)
        store.open()
        try:
            yield store
        finally:
            store.close()
    finally:
        server.stop(mode="immediate")


@contextmanager
def s3_store() -> Iterator[S3BlobStore]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    settings = BlobSettings(
        backend="s3",
        s3_bucket="bench",
        s3_endpoint_url=f"http://{host}:{port}",
        s3_region="us-east-1",
        s3_access_key_id=secrets.token_hex(10),
        s3_secret_access_key=secrets.token_hex(20),
    )
    try:
        s3_client(settings).create_bucket(Bucket="bench")
        yield S3BlobStore.from_settings(settings)
    finally:
        server.stop()


def run(folder: Path, small: int, large: int) -> list[Figure]:
    figures = []
    cases: list[tuple[str, Callable[[], AbstractContextManager[BlobStore]]]] = [
        ("local", lambda: nullcontext(LocalBlobStore(folder / "blobs"))),
        ("postgres", lambda: postgres_store(folder)),
        ("s3 (moto)", s3_store),
    ]
    for name, opener in cases:
        with opener() as store:
            figures.append(measure(store, name, SMALL, small))
            figures.append(measure(store, name, LARGE, large))
            print(figures[-2].row(), figures[-1].row(), sep="\n", flush=True)
    return figures


def report(figures: list[Figure], command: str) -> str:
    load = os.getloadavg()[0]
    return "\n".join(
        [
            "# Blob stores: put and get throughput",
            "",
            f"Measured {dt.date.today()} on {platform.machine()}, {os.cpu_count()} cores; load "
            f"average at the end {load:.2f}. Command: `{command}`.",
            "",
            "One thread puts distinct random blobs one at a time, then gets each back (and checks "
            "it), as a stage does. *local*: `LocalBlobStore` on the machine's disk. *postgres*: "
            "`PostgresBlobStore` on an embedded PostgreSQL over its Unix socket (1 MiB parts, "
            "one statement per small blob, binary COPY for large ones). *s3 (moto)*: "
            "`S3BlobStore` through boto3 to a moto server on loopback — an in-memory Python "
            "server, so these figures bound the client's cost, not a real S3's.",
            "",
            "| store | blob | blobs | put MB/s | get MB/s | puts/s | gets/s |",
            "|---|---|---:|---:|---:|---:|---:|",
            *(f.row() for f in figures),
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Fewer blobs, for a smoke test.")
    parser.add_argument("--write", action="store_true", help=f"Write {DOC.name}.")
    args = parser.parse_args()
    small, large = (200, 3) if args.quick else (2000, 20)
    folder = Path(tempfile.mkdtemp(prefix="ingestd-bench-blobs-"))
    folder.chmod(0o755)  # the embedded server's system user must reach its data folder
    try:
        figures = run(folder, small, large)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    command = "python benchmarks/bench_blobs.py" + (" --quick" if args.quick else "")
    text = report(figures, command)
    if args.write:
        DOC.write_text(text)
        print(f"wrote {DOC}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
