"""The schema against the real embedded PostgreSQL: migrations, and the state machine in SQL."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from ingestd.db.database import migrate_database, migration_files, sync_state_machine
from ingestd.states import ALLOWED_TRANSITIONS, State


def _insert_job(conn: psycopg.Connection, state: str = "uploaded") -> uuid.UUID:
    doc = conn.execute(
        "INSERT INTO documents (owner, filename, media_type, size_bytes, sha256, blob_key)"
        " VALUES ('o', 'f.txt', 'text/plain', 1, %s, 'k') RETURNING id",
        (uuid.uuid4().hex,),
    ).fetchone()
    assert doc is not None
    row = conn.execute(
        "INSERT INTO jobs (document_id, owner, state) VALUES (%s, 'o', %s) RETURNING id",
        (doc[0], state),
    ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


async def test_migrations_are_idempotent_and_concurrent(db_url: str) -> None:
    # Many processes start at once: the advisory lock serialises them; nothing is applied twice.
    results = await asyncio.gather(*(migrate_database(db_url) for _ in range(4)))
    assert all(applied == [] for applied in results)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
    assert rows == [(version,) for version, _, _ in migration_files()]


def test_transition_table_mirrors_states_py(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        rows = set(conn.execute("SELECT from_state, to_state FROM job_transitions").fetchall())
    assert rows == {(a.value, b.value) for a, b in ALLOWED_TRANSITIONS}


def test_illegal_transition_is_rejected_by_the_database(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        job = _insert_job(conn)
        with pytest.raises(psycopg.errors.CheckViolation, match="illegal transition"):
            conn.execute("UPDATE jobs SET state = 'complete' WHERE id = %s", (job,))
        conn.execute("UPDATE jobs SET state = 'parse_queued' WHERE id = %s", (job,))
        with pytest.raises(psycopg.errors.CheckViolation, match="parse_queued -> uploaded"):
            conn.execute("UPDATE jobs SET state = 'uploaded' WHERE id = %s", (job,))
        with pytest.raises(psycopg.errors.CheckViolation, match="no_such_state"):
            conn.execute("UPDATE jobs SET state = 'no_such_state' WHERE id = %s", (job,))
        state = conn.execute("SELECT state FROM jobs WHERE id = %s", (job,)).fetchone()
        assert state == ("parse_queued",)


def test_a_job_must_start_uploaded(db_url: str) -> None:
    with (
        psycopg.connect(db_url, autocommit=True) as conn,
        pytest.raises(psycopg.errors.CheckViolation),
    ):
        _insert_job(conn, state="complete")


def test_terminal_states_stamp_completed_at(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        job = _insert_job(conn)
        conn.execute("UPDATE jobs SET state = 'failed_parse' WHERE id = %s", (job,))
        done = conn.execute("SELECT completed_at FROM jobs WHERE id = %s", (job,)).fetchone()
        assert done is not None and done[0] is not None
        conn.execute("UPDATE jobs SET state = 'uploaded' WHERE id = %s", (job,))
        again = conn.execute("SELECT completed_at FROM jobs WHERE id = %s", (job,)).fetchone()
        assert again == (None,)


def test_job_events_are_append_only(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        job = _insert_job(conn)
        conn.execute(
            "INSERT INTO job_events (job_id, from_state, to_state, attempt, correlation_id)"
            " VALUES (%s, 'uploaded', 'parse_queued', 1, gen_random_uuid())",
            (job,),
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE job_events SET to_state = 'complete'")


async def test_state_sync_is_repeatable(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await sync_state_machine(conn)
        await sync_state_machine(conn)
        cur = await conn.execute("SELECT count(*) FROM job_states")
        assert await cur.fetchone() == (len(State),)
