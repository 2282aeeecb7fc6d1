"""Running parsers in a pool of reusable child processes, with a time and memory limit per call.

Parsing is CPU-heavy and some inputs make libraries hang or balloon, so the worker never parses
on its event loop or in its own process. ``ParserPool`` keeps a few warm worker processes (fresh
interpreters started with ``subprocess`` -- not forked from the worker, so they inherit none of its
threads, sockets or event loop -- that import the parser libraries once), sends each request over
a socket and waits for the answer without blocking the loop. Per call this costs well under a
millisecond beyond the parse itself; starting a process costs about half a second, once.

- A call that overruns its ``timeout`` has its process killed (and replaced): ``parse.timeout``.
- ``max_memory_bytes`` caps the address space the parse may add (``RLIMIT_AS``); running out is
  ``parse.too_large``. A process that dies (a crash in a C library, the OOM killer) is
  ``parse.crashed``: killed by a signal, it is transient and retried once (``max_retries=1``),
  otherwise permanent. Either way the worker and the other parses carry on.
- A process whose peak resident memory grew past ``recycle_rss_bytes`` retires after its answer,
  so one huge document does not leave a bloated (fragmented) process behind.
- Worker processes ignore SIGINT/SIGTERM (the parent decides when they stop, so a graceful
  shutdown can finish its parses) and are killed by the kernel if the parent dies.

``parse_isolated`` uses a process-wide default pool; ``parse_in_process`` is the synchronous,
same-process path for tests and tools (same error translation, no time limit).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import importlib
import math
import os
import pickle
import resource
import signal
import socket
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from ingestd.errors import IngestdError, PermanentError, RecoverableError, TransientError
from ingestd.parsers.local import FORMAT_MODULES, translated
from ingestd.ports import ParsedDocument, Parser

DEFAULT_RECYCLE_RSS_BYTES = 768 * 1024 * 1024
_LARGE_PAYLOAD = 1024 * 1024  # pipe transfers above this size go through a thread
_CPU_SLACK_SECONDS = 5  # RLIMIT_CPU backstop, beyond the wall-clock timeout
_START_TIMEOUT_SECONDS = 60.0
_READY = b"ready"
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_ERROR_KINDS: dict[str, type[IngestdError]] = {
    "permanent": PermanentError,
    "transient": TransientError,
    "recoverable": RecoverableError,
}


class RemoteTraceback(Exception):
    """The formatted traceback of an error raised in a parser process (set as ``__cause__``)."""


@dataclass(frozen=True, slots=True)
class _Request:
    parser: Parser
    data: bytes
    media_type: str
    filename: str
    timeout: float
    max_memory_bytes: int | None


@dataclass(frozen=True, slots=True)
class _Reply:
    document: ParsedDocument | None
    error: tuple[str, str, str, dict[str, Any], str] | None  # kind, code, message, details, tb
    retiring: bool


def parse_in_process(
    parser: Parser, data: bytes, media_type: str, filename: str = ""
) -> ParsedDocument:
    """Parse in this process and thread (no time limit); errors are translated like the pool's."""
    return translated("document", lambda: parser.parse(data, media_type, filename))


class ParserPool:
    """A small pool of reusable parser processes. Use from one event loop at a time."""

    def __init__(
        self, size: int | None = None, *, recycle_rss_bytes: int = DEFAULT_RECYCLE_RSS_BYTES
    ) -> None:
        self.size = size or min(os.cpu_count() or 1, 8)
        self.recycle_rss_bytes = recycle_rss_bytes
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._gate: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self._closed = False

    async def start(self) -> None:
        """Start every worker process now instead of on first use (takes ~1 s the first time)."""
        workers = [await self._acquire() for _ in range(self.size)]
        for worker in workers:
            self._release(worker)

    async def parse(
        self,
        parser: Parser,
        data: bytes,
        media_type: str,
        filename: str = "",
        *,
        timeout: float,
        max_memory_bytes: int | None = None,
    ) -> ParsedDocument:
        """Parse in a worker process; raises ``parse.timeout`` / ``parse.crashed`` / ``parse.*``."""
        request = _Request(parser, data, media_type, filename, timeout, max_memory_bytes)
        worker = await self._acquire()
        try:
            reply = await worker.call(request, recycle_rss_bytes=self.recycle_rss_bytes)
        finally:
            self._release(worker)
        return _unwrap(reply)

    def close(self) -> None:
        """Stop every worker process (busy ones are killed). The pool cannot be used afterwards."""
        self._closed = True
        with self._lock:
            idle = set(self._idle)
            busy = self._all - idle
            self._all.clear()
            self._idle.clear()
        for worker in idle:
            worker.stop()
        for worker in busy:  # their callers see the process end and raise parse.interrupted
            worker.kill()

    @property
    def process_ids(self) -> list[int]:
        """Process ids of the live workers (for tests and diagnostics)."""
        with self._lock:
            return [w.pid for w in self._all if w.alive()]

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._gate is None or self._gate[0] is not loop:
            self._gate = (loop, asyncio.Semaphore(self.size))
        return self._gate[1]

    async def _acquire(self) -> _Worker:
        if self._closed:
            raise RuntimeError("this ParserPool is closed")
        semaphore = self._semaphore()
        await semaphore.acquire()
        try:
            with self._lock:
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        return worker
                    self._all.discard(worker)
            worker = _Worker()
            with self._lock:
                self._all.add(worker)
            await worker.wait_ready()
            return worker
        except BaseException:
            semaphore.release()
            raise

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            if worker.usable and not self._closed:
                self._idle.append(worker)
            else:
                self._all.discard(worker)
                threading.Thread(target=worker.stop, daemon=True).start()
        self._semaphore().release()


