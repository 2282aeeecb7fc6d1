"""A hostile folder through the real CLI (issue 7, findings 2, 3 and 4).

The folder holds a link to a file outside it, a link loop, a FIFO, a file the ingest cannot open,
a name that is not UTF-8, JSON nested 2,000 deep and identical (empty) files. Every regular file
inside is queued, every other entry is reported with its code, nothing from outside reaches
``chunks``, and ``run`` / ``ingest --wait`` return.

We run as root, which reads any file whatever its mode. So the ingest runs with the capabilities
that let root bypass file modes (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) dropped from its bounding
set (``setpriv``): a mode-000 file is then as unreadable to it as to any user. Without those
capabilities it may not reach the database's socket folder either, so it talks to the database
through a TCP relay this test runs with full rights.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg.conninfo
import pytest

from ingestd.config import Settings
from tests.e2e.procs import query, run_ingestd
from tests.factories import write_corpus

pytestmark = pytest.mark.e2e

SECRET = "zanzibar-outside-secret"
UNREADABLE = "quokka-unreadable-content"


def drop_file_mode_override() -> list[str]:
    """The command prefix that makes file modes bind this process even when it runs as root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "running as root needs setpriv (util-linux) to make a file unreadable"
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


class Relay:
    """127.0.0.1:<port> → the database's Unix socket, one thread pair per connection."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.socket_path)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for end in (src, dst):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
            src.close()  # each socket is the source of exactly one of the pair's threads


@pytest.fixture
def tcp_url(settings: Settings) -> Iterator[str]:
    """The test database's URL, reached over TCP through a relay (see the module doc)."""
    params = psycopg.conninfo.conninfo_to_dict(settings.database_url or "")
    host, port = str(params.get("host") or ""), str(params.get("port") or 5432)
    if not host.startswith("/"):
        yield settings.database_url or ""
        return
    relay = Relay(f"{host}/.s.PGSQL.{port}")
    try:
        yield psycopg.conninfo.make_conninfo(
            settings.database_url or "", host="127.0.0.1", port=str(relay.port)
        )
    finally:
        relay.server.close()


def ingestd(settings: Settings, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_ingestd(
        settings,
        *args,
        timeout=180,
        prefix=drop_file_mode_override(),
        INGESTD_LOG_LEVEL="WARNING",
        INGESTD_DATABASE_URL=url,
    )


def hostile_folder(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text(f"# Secret\n\n{SECRET} lives outside the folder.\n")
    root = tmp_path / "hostile"
    write_corpus(root, 3)
    (root / "link-to-secret.md").symlink_to(outside / "secret.md")
    (root / "link-to-outside").symlink_to(outside)
    (root / "loop").mkdir()
    (root / "loop" / "back").symlink_to(root)
    (root / "self").symlink_to(root / "self")
    os.mkfifo(root / "pipe")
    locked = root / "locked.md"
    locked.write_text(f"# Locked\n\n{UNREADABLE}\n")
    locked.chmod(0)
    with open(os.path.join(os.fsencode(root), b"caf\xe9 menu.md"), "wb") as odd:
        odd.write(b"# Menu\n\nCroissants and coffee, served all morning.\n")
    (root / "deep.json").write_bytes(b"[" * 2000 + b"]" * 2000)
    (root / "empty-1.txt").write_bytes(b"")
    (root / "empty-2.txt").write_bytes(b"")
    return root


def by_name(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {Path(e.get("path") or e["filename"]).name: e for e in entries}


def test_a_hostile_folder_ingests_every_regular_file_and_reports_the_rest(
    settings: Settings, tcp_url: str, tmp_path: Path
) -> None:
    root = hostile_folder(tmp_path)
    done = ingestd(settings, tcp_url, "ingest", str(root), "--json", "--follow-symlinks")
    assert done.returncode == 3, done.stderr  # entries were skipped; the rest is queued
    entries = by_name(json.loads(done.stdout))
    skipped = {name: e["code"] for name, e in entries.items() if e["status"] == "skipped"}
    assert skipped == {
        "link-to-secret.md": "ingest.outside_root",
        "link-to-outside": "ingest.outside_root",
        "back": "ingest.symlink_loop",
        "self": "ingest.symlink_loop",
        "pipe": "ingest.not_regular",
        "locked.md": "ingest.unreadable",
    }
    queued = {name for name, e in entries.items() if e["status"] != "skipped"}
    assert queued == {
        "doc-00000.md",
        "doc-00001.md",
        "doc-00002.md",
        "caf\\xe9 menu.md",
        "deep.json",
        "empty-1.txt",
        "empty-2.txt",
    }
    assert entries["empty-1.txt"]["job_id"] == entries["empty-2.txt"]["job_id"]
    assert entries["empty-2.txt"]["duplicate"] is True

    # run: the same folder again (everything already known, identical files) drives the jobs
    # to the end and returns.
    ran = ingestd(settings, tcp_url, "run", str(root))
    assert ran.returncode == 1, ran.stderr  # deep.json and the empty file fail, as they should
    assert "skipped 6" in ran.stderr  # links are not followed without --follow-symlinks
    assert f"skipped {root / 'pipe'}: ingest.not_regular" in ran.stderr

    url = settings.database_url or ""
    jobs = dict(
        query(
            url,
            "SELECT d.filename, j.state || coalesce(' ' || (j.last_error->>'code'), '')"
            " FROM jobs j JOIN documents d ON d.id = j.document_id",
        )
    )
    assert jobs.pop("deep.json") == "failed_parse parse.too_large"
    assert jobs.pop("empty-1.txt") == "failed_parse parse.empty"
    assert set(jobs.values()) == {"complete"} and len(jobs) == 4
    raw = query(
        url, "SELECT metadata->>'filename_bytes_hex' FROM documents WHERE filename LIKE 'caf%'"
    )
    assert bytes.fromhex(raw[0][0]) == b"caf\xe9 menu.md"
    leaked = query(
        url,
        "SELECT count(*) FROM chunks WHERE text LIKE %s OR text LIKE %s",
        (f"%{SECRET}%", f"%{UNREADABLE}%"),
    )
    assert leaked[0][0] == 0
    assert query(url, "SELECT count(*) FROM chunks WHERE text LIKE '%Croissants%'")[0][0] == 1

    # ingest --wait: all of it already known and finished, with two identical files: returns.
    waited = ingestd(settings, tcp_url, "ingest", str(root), "--wait")
    assert waited.returncode == 1, waited.stderr  # the failed documents are still failed
    assert "queued 0 new document(s); 7 already known; skipped 6" in waited.stderr
    assert "6/6" in waited.stderr  # six jobs: the identical empty files share one
