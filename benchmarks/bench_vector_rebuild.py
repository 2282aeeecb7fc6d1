"""``ingestd db rebuild-vector-index`` on a home with an m = 16 index: how long the online rebuild
takes, how long its swap holds ``chunks``, and what searches and inserts see meanwhile.

    python benchmarks/bench_vector_rebuild.py [--rows 10000] [--json]

A fresh embedded PostgreSQL gets ``--rows`` chunks of one model (random unit vectors in 384
dimensions, close to the hash embedder's) under the index an old home has (pgvector's defaults,
m = 16). Then ``rebuild_vector_indexes`` runs while one task searches (top 10, ef_search 80, as
``search`` does) and another inserts chunks in batches of 50, back to back. Reported: the
rebuild's seconds and swap milliseconds, index sizes, the searches and inserts served during it
and their slowest latency, the rows in the table against the rows written, and the insert cost per
row before and after (batches of 250). That the new index holds the rows written during its build
is asserted by tests/e2e/test_vector_index_rebuild.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector_async
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from ingestd.db.database import (  # noqa: E402
    migrate_database,
    rebuild_vector_indexes,
    vector_index_name,
)
from ingestd.db.embedded import EmbeddedPostgres  # noqa: E402

DIMS = 384
MODEL = "bench-384"


def unit_vectors(rng: np.random.Generator, count: int) -> np.ndarray:
    v = rng.standard_normal((count, DIMS)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def insert(conn: Any, document: uuid.UUID, vectors: np.ndarray, start: int) -> None:
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO chunks (id, document_id, owner, ordinal, text, token_count,"
            " embedding_model, embedding) VALUES (%s, %s, 'bench', %s, 'x', 1, %s, %s)",
            [(f"c{start + i}", document, start + i, MODEL, v) for i, v in enumerate(vectors)],
        )
    await conn.commit()


async def ms_per_row(conn: Any, document: uuid.UUID, vectors: np.ndarray, start: int) -> float:
    began = time.perf_counter()
    for at in range(0, len(vectors), 250):
        await insert(conn, document, vectors[at : at + 250], start + at)
    return round((time.perf_counter() - began) * 1000 / len(vectors), 3)


async def run(rows: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="ingestd-vector-rebuild-"))
    base.chmod(0o755)
    server = EmbeddedPostgres(base / "pgdata")
    rng = np.random.default_rng(3)
    try:
        url = server.ensure_running().url()
        await migrate_database(url)
        conn = await psycopg.AsyncConnection.connect(url)
        await register_vector_async(conn)
        document = uuid.uuid4()
        await conn.execute(
            "INSERT INTO documents (id, owner, filename, media_type, size_bytes, sha256, blob_key)"
            " VALUES (%s, 'bench', 'b', 'text/plain', 1, 'x', 'k')",
            (document,),
        )
        await conn.commit()
        for at in range(0, rows, 1000):
            await insert(conn, document, unit_vectors(rng, min(1000, rows - at)), at)
        name = vector_index_name(MODEL)
        await conn.execute(
            sql.SQL(
                "CREATE INDEX {} ON chunks USING hnsw ((embedding::vector({})) vector_cosine_ops)"
                " WHERE embedding_model = {}"
            ).format(sql.Identifier(name), sql.Literal(DIMS), sql.Literal(MODEL))
        )
        await conn.commit()
        next_id = rows
        before = await ms_per_row(conn, document, unit_vectors(rng, 1000), next_id)
        next_id += 1000

        done = asyncio.Event()
        seen: dict[str, list[float]] = {"search": [], "insert": []}
        inserted = 0

        async def searching() -> None:
            reader = await psycopg.AsyncConnection.connect(url, autocommit=True)
            await register_vector_async(reader)
            await reader.execute("SET hnsw.ef_search = 80")
            query = sql.SQL(
                "SELECT id FROM chunks WHERE embedding_model = {} "
                "ORDER BY embedding::vector({}) <=> %s LIMIT 10"
            ).format(sql.Literal(MODEL), sql.Literal(DIMS))
            while not done.is_set():
                began = time.perf_counter()
                await reader.execute(query, (unit_vectors(rng, 1)[0],))
                seen["search"].append(time.perf_counter() - began)
            await reader.close()

        async def inserting() -> None:
            nonlocal inserted
            writer = await psycopg.AsyncConnection.connect(url)
            await register_vector_async(writer)
            while not done.is_set():
                began = time.perf_counter()
                await insert(writer, document, unit_vectors(rng, 50), next_id + inserted)
                seen["insert"].append(time.perf_counter() - began)
                inserted += 50
            await writer.close()

        load = [asyncio.create_task(searching()), asyncio.create_task(inserting())]
        await asyncio.sleep(0.5)
        steps = await rebuild_vector_indexes(url)
        done.set()
        await asyncio.gather(*load)
        next_id += inserted
        after = await ms_per_row(conn, document, unit_vectors(rng, 1000), next_id)
        total = (await (await conn.execute("SELECT count(*) FROM chunks")).fetchone() or (0,))[0]
        await conn.close()
        step = steps[0].to_json()
        return {
            "rows": rows,
            "rebuild": {k: step[k] for k in ("action", "old", "new", "seconds", "swap_ms")},
            "size_mib": [
                round(step["size_bytes"] / 1024**2, 1),
                round((step["new_size_bytes"] or 0) / 1024**2, 1),
            ],
            "during": {
                kind: {"count": len(times), "max_ms": round(max(times, default=0) * 1000, 1)}
                for kind, times in seen.items()
            },
            "inserted_during": inserted,
            "rows_total": total,
            "rows_expected": rows + 2000 + inserted,
            "insert_ms_per_row": {"m16_before": before, "m8_after": after},
        }
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.rows))
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
