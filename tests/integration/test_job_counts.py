"""job_counts (migration 0011) always sums to what a count over jobs says (real PostgreSQL):
through inserts, transitions, usage and error changes, concurrent and rolled-back transactions,
deletes, folds and TRUNCATE."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from decimal import Decimal
from typing import Any

from psycopg.rows import dict_row

from ingestd.app import App
from ingestd.db.database import Conn
from ingestd.ingest import Upload, ingest_uploads
from ingestd.observability.fleet import fleet_snapshot
from ingestd.states import FAILURE_OF, HAPPY_PATH, State
from tests.factories import markdown_document

Counts = dict[tuple[str, str], tuple[Any, ...]]

DIRECT = """
SELECT state, coalesce(last_error ->> 'code', '') AS code, count(*) AS jobs,
       coalesce(sum((usage ->> 'embedding_tokens')::numeric), 0) AS t,
       coalesce(sum((usage ->> 'parse_pages')::numeric), 0) AS p,
       coalesce(sum((usage ->> 'embedding_cost_usd')::numeric), 0) AS ec,
       coalesce(sum((usage ->> 'parse_cost_usd')::numeric), 0) AS pc
FROM jobs GROUP BY 1, 2
"""
COUNTED = """
SELECT state, code, sum(jobs) AS jobs, sum(embedding_tokens) AS t, sum(parse_pages) AS p,
       sum(embedding_cost_usd) AS ec, sum(parse_cost_usd) AS pc
FROM job_counts GROUP BY 1, 2 HAVING sum(jobs) <> 0
"""


def _as_counts(rows: list[dict[str, Any]]) -> Counts:
    return {
        (r["state"], r["code"]): tuple(Decimal(r[k]) for k in ("jobs", "t", "p", "ec", "pc"))
        for r in rows
    }


async def _assert_exact(app: App) -> None:
    async def both(conn: Conn) -> tuple[Counts, Counts]:
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(DIRECT)
        direct = _as_counts(await cur.fetchall())
        await cur.execute(COUNTED)
        return direct, _as_counts(await cur.fetchall())

    direct, counted = await app.db.transaction(both)
    assert counted == direct


async def _queue(app: App, count: int, owner: str = "counts") -> None:
    uploads = [Upload(f"c-{owner}-{i}.md", markdown_document(i).encode()) for i in range(count)]
    await ingest_uploads(app.db, app.blobs, uploads, owner=owner)


def _next_state(state: str, rng: random.Random) -> tuple[str, str | None] | None:
    current = State(state)
    if current not in FAILURE_OF:
        return None
    if rng.random() < 0.15:
        return FAILURE_OF[current].value, rng.choice(["parse.empty", "embed.rejected", "x.y"])
    return HAPPY_PATH[HAPPY_PATH.index(current) + 1].value, None


async def _mover(app: App, seed: int, rounds: int) -> None:
    """Moves some jobs a step (with usage and errors), sometimes rolling the whole batch back."""
    rng = random.Random(seed)
    for _ in range(rounds):
        rows = await app.db.fetch_all(
            "SELECT id, state FROM jobs WHERE completed_at IS NULL ORDER BY random() LIMIT 3"
        )

        async def step(conn: Conn, rows: list[dict[str, Any]] = rows) -> None:
            for row in rows:
                moved = _next_state(row["state"], rng)
                if moved is None:
                    continue
                to_state, code = moved
                usage = {
                    "embedding_tokens": rng.randint(1, 500),
                    "parse_pages": rng.randint(0, 3),
                    "embedding_cost_usd": round(rng.random() / 1000, 6),
                }
                error = json.dumps({"code": code, "message": "m"}) if code else None
                await conn.execute(
                    "UPDATE jobs SET state = %s, last_error = coalesce(%s::jsonb, last_error),"
                    " usage = ingestd_add_usage(usage, %s::jsonb) WHERE id = %s AND state = %s",
                    (to_state, error, json.dumps(usage), row["id"], row["state"]),
                )
            if rng.random() < 0.2:
                raise _RolledBack

        with contextlib.suppress(_RolledBack):
            await app.db.transaction(step)


class _RolledBack(Exception):
    pass


async def test_counts_stay_exact_through_concurrent_transitions_and_rollbacks(app: App) -> None:
    await _queue(app, 40)
    await _assert_exact(app)
    await asyncio.gather(*(_mover(app, seed, 40) for seed in range(4)), _queue(app, 10, "late"))
    await _assert_exact(app)
    # Error codes change without a state change (a retry records its error) and usage grows.
    await app.db.execute(
        'UPDATE jobs SET last_error = \'{"code": "retry.me"}\','
        " usage = ingestd_add_usage(usage, '{\"parse_cost_usd\": 0.25}')"
        " WHERE completed_at IS NULL"
    )
    await _assert_exact(app)
    snap = await fleet_snapshot(app.db, app.settings)
    direct = await app.db.fetch_all("SELECT state, count(*) AS n FROM jobs GROUP BY state")
    present = {state: n for state, n in snap.jobs_by_state.items() if n}
    assert present == {r["state"]: r["n"] for r in direct}


async def test_deletes_folds_and_truncate_keep_counts_exact(app: App) -> None:
    await _queue(app, 12)
    await app.db.execute(
        "DELETE FROM documents WHERE id IN (SELECT document_id FROM jobs LIMIT 5)"
    )  # jobs go by cascade
    await _assert_exact(app)
    # Every few hundred appends a writer folds the table back to one row per (state, code).
    for _ in range(260):
        await app.db.execute(
            "UPDATE jobs SET usage = ingestd_add_usage(usage, '{\"embedding_tokens\": 1}')"
            " WHERE id = (SELECT id FROM jobs ORDER BY id LIMIT 1)"
        )
        await app.db.execute(
            "UPDATE jobs SET usage = ingestd_add_usage(usage, '{\"parse_pages\": 1}')"
            " WHERE id = (SELECT id FROM jobs ORDER BY id DESC LIMIT 1)"
        )
    rows = await app.db.fetch_all("SELECT count(*) AS n FROM job_counts")
    assert rows[0]["n"] < 500
    await _assert_exact(app)
    await app.db.execute("SELECT ingestd_fold_job_counts()")
    rows = await app.db.fetch_all("SELECT count(*) AS n FROM job_counts")
    assert rows[0]["n"] == 1  # all seven jobs: uploaded, no error
    await _assert_exact(app)
    # Writes that bypass the triggers are repaired by counting again.
    await app.db.execute("DELETE FROM job_counts")
    await app.db.execute("SELECT ingestd_recount_jobs()")
    await _assert_exact(app)
    await app.db.execute("TRUNCATE documents CASCADE")
    assert await app.db.fetch_all("SELECT * FROM job_counts") == []
    await _queue(app, 2, "after")
    await _assert_exact(app)
