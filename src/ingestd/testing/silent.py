"""A database that hangs: a TCP port that accepts connections and never says a word."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def silent_database(backlog: int = 128) -> Iterator[str]:
    """A PostgreSQL URL whose server accepts connections (up to ``backlog`` waiting) and never
    answers; connecting gives up after 2 s."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(backlog)
        port = listener.getsockname()[1]
        yield f"postgresql://postgres@127.0.0.1:{port}/ingestd?connect_timeout=2"
