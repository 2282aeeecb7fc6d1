"""Local mock servers that speak the vendors' wire protocols (OpenAI embeddings, LlamaParse).

Each mock is a FastAPI app (``create_app``) plus a ``serve`` entry point for ``ingestd mock ...``;
their shared behaviour controls (latency, faults, rate limits, counters, ``/_admin`` routes) live in
:mod:`ingestd.mocks.faults`. :class:`BackgroundServer` runs any ASGI app under uvicorn on a free
loopback port in a thread, for tests and benchmarks that need real HTTP.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

__all__ = ["BackgroundServer", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class BackgroundServer:
    """uvicorn serving ``app`` in a daemon thread; ``url`` is ready once ``start()`` returns.

    Use as a context manager, or call ``start()`` / ``stop()``.
    """

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int | None = None, **uvicorn_options: Any
    ) -> None:
        self.app = app
        self.host = host
        self.port = port or free_port(host)
        options: dict[str, Any] = {"log_level": "warning", "lifespan": "off"} | uvicorn_options
        config = uvicorn.Config(app, host=host, port=self.port, **options)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="mock-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"mock server did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