class _Worker:
    """One parser process and the parent's end of its socket."""

    def __init__(self) -> None:
        parent_end, child_end = socket.socketpair()
        bootstrap = (
            f"import sys; sys.path[:] = {sys.path!r}; "
            "from ingestd.parsers.isolation import _child_entry; "
            "_child_entry(int(sys.argv[1]), int(sys.argv[2]))"
        )
        self._process = subprocess.Popen(
            [sys.executable, "-c", bootstrap, str(child_end.fileno()), str(os.getpid())],
            pass_fds=(child_end.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        child_end.close()
        self._conn = Connection(parent_end.detach())
        self.pid: int = self._process.pid
        self.usable = True
        self.stopped_by_us = False

    async def wait_ready(self) -> None:
        """Wait until the process has imported the parser libraries and asks for work."""
        try:
            await asyncio.wait_for(self._readable(), timeout=_START_TIMEOUT_SECONDS)
            hello = self._conn.recv_bytes()
        except (TimeoutError, EOFError, OSError) as exc:
            await asyncio.to_thread(self.stop)
            raise TransientError(
                "parse.unavailable",
                f"a parser process could not start (exit code {self._process.returncode}); "
                "see the worker's error output",
            ) from exc
        if hello != _READY:
            await asyncio.to_thread(self.stop)
            raise TransientError("parse.unavailable", "a parser process sent a bad greeting")

    def alive(self) -> bool:
        return self.usable and self._process.poll() is None

    async def call(self, request: _Request, *, recycle_rss_bytes: int) -> _Reply:
        payload = pickle.dumps((request, recycle_rss_bytes), protocol=pickle.HIGHEST_PROTOCOL)
        large = len(payload) > _LARGE_PAYLOAD
        try:
            await _maybe_in_thread(large, self._conn.send_bytes, payload)
            del payload
            await asyncio.wait_for(self._readable(), timeout=request.timeout)
            raw: bytes = await _maybe_in_thread(large, self._conn.recv_bytes)
        except TimeoutError:
            await asyncio.to_thread(self.stop)
            raise _timeout_error(request.timeout) from None
        except (EOFError, OSError) as exc:
            interrupted = self.stopped_by_us
            await asyncio.to_thread(self.stop)
            raise (_interrupted_error() if interrupted else self._crash_error(request)) from exc
        except BaseException:  # cancelled: the process is busy with a request nobody awaits
            await asyncio.shield(asyncio.to_thread(self.stop))
            raise
        reply: _Reply = pickle.loads(raw)
        if reply.retiring:
            self.usable = False
        return reply

    async def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        fd = self._conn.fileno()

        def on_readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, on_readable)
        try:
            await ready
        finally:
            loop.remove_reader(fd)

    def kill(self) -> None:
        """Kill the process but keep the socket open, so a waiting caller sees it end."""
        self.usable = False
        self.stopped_by_us = True
        if self._process.poll() is None:
            with contextlib.suppress(OSError):
                self._process.kill()

    def stop(self) -> None:
        """Kill the process (if still running), close the socket and reap the process."""
        self.kill()
        with contextlib.suppress(OSError):
            self._conn.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=5)

    def _crash_error(self, request: _Request) -> IngestdError:
        code = self._process.returncode
        if code is not None and -code == signal.SIGXCPU:
            return _timeout_error(request.timeout)
        killed = code is not None and code < 0
        how = f"signal {signal.Signals(-code).name}" if killed else f"exit code {code}"
        hint = ""
        if request.max_memory_bytes:
            hint = f" or need more than the {request.max_memory_bytes // 2**20} MiB memory limit"
        message = (
            f"the parser process died ({how}) while reading this file; the file may be "
            f"malformed{hint}. Try re-saving it, or use another parser"
        )
        if killed:
            # The OOM killer (or an operator) may have picked it for what *other* processes
            # used: worth one more try, in a fresh process, before blaming the file.
            return TransientError("parse.crashed", message, exit_code=code, max_retries=1)
        return PermanentError("parse.crashed", message, exit_code=code)


