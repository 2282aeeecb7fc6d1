"""A TCP fault proxy for chaos tests: put it between ingestd and PostgreSQL or a vendor, then break
the network on command.

:class:`FaultProxy` listens on a loopback TCP port and forwards every connection to an upstream, a
``(host, port)`` or a Unix socket path (the embedded PostgreSQL listens on one). Its faults:

* :meth:`~FaultProxy.set_latency` — every chunk of bytes arrives ``seconds`` later, in both
  directions, without capping throughput (bytes are timestamped, not forwarded one by one);
* :meth:`~FaultProxy.cut_all` — abort every open connection (both ends see a reset);
* :meth:`~FaultProxy.blackhole` — for ``seconds`` nothing moves: open connections stall and new
  ones are accepted but not connected upstream, as in a network partition where TCP keeps
  retransmitting; afterwards everything still held flows again, in order;
* :meth:`~FaultProxy.refuse` — stop listening, so new connections are refused
  (``ECONNREFUSED``, as from a server that is down); open ones are left alone.

The controls are plain methods, safe to call from any thread: the proxy runs on its own event
loop, either the caller's (``async with FaultProxy(...)``) or a private one in a daemon thread
(``with FaultProxy(...).running():``) for synchronous tests that drive subprocesses.
:attr:`FaultProxy.stats` counts what happened, so a test can check its fault really fired.

Why hand-written (docs/decisions/0012-fault-proxy.md): Toxiproxy, the usual tool, is a Go server
that no package registry we use ships; its Python client alone cannot run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

READ_SIZE = 64 * 1024
Upstream = tuple[str, int] | Path


@dataclass
class ProxyStats:
    """What the proxy has done since it started."""

    accepted: int = 0  # connections accepted from clients
    upstream_failures: int = 0  # accepted, but the upstream could not be reached
    cut: int = 0  # connections aborted by cut_all
    refusals: int = 0  # times refuse() closed the listening socket
    blackholes: int = 0  # times blackhole() started
    bytes_up: int = 0  # client -> upstream
    bytes_down: int = 0  # upstream -> client


@dataclass
class _Link:
    """One proxied connection: the client's and the upstream's writers, and its pump tasks."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    """A loopback TCP listener that forwards to ``upstream`` and injects network faults."""

    def __init__(self, upstream: Upstream, host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = upstream
        self.host = host
        self.port = port
        self.stats = ProxyStats()
        self._latency = 0.0
        self._links: dict[int, _Link] = {}
        self._next_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._blackhole_until = 0.0
        self._refuse_handle: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    # -- life cycle --------------------------------------------------------------------------

    async def start(self) -> FaultProxy:
        """Start listening on the running loop; ``port`` is known once this returns."""
        self._loop = asyncio.get_running_loop()
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._listen()
        return self

    async def close(self, timeout: float = 5.0) -> None:
        """Stop listening, abort every connection, and let each connection's task end: one left
        pending on a loop that stops is garbage-collected later, warning of its unclosed
        streams in whatever runs then (a test, under warnings-as-errors)."""
        if self._refuse_handle is not None:
            self._refuse_handle.cancel()
        await self._stop_listening()
        self._abort_all()
        if self._flowing is not None:
            self._end_blackhole()  # a connection held by a black hole then sees its abort
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._links and loop.time() < deadline:
            await asyncio.sleep(0.01)

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @contextlib.contextmanager
    def running(self, timeout: float = 10.0) -> Iterator[FaultProxy]:
        """Run the proxy on a private event loop in a daemon thread, for synchronous callers."""
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout)
            yield self
        finally:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.close(), loop).result(timeout)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout)
            loop.close()

    # -- faults (callable from any thread) ---------------------------------------------------

    def set_latency(self, seconds: float) -> None:
        """Delay every chunk of bytes by ``seconds`` in each direction (0: none)."""
        if seconds < 0:
            raise ValueError("latency cannot be negative")
        self._latency = seconds

    def cut_all(self) -> int:
        """Abort every open connection now; returns how many were cut."""
        return self._call(self._abort_all)

    def blackhole(self, seconds: float) -> None:
        """Move no bytes and connect nothing upstream for ``seconds``; then resume."""
        self._call(self._start_blackhole, seconds)

    def refuse(self, seconds: float | None = None) -> None:
        """Refuse new connections (the port stops listening) for ``seconds``, or until
        :meth:`accept` when ``None``. Open connections are not touched."""
        self._call(self._start_refusing, seconds)

    def accept(self) -> None:
        """Listen again after :meth:`refuse`."""
        self._call(self._end_refusing)

    def heal(self) -> None:
        """End every fault now: no latency, no black hole, listening."""
        self.set_latency(0.0)
        self._call(self._end_blackhole)
        self.accept()

    @property
    def open_connections(self) -> int:
        """Connections accepted and not yet closed (including those held by a black hole)."""
        return len(self._links)

    def _call(self, fn: object, *args: object) -> int:
        """Run ``fn`` on the proxy's loop and return its result, from any thread."""
        assert callable(fn)
        loop = self._loop
        if loop is None:
            raise RuntimeError("the proxy is not running")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            result = fn(*args)
        else:
            result = asyncio.run_coroutine_threadsafe(_as_coroutine(fn, *args), loop).result(10)
        if asyncio.iscoroutine(result):
            raise TypeError("fault controls are synchronous")
        return int(result or 0)

    # -- fault internals (on the loop) -------------------------------------------------------

    def _abort_all(self) -> int:
        links = list(self._links.values())
        for link in links:
            link.abort()
        self.stats.cut += len(links)
        return len(links)

    def _start_blackhole(self, seconds: float) -> None:
        assert self._loop is not None and self._flowing is not None
        self.stats.blackholes += 1
        self._blackhole_until = max(self._blackhole_until, self._loop.time() + seconds)
        self._flowing.clear()
        self._loop.call_at(self._blackhole_until, self._maybe_end_blackhole)

    def _maybe_end_blackhole(self) -> None:
        assert self._loop is not None
        if self._loop.time() >= self._blackhole_until - 1e-3:
            self._end_blackhole()

    def _end_blackhole(self) -> None:
        assert self._flowing is not None
        self._blackhole_until = 0.0
        self._flowing.set()

    def _start_refusing(self, seconds: float | None) -> None:
        assert self._loop is not None
        if self._refuse_handle is not None:
            self._refuse_handle.cancel()
            self._refuse_handle = None
        if self._server is not None:
            self.stats.refusals += 1
            self._server.close()
            self._server = None
        if seconds is not None:
            self._refuse_handle = self._loop.call_later(seconds, self._end_refusing)

    def _end_refusing(self) -> None:
        assert self._loop is not None
        if self._refuse_handle is not None:
            self._refuse_handle.cancel()
            self._refuse_handle = None
        if self._server is None:
            self._loop.create_task(self._listen())

    # -- forwarding --------------------------------------------------------------------------

    async def _listen(self) -> None:
        if self._server is not None:
            return
        # SO_REUSEADDR lets refuse()/accept() take the same port again at once.
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, reuse_address=True
        )
        sock: socket.socket = self._server.sockets[0]
        self.port = sock.getsockname()[1]

    async def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link_id = self._next_id
        self._next_id += 1
        link = _Link(writer)
        self._links[link_id] = link
        self.stats.accepted += 1
        try:
            await self._wait_flowing()
            if writer.transport.is_closing():  # cut while it waited
                return
            try:
                up_reader, up_writer = await self._connect_upstream()
            except OSError:
                self.stats.upstream_failures += 1
                writer.transport.abort()
                return
            link.upstream = up_writer
            link.tasks = [
                asyncio.create_task(self._pump(reader, up_writer, "bytes_up", link)),
                asyncio.create_task(self._pump(up_reader, writer, "bytes_down", link)),
            ]
            # Each direction runs to its EOF (half-close passes through); an error aborts both.
            await asyncio.wait(link.tasks)
        finally:
            for task in link.tasks:
                task.cancel()
            for w in (writer, link.upstream):
                if w is not None:
                    w.close()
            self._links.pop(link_id, None)

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if isinstance(self.upstream, Path):
            return await asyncio.open_unix_connection(str(self.upstream))
        host, port = self.upstream
        return await asyncio.open_connection(host, port)

    async def _wait_flowing(self) -> None:
        assert self._flowing is not None
        await self._flowing.wait()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        counter: str,
        link: _Link,
    ) -> None:
        """Copy bytes one way: each chunk waits out the latency it was read with and any black
        hole, in order. A reader task timestamps chunks so latency does not cap throughput."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def read() -> None:
            try:
                while data := await reader.read(READ_SIZE):
                    await queue.put((loop.time() + self._latency, data))
            except (ConnectionError, OSError):
                link.abort()
                return
            await queue.put((loop.time() + self._latency, b""))

        reading = asyncio.create_task(read())
        try:
            while True:
                due, data = await queue.get()
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._wait_flowing()
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                setattr(self.stats, counter, getattr(self.stats, counter) + len(data))
                await writer.drain()
        except (ConnectionError, OSError):
            link.abort()
        finally:
            reading.cancel()


async def _as_coroutine(fn: object, *args: object) -> object:
    assert callable(fn)
    return fn(*args)


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
