"""Deliberately misbehaving parsers, to prove that isolation contains them.

They implement the ``Parser`` port and live in the package (not in tests/) so that the pool's
worker processes can import them by name. Used by the isolation tests and benchmarks; never
wired into the application.
"""

from __future__ import annotations

import os
import signal
import time

from ingestd.ports import ParsedDocument


class EchoParser:
    """Returns the bytes as text, instantly: measures the pool's own overhead."""

    name = "echo"

    def parse(self, data: bytes, media_type: str, filename: str = "") -> ParsedDocument:
        return ParsedDocument(markdown=data.decode("utf-8", errors="replace"))


class HangingParser:
    """Never returns on its own: sleeps (``busy=False``) or spins the CPU (``busy=True``)."""

    name = "hanging"

    def __init__(self, *, busy: bool = False) -> None:
        self.busy = busy

    def parse(self, data: bytes, media_type: str, filename: str = "") -> ParsedDocument:
        while True:
            if not self.busy:
                time.sleep(3600)


class MemoryHogParser:
    """Allocates memory in 16 MiB steps until ``total_bytes`` (or until allocation fails)."""

    name = "memory-hog"

    def __init__(self, total_bytes: int) -> None:
        self.total_bytes = total_bytes

    def parse(self, data: bytes, media_type: str, filename: str = "") -> ParsedDocument:
        step = 16 * 1024 * 1024
        hoard = [bytearray(step) for _ in range(self.total_bytes // step)]
        return ParsedDocument(markdown=f"held {len(hoard) * step} bytes")


class CrashingParser:
    """Kills its own process with ``signal_number`` (default SIGSEGV), like a broken C library."""

    name = "crashing"

    def __init__(self, signal_number: int = signal.SIGSEGV) -> None:
        self.signal_number = signal_number

    def parse(self, data: bytes, media_type: str, filename: str = "") -> ParsedDocument:
        os.kill(os.getpid(), self.signal_number)
        time.sleep(10)
        raise AssertionError("unreachable")


class PidParser:
    """Returns the id of the process it ran in (to check that processes are reused or replaced)."""

    name = "pid"

    def parse(self, data: bytes, media_type: str, filename: str = "") -> ParsedDocument:
        return ParsedDocument(markdown=str(os.getpid()))
