"""ingestd: durable document ingestion — parse, chunk, embed and store documents in PostgreSQL.

The Python API is ``ingestd.Client`` (blocking) and ``ingestd.AsyncClient`` (see
docs/reference/python.md); both are imported on first use, so ``import ingestd`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "__version__"]

if TYPE_CHECKING:
    from ingestd.client import AsyncClient, Client


def __getattr__(name: str) -> Any:
    if name in ("Client", "AsyncClient"):
        from ingestd import client

        return getattr(client, name)
    raise AttributeError(f"module 'ingestd' has no attribute {name!r}")
