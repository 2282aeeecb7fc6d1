"""The ``ingestd`` command as a user runs it: run, status, jobs, search, db — JSON outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ingestd.config import Settings
from ingestd.db.embedded import EmbeddedPostgres
from tests.conftest import worker_env
from tests.e2e.procs import run_ingestd
from tests.factories import write_corpus

pytestmark = pytest.mark.e2e


def ingestd(
    settings: Settings, *args: str, check: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    done = run_ingestd(settings, *args, **{"INGESTD_LOG_LEVEL": "WARNING", **env})
    if check:
        assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout)


def test_run_status_jobs_search(settings: Settings, tmp_path: Path) -> None:
    write_corpus(tmp_path / "docs", 8)
    (tmp_path / "docs" / "empty.txt").write_bytes(b"")
    run = ingestd(
        settings, "run", str(tmp_path / "docs"), "--query", "coral reefs ocean", check=False
    )
    assert run.returncode == 1  # one document failed, so the run says so
    assert "Marine biology" in run.stdout or "doc-00004" in run.stdout

    status = as_json(ingestd(settings, "status", "--json"))
    assert status["counts"]["complete"] == 8 and status["counts"]["failed_parse"] == 1
    assert status["total"] == 9 and status["chunks"] >= 8

    jobs = as_json(ingestd(settings, "jobs", "list", "--json"))
    assert len(jobs) == 9
    assert {"id", "document_id", "filename", "state", "error_code"} <= set(jobs[0])
    failed = [j for j in jobs if j["state"] == "failed_parse"]
    assert [j["filename"] for j in failed] == ["empty.txt"]
    assert failed[0]["error_code"] == "parse.empty"

    shown = as_json(ingestd(settings, "jobs", "show", failed[0]["id"][:8], "--json"))
    assert shown["last_error"]["code"] == "parse.empty"
    assert [e["to_state"] for e in shown["events"]][-1] == "failed_parse"

    hits = as_json(ingestd(settings, "search", "coral reefs ocean warming", "--json", "-k", "3"))
    assert len(hits) == 3
    assert {"document_id", "filename", "text", "score"} <= set(hits[0])
    assert "coral reefs" in hits[0]["text"]
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]

    retried = ingestd(settings, "jobs", "retry", failed[0]["id"])
    assert "requeued 1" in retried.stdout
    listed = as_json(ingestd(settings, "jobs", "list", "--state", "uploaded", "--json"))
    assert [j["filename"] for j in listed] == ["empty.txt"]


def test_ingest_wait_exits_nonzero_when_a_document_fails(
    settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ok.md").write_text("# Fine\n\nSome text that is fine.\n")
    (tmp_path / "in" / "bad.pdf").write_bytes(b"\x00\x01\x02 not a pdf at all" * 50)
    worker = subprocess.Popen(
        [sys.executable, "-m", "ingestd", "worker"],
        env=worker_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        done = ingestd(settings, "ingest", str(tmp_path / "in"), "--wait", check=False)
    finally:
        worker.terminate()
        assert worker.wait(timeout=30) == 0
    assert done.returncode == 1
    assert "2/2" in done.stderr


def test_ingest_exits_3_when_entries_were_skipped_and_still_queues_the_rest(
    settings: Settings, tmp_path: Path
) -> None:
    root = tmp_path / "in"
    write_corpus(root, 2)
    os.mkfifo(root / "pipe")
    (root / "link.md").symlink_to(tmp_path / "outside.md")
    done = ingestd(settings, "ingest", str(root), "--json", check=False)
    assert done.returncode == 3, done.stderr
    entries = as_json(done)
    assert sorted(e["status"] for e in entries) == ["queued", "queued", "skipped", "skipped"]
    queued = as_json(ingestd(settings, "jobs", "list", "--json"))
    assert sorted(j["filename"] for j in queued) == ["doc-00000.md", "doc-00001.md"]

    (root / "pipe").unlink()
    (root / "link.md").unlink()
    clean = ingestd(settings, "ingest", str(root), check=False)
    assert clean.returncode == 0, clean.stderr  # nothing skipped: a clean run


def test_db_commands_manage_the_embedded_server(tmp_path: Path, pg_base: Path) -> None:
    home = pg_base / "cli-home"
    settings = Settings(home=home)
    env = {"INGESTD_DATABASE_URL": ""}
    try:
        started = ingestd(settings, "db", "start", **env)
        assert "running" in started.stdout
        info = as_json(ingestd(settings, "db", "status", "--json", **env))
        assert info["running"] is True and info["pgdata"] == str(home / "pgdata")
        url = ingestd(settings, "db", "url", **env).stdout.strip()
        assert url == info["url"]
        assert f"host={home / 'pgdata'}&" in url and "passfile=" in url
        assert "stopped" in ingestd(settings, "db", "stop", **env).stdout
        stopped = ingestd(settings, "db", "status", **env, check=False)
        assert stopped.returncode == 3
    finally:
        EmbeddedPostgres(home / "pgdata").stop(mode="immediate")


def test_run_with_worker_processes_on_the_embedded_database(pg_base: Path, tmp_path: Path) -> None:
    """`make demo`'s path: no URL configured, so uploads go to the home's blob folder, and the
    worker processes (handed the embedded server's URL) must read them from there."""
    home = pg_base / "run-processes-home"
    settings = Settings(home=home)
    write_corpus(tmp_path / "docs", 4)
    try:
        done = ingestd(
            settings,
            "run",
            str(tmp_path / "docs"),
            "--processes",
            "2",
            INGESTD_DATABASE_URL="",
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        summary = ingestd(settings, "status", "--json", INGESTD_DATABASE_URL="")
        result = as_json(summary)
        assert {k: n for k, n in result["counts"].items() if n} == {"complete": 4}, summary.stdout
        assert result["chunks"] > 0
    finally:
        EmbeddedPostgres(home / "pgdata").stop(mode="immediate")
