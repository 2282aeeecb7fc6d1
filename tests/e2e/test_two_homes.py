"""Two "machines": workers from two ingestd homes on one database and one blob store, with no
shared folder. Home A runs the embedded PostgreSQL, serves it over TCP (``db start --listen``) and
keeps its blobs in it; home B connects with the URL ``db url`` prints and a copy of A's password
file (blobs: ``auto`` -> PostgreSQL, because a URL is set). Every document completes exactly once,
whichever home uploaded it and whichever home's workers ran it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingestd.config import Settings, WorkerSettings
from ingestd.db.embedded import EmbeddedPostgres
from ingestd.mocks import free_port
from tests.e2e.procs import (
    WorkerProcess,
    ensure_killed,
    query,
    repeated_transitions,
    run_ingestd,
    state_counts,
)
from tests.factories import write_corpus

pytestmark = pytest.mark.e2e

TRANSITIONS = 9  # uploaded -> ... -> complete
FAST = WorkerSettings(
    lease_seconds=5.0, poll_seconds=0.5, backoff_base_seconds=0.05, backoff_max_seconds=0.2
)


@pytest.fixture
def homes() -> Iterator[tuple[Path, Path]]:
    """Two homes in a folder the embedded server's system user can reach (not pytest's tmp)."""
    base = Path(tempfile.mkdtemp(prefix="ingestd-two-homes-"))
    base.chmod(0o755)
    home_a, home_b = base / "machine-a", base / "machine-b"
    try:
        yield home_a, home_b
    finally:
        EmbeddedPostgres(home_a / "pgdata").stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


def cli(settings: Settings, *args: str, **env: str) -> str:
    done = run_ingestd(settings, *args, **env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def serve_over_tcp(machine_a: Settings, machine_b: Settings) -> str:
    """Start A's server on a loopback port; returns the URL machine B uses (A's password file
    copied into B's home, as an operator would)."""
    cli(machine_a, "db", "start", "--listen", f"127.0.0.1:{free_port()}")
    remote = cli(machine_a, "db", "url").strip()
    assert remote.startswith("postgresql://") and "@127.0.0.1:" in remote
    passfile = machine_b.home / "pgpass"
    machine_b.home.mkdir(parents=True)
    shutil.copyfile(EmbeddedPostgres(machine_a.pgdata).status().passfile, passfile)
    passfile.chmod(0o600)
    return f"{remote}?passfile={passfile}"


def transitions_by_worker(url: str) -> dict[str, int]:
    rows = query(
        url,
        "SELECT worker_id, count(*) FROM job_events WHERE kind = 'transition' GROUP BY 1",
    )
    return {str(w): int(n) for w, n in rows}


def test_workers_of_two_homes_share_one_database_and_blob_store(
    homes: tuple[Path, Path], tmp_path: Path
) -> None:
    home_a, home_b = homes
    machine_a = Settings(home=home_a, database_url=None, worker=FAST)
    blobs_in_db = {"INGESTD_BLOBS__BACKEND": "postgres"}
    url = serve_over_tcp(machine_a, Settings(home=home_b, worker=FAST))
    machine_b = Settings(home=home_b, database_url=url, worker=FAST)
    write_corpus(tmp_path / "from-a", 20, paragraphs=2, seed=1)
    write_corpus(tmp_path / "from-b", 20, paragraphs=2, seed=2)

    # Machine B's worker alone runs what machine A uploaded: the uploads reach it through the
    # database, and the parsed text it writes is there for anyone after it.
    cli(machine_a, "ingest", str(tmp_path / "from-a"), **blobs_in_db)
    alone = WorkerProcess(machine_b, tmp_path / "logs", "--burst", "--concurrency", "8")
    try:
        assert alone.wait(timeout=120) == 0
    finally:
        ensure_killed(alone)
    assert state_counts(url) == {"complete": 20}
    assert set(transitions_by_worker(url)) == {alone.worker_id()}

    # Then a worker on each machine at once, on what machine B uploaded.
    cli(machine_b, "ingest", str(tmp_path / "from-b"))
    workers = [
        WorkerProcess(machine, tmp_path / "logs", "--burst", "--concurrency", "8", **env)
        for machine, env in ((machine_a, blobs_in_db), (machine_b, {}))
    ]
    try:
        assert [w.wait(timeout=120) for w in workers] == [0, 0]
    finally:
        ensure_killed(*workers)
    assert state_counts(url) == {"complete": 40}
    assert repeated_transitions(url) == []
    by_worker = transitions_by_worker(url)
    assert sum(by_worker.values()) == 40 * TRANSITIONS
    assert set(by_worker) <= {alone.worker_id(), *(w.worker_id() for w in workers)}
    # Every chunk once, every upload and parsed text in the database, no blob folder anywhere.
    dup_chunks = query(
        url,
        "SELECT document_id, ordinal FROM chunks GROUP BY 1, 2 HAVING count(*) > 1",
    )
    assert dup_chunks == []
    missing = query(
        url,
        "SELECT count(*) FROM jobs j JOIN documents d ON d.id = j.document_id"
        " WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.key = d.blob_key)"
        " OR NOT EXISTS (SELECT 1 FROM blobs b WHERE b.key = j.parsed_blob_key)",
    )
    assert missing == [(0,)]
    assert not (home_a / "blobs").exists() and not (home_b / "blobs").exists()
