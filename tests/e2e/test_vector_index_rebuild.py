"""``ingestd db rebuild-vector-index`` as an operator runs it, while a worker process inserts
chunks: no row is lost, exactly one valid index is left and it holds every chunk; ``doctor`` warns
before and not after; ``--dry-run --json`` changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ingestd.config import Settings
from ingestd.db.database import HNSW_M, vector_index_name
from ingestd.embedders.hash import HashEmbedder
from tests.conftest import TEST_DIMENSIONS, worker_env
from tests.e2e.procs import WorkerProcess, all_terminal, ensure_killed, query, run_ingestd
from tests.factories import write_corpus
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e


def ingestd_json(settings: Settings, *args: str) -> object:
    done = run_ingestd(settings, *args, "--json", INGESTD_LOG_LEVEL="WARNING")
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


def vector_check(settings: Settings) -> dict[str, str]:
    done = run_ingestd(settings, "doctor", "--json", INGESTD_LOG_LEVEL="WARNING")
    checks = {c["name"]: c for c in json.loads(done.stdout)}
    return checks["vector index"]  # type: ignore[no-any-return]


def test_rebuild_while_a_worker_inserts_loses_nothing(settings: Settings, tmp_path: Path) -> None:
    url = settings.database_url or ""
    model = HashEmbedder(dimensions=TEST_DIMENSIONS).model
    name = vector_index_name(model)
    worker = WorkerProcess(settings, tmp_path / "logs")
    rebuild: subprocess.Popen[str] | None = None
    try:
        write_corpus(tmp_path / "a", 6, seed=1)
        ingestd_json(settings, "ingest", str(tmp_path / "a"))
        wait_until(lambda: all_terminal(url, 6), what="the first documents")
        # Make the home look like one made before m = 8: the same index with pgvector's defaults.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
            conn.execute(
                sql.SQL(
                    "CREATE INDEX {} ON chunks USING hnsw"
                    " ((embedding::vector({})) vector_cosine_ops) WHERE embedding_model = {}"
                ).format(sql.Identifier(name), sql.Literal(TEST_DIMENSIONS), sql.Literal(model))
            )
        warned = vector_check(settings)
        assert warned["status"] == "warn" and "m=16" in warned["detail"]
        dry = ingestd_json(settings, "db", "rebuild-vector-index", "--dry-run")
        assert [(s["index"], s["action"]) for s in dry] == [(name, "would rebuild")]  # type: ignore[attr-defined]
        text = run_ingestd(settings, "db", "rebuild-vector-index", "--dry-run").stdout
        assert "would rebuild" in text and name in text
        assert "m=16, ef_construction=64 -> m=8, ef_construction=64" in text
        assert query(url, "SELECT reloptions FROM pg_class WHERE relname = %s", (name,)) == [
            (None,)
        ]

        # A writer transaction holds the concurrent build at its start; meanwhile the worker
        # stores more documents' chunks, which the new index must end up holding too.
        with psycopg.connect(url) as writer:
            writer.execute("LOCK TABLE chunks IN ROW EXCLUSIVE MODE")
            rebuild = subprocess.Popen(
                [sys.executable, "-m", "ingestd", "db", "rebuild-vector-index", "--json"],
                env=worker_env(settings, INGESTD_LOG_LEVEL="WARNING"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
            )
            wait_until(
                lambda: query(
                    url,
                    "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query ILIKE 'CREATE INDEX CONCURRENTLY%%'",
                ),
                what="the concurrent build waiting",
            )
            write_corpus(tmp_path / "b", 8, seed=2)
            ingestd_json(settings, "ingest", str(tmp_path / "b"))
            wait_until(lambda: all_terminal(url, 14), what="documents stored during the build")
            assert rebuild.poll() is None  # still building: those chunks went in meanwhile
            writer.rollback()
        write_corpus(tmp_path / "c", 8, seed=3)
        ingestd_json(settings, "ingest", str(tmp_path / "c"))
        out, err = rebuild.communicate(timeout=120)
        assert rebuild.returncode == 0, err
        steps = json.loads(out)
        assert [(s["index"], s["action"], s["old"]["m"], s["new"]["m"]) for s in steps] == [
            (name, "rebuilt", 16, HNSW_M)
        ]
        wait_until(lambda: all_terminal(url, 22), what="the last documents")
    finally:
        if rebuild is not None and rebuild.poll() is None:
            rebuild.kill()
            rebuild.communicate()
        ensure_killed(worker)

    assert query(url, "SELECT count(*) FROM jobs WHERE state = 'complete'") == [(22,)]
    stored = query(url, "SELECT count(*) FROM chunks")[0][0]
    assert stored >= 22
    assert query(url, "SELECT sum(chunk_count) FROM jobs") == [(stored,)]
    indexes = query(
        url,
        "SELECT c.relname, i.indisvalid, c.reloptions FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = 'chunks'::regclass AND c.relname LIKE 'chunks_hnsw_%%'",
    )
    assert indexes == [(name, True, [f"m={HNSW_M}", "ef_construction=64"])]
    # The new index holds every chunk: an index scan wide enough to return them all does.
    with psycopg.connect(url) as conn:
        conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("SET LOCAL hnsw.ef_search = 1000")
        probe = sql.SQL(
            "SELECT id FROM chunks WHERE embedding_model = {model}"
            " ORDER BY embedding::vector({dims}) <=> (SELECT embedding::vector({dims})"
            " FROM chunks ORDER BY id LIMIT 1) LIMIT 1000"
        ).format(model=sql.Literal(model), dims=sql.Literal(TEST_DIMENSIONS))
        plan = "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + probe).fetchall())
        assert name in plan
        assert len(conn.execute(probe).fetchall()) == stored

    assert vector_check(settings)["status"] == "ok"
    again = ingestd_json(settings, "db", "rebuild-vector-index")
    assert [s["action"] for s in again] == ["up to date"]  # type: ignore[attr-defined]
