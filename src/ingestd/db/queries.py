"""Named SQL queries, loaded once from ``db/queries/*.sql``.

A file holds blocks that start with ``-- name: <query_name>``; the rest of the block, up to the
next such line, is the query. Queries use psycopg's ``%(name)s`` placeholders.
"""

from __future__ import annotations

import re
from importlib import resources
from types import MappingProxyType
from typing import LiteralString

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    parts = _NAME.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


def load_queries() -> dict[str, str]:
    queries: dict[str, str] = {}
    folder = resources.files("ingestd.db").joinpath("queries")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            for name, sql in parse_queries(entry.read_text()).items():
                if name in queries:
                    raise ValueError(f"query {name!r} is defined twice")
                queries[name] = sql
    return queries


class _Queries:
    def __init__(self) -> None:
        self._queries = MappingProxyType(load_queries())

    def __getitem__(self, name: str) -> LiteralString:
        # The text comes from our own package files, never from input: a literal in all but name.
        return self._queries[name]

    def __contains__(self, name: str) -> bool:
        return name in self._queries


QUERIES = _Queries()