async def _maybe_in_thread(in_thread: bool, function: Any, *args: Any) -> Any:
    if in_thread:
        return await asyncio.to_thread(function, *args)
    return function(*args)


def _interrupted_error() -> TransientError:
    return TransientError(
        "parse.interrupted",
        "the parser pool was shut down during this parse; it will be retried",
    )


def _timeout_error(timeout: float) -> PermanentError:
    return PermanentError(
        "parse.timeout",
        f"parsing took longer than {timeout:g} s and was stopped; the file is very large or "
        "pathological. Split it, or raise the parser's timeout",
        timeout_seconds=timeout,
    )


def _unwrap(reply: _Reply) -> ParsedDocument:
    if reply.error is not None:
        kind, code, message, details, remote_traceback = reply.error
        raise _ERROR_KINDS.get(kind, PermanentError)(code, message, **details) from (
            RemoteTraceback(remote_traceback)
        )
    assert reply.document is not None
    return reply.document


# ---- the child process ---------------------------------------------------------------------


def _child_entry(fd: int, parent_pid: int) -> None:
    """Entry point of a parser process (see ``_Worker``): warm up, then serve requests."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    conn = Connection(fd)
    for module in FORMAT_MODULES:
        importlib.import_module(module)
    conn.send_bytes(_READY)
    _serve_forever(conn)


def _serve_forever(conn: Connection) -> None:
    """Serve parse requests until the parent closes the socket or the process should retire."""
    while True:
        try:
            request, recycle_rss_bytes = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        reply = _serve(request, recycle_rss_bytes)
        del request
        conn.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        if reply.retiring:
            return


def _serve(request: _Request, recycle_rss_bytes: int) -> _Reply:
    limits = _ChildLimits(request.timeout, request.max_memory_bytes)
    try:
        with limits:
            document = parse_in_process(
                request.parser, request.data, request.media_type, request.filename
            )
    except IngestdError as exc:
        detail = (exc.kind, exc.code, exc.message, exc.details, traceback.format_exc())
        retire = exc.details.get("limit") == "memory"
        return _Reply(None, detail, retiring=retire or _rss_bytes() > recycle_rss_bytes)
    return _Reply(document, None, retiring=_rss_bytes() > recycle_rss_bytes)


class _ChildLimits:
    """Per-call soft limits: address space (memory) and CPU seconds (a backstop for orphans)."""

    def __init__(self, timeout: float, max_memory_bytes: int | None) -> None:
        self._timeout = timeout
        self._max_memory = max_memory_bytes
        self._saved: dict[int, tuple[int, int]] = {}

    def __enter__(self) -> None:
        used = resource.getrusage(resource.RUSAGE_SELF)
        cpu_limit = math.ceil(used.ru_utime + used.ru_stime + self._timeout + _CPU_SLACK_SECONDS)
        self._lower(resource.RLIMIT_CPU, cpu_limit)
        if self._max_memory:
            self._lower(resource.RLIMIT_AS, _address_space_bytes() + self._max_memory)

    def __exit__(self, *exc_info: object) -> None:
        for which, limits in self._saved.items():
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(which, limits)

    def _lower(self, which: int, soft: int) -> None:
        current = resource.getrlimit(which)
        hard = current[1]
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (soft, hard))
            self._saved[which] = current


def _statm_pages(field: int) -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[field])
    except (OSError, ValueError, IndexError):
        return 0


def _address_space_bytes() -> int:
    return _statm_pages(0) * _PAGE_SIZE


def _rss_bytes() -> int:
    """Peak resident memory of this process (``VmHWM``), or the current one if unknown.

    Not ``ru_maxrss``: Linux carries it over from the parent across fork and exec, so a child of
    a big worker would look bloated from its first request.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return _statm_pages(1) * _PAGE_SIZE


def _die_with_parent(parent_pid: int) -> None:
    """On Linux, have the kernel kill this process when its parent dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


# ---- the process-wide default pool ---------------------------------------------------------

_default_pool: ParserPool | None = None
_default_lock = threading.Lock()


def default_pool() -> ParserPool:
    """The pool ``parse_isolated`` uses, created on first use (one process per CPU, up to 8)."""
    global _default_pool
    with _default_lock:
        if _default_pool is None:
            _default_pool = ParserPool()
            atexit.register(_default_pool.close)
        return _default_pool


def shutdown_default_pool() -> None:
    """Stop the default pool's processes (a new pool is created if it is used again)."""
    global _default_pool
    with _default_lock:
        pool, _default_pool = _default_pool, None
    if pool is not None:
        pool.close()


async def parse_isolated(
    parser: Parser,
    data: bytes,
    media_type: str,
    filename: str,
    *,
    timeout: float,
    max_memory_bytes: int | None = None,
) -> ParsedDocument:
    """Parse ``data`` in a pooled child process, within ``timeout`` seconds (see module doc)."""
    return await default_pool().parse(
        parser, data, media_type, filename, timeout=timeout, max_memory_bytes=max_memory_bytes
    )
