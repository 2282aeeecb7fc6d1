"""What the HNSW index costs per inserted chunk, and what it finds: index variants side by side.

    python benchmarks/bench_vector_index.py [--rows 2000] [--variants NAME,...] [--json]

The finalise stage's ``INSERT INTO chunks`` is most of the database time of a drain, and most of
that is pgvector maintaining the model's HNSW index. This benchmark isolates it: chunk-sized texts
(about 2 KB, paragraphs of the generated corpus joined) are embedded with the hash embedder at 384
dimensions, then inserted into a fresh table shaped like ``chunks`` in batches of 250 with an
``INSERT ... SELECT`` from a buffer table, as the finalise stage does, under each index variant
(the partial expression index that ``ensure_vector_index`` creates, with other operator classes or
build parameters). Reported per variant: the insert's milliseconds per row (server round trip
included), WAL bytes per row, and recall@10 of 100 short queries (six consecutive words of a
random text) against exact search and milliseconds per query, at ``--ef-search`` (pgvector's
default, 40, unless told).

Hash-embedder vectors of 2 KB texts are close to random in 384 dimensions, the hardest case for
an HNSW graph; a language model's vectors are cheaper to insert and easier to find. The machine
may be shared: run variants back to back (``--variants a,b,a,b``) and compare ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.unit.parsers.corpus import load_generator  # noqa: E402

from ingestd.db.embedded import EmbeddedPostgres  # noqa: E402
from ingestd.embedders.hash import HashEmbedder  # noqa: E402

DIMS = 384
BATCH = 250
QUERIES = 100
# name -> (cast type, operator class, WITH options)
VARIANTS: dict[str, tuple[str, str, str]] = {
    "vector-m16-ef64": ("vector", "vector_cosine_ops", ""),  # what ensure_vector_index makes
    "halfvec-m16-ef64": ("halfvec", "halfvec_cosine_ops", ""),
    "vector-m16-ef40": ("vector", "vector_cosine_ops", "WITH (ef_construction = 40)"),
    "vector-m16-ef32": ("vector", "vector_cosine_ops", "WITH (ef_construction = 32)"),
    "vector-m12-ef48": ("vector", "vector_cosine_ops", "WITH (m = 12, ef_construction = 48)"),
    "vector-m8-ef64": ("vector", "vector_cosine_ops", "WITH (m = 8)"),
    "none": ("vector", "", ""),
}


def chunk_texts(rows: int, folder: Path) -> list[str]:
    """``rows`` texts of about 2 KB from the generated 100 KB corpus."""
    documents = max(2, rows // 40 + 1)
    load_generator().generate_backlog(folder, documents, 100.0)
    texts: list[str] = []
    for path in sorted(folder.rglob("*.md")):
        current = ""
        for paragraph in path.read_text().split("\n\n"):
            current = f"{current}\n\n{paragraph}" if current else paragraph
            if len(current) >= 2000:
                texts.append(current)
                current = ""
    if len(texts) < rows:
        raise SystemExit(f"the corpus gave {len(texts)} texts, fewer than {rows}")
    return texts[:rows]


def measure(
    conn: psycopg.Connection[Any],
    name: str,
    vectors: np.ndarray,
    queries: np.ndarray,
    ef_search: int = 40,
) -> dict[str, Any]:
    cast, opclass, options = VARIANTS[name]
    conn.execute("DROP TABLE IF EXISTS bench_chunks, bench_buffer")
    conn.execute(
        "CREATE TABLE bench_chunks (id integer PRIMARY KEY, embedding_model text NOT NULL,"
        " embedding vector NOT NULL)"
    )
    conn.execute("CREATE TABLE bench_buffer (id integer NOT NULL, embedding vector NOT NULL)")
    if opclass:
        conn.execute(
            f"CREATE INDEX bench_hnsw ON bench_chunks USING hnsw"
            f" ((embedding::{cast}({DIMS})) {opclass}) {options} WHERE embedding_model = 'm'"
        )
    conn.execute("CHECKPOINT")
    wal_before = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
    assert wal_before is not None
    seconds = 0.0
    for start in range(0, len(vectors), BATCH):
        copy_sql = "COPY bench_buffer (id, embedding) FROM STDIN (FORMAT BINARY)"
        with conn.cursor().copy(copy_sql) as copy:
            copy.set_types(["int4", "vector"])
            for i in range(start, min(len(vectors), start + BATCH)):
                copy.write_row((i, vectors[i]))
        started = time.perf_counter()
        conn.execute("INSERT INTO bench_chunks SELECT id, 'm', embedding FROM bench_buffer")
        seconds += time.perf_counter() - started
        conn.execute("TRUNCATE bench_buffer")
    wal = conn.execute(
        "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", (wal_before[0],)
    ).fetchone()
    recall = query_ms = None
    if opclass:
        exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
        order = f"embedding::{cast}({DIMS}) <=> %s::{cast}({DIMS})"
        query = f"SELECT id FROM bench_chunks WHERE embedding_model = 'm' ORDER BY {order} LIMIT 10"
        plan = conn.execute(f"EXPLAIN {query}", (queries[0],)).fetchall()
        if "bench_hnsw" not in str(plan):
            raise SystemExit(f"{name}: the search does not use the index")
        conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(ef_search),))
        found = 0
        searched = time.perf_counter()
        for q, expected in zip(queries, exact, strict=True):
            ids = {row[0] for row in conn.execute(query, (q,)).fetchall()}
            found += len(ids & set(expected.tolist()))
        recall = round(found / exact.size, 3)
        query_ms = round((time.perf_counter() - searched) * 1000 / len(queries), 3)
    return {
        "variant": name,
        "rows": len(vectors),
        "insert_ms_per_row": round(seconds * 1000 / len(vectors), 3),
        "wal_bytes_per_row": round(float(wal[0]) / len(vectors)) if wal else 0,
        "ef_search": ef_search,
        "recall_at_10": recall,
        "query_ms": query_ms,
    }


def run(rows: int, variants: list[str], ef_search: int = 40) -> list[dict[str, Any]]:
    for name in variants:
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    base = Path(tempfile.mkdtemp(prefix="ingestd-vector-index-"))
    base.chmod(0o755)
    texts = chunk_texts(rows, base / "corpus")
    rng = np.random.default_rng(7)
    questions = []
    for i in rng.choice(len(texts), QUERIES, replace=len(texts) < QUERIES):
        words = texts[i].split()
        at = int(rng.integers(0, max(1, len(words) - 6)))
        questions.append(" ".join(words[at : at + 6]))
    embedder = HashEmbedder(DIMS)
    vectors = np.asarray(embedder.embed_sync(texts).vectors, dtype=np.float32)
    queries = np.asarray(embedder.embed_sync(questions).vectors, dtype=np.float32)
    server = EmbeddedPostgres(base / "pgdata")
    try:
        url = server.ensure_running().url()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            return [measure(conn, name, vectors, queries, ef_search) for name in variants]
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument(
        "--variants",
        default="vector-m16-ef64,halfvec-m16-ef64,vector-m16-ef40,vector-m12-ef48,vector-m16-ef64",
        help="comma-separated: " + ", ".join(VARIANTS),
    )
    parser.add_argument("--ef-search", type=int, default=40, help="hnsw.ef_search of the queries")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    results = run(args.rows, variants, args.ef_search)
    for r in results:
        print(
            f"{r['variant']:<18} {r['insert_ms_per_row']:.3f} ms/row, "
            f"{r['wal_bytes_per_row']} WAL bytes/row, recall@10 {r['recall_at_10']} "
            f"at ef_search {r['ef_search']} ({r['query_ms']} ms/query)",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
