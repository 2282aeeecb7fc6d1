"""Which files a folder ingest takes, and why it skips everything else.

``scan`` walks the paths a user named and yields every regular file inside them
(:class:`FoundFile`) and every other entry with the reason it was left out (:class:`Skipped`):
symbolic links (followed only with ``follow_symlinks``, and then never out of the named roots, with
loops detected), FIFOs, sockets, devices, hidden entries, folders that cannot be listed. Nothing
raises for one bad entry: a path named on the command line that is missing, a loop or a FIFO is
reported like any entry inside a folder.

``read_found`` opens a found file without following a link in its last component and without
blocking (a FIFO swapped in is seen as not a regular file), checks it is still the file the scan
saw, checks its size *before* reading, and reads at most the limit. Its failures are
:class:`SkipFile` with a stable ``ingest.*`` code.

Names that are not valid UTF-8 are kept in memory surrogate-escaped (as Python's ``os`` does) and
stored and shown with the undecodable bytes escaped (``caf\\xe9.txt``); the raw bytes are kept
beside them (``raw_name``), so nothing is lost.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Stable codes of the entries a scan or a read leaves out.
SYMLINK = "ingest.symlink"
OUTSIDE_ROOT = "ingest.outside_root"
SYMLINK_LOOP = "ingest.symlink_loop"
BROKEN_SYMLINK = "ingest.broken_symlink"
NOT_REGULAR = "ingest.not_regular"
HIDDEN = "ingest.hidden"
SEEN_TWICE = "ingest.seen_twice"
NOT_FOUND = "ingest.not_found"
UNREADABLE = "ingest.unreadable"
VANISHED = "ingest.vanished"
TOO_LARGE = "ingest.too_large"
DETECT_FAILED = "ingest.detect_failed"

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


@dataclass(frozen=True, slots=True)
class FoundFile:
    """A regular file to ingest: where to open it, and what the scan saw there."""

    path: Path
    name: str  # the file name fit to store and print (undecodable bytes escaped)
    raw_name: bytes | None  # the name's bytes, when they are not valid UTF-8
    identity: tuple[int, int]  # (st_dev, st_ino) at scan time
    size: int


@dataclass(frozen=True, slots=True)
class Skipped:
    """An entry that was not ingested, and why (``code`` is stable, ``reason`` is for people)."""

    path: str  # shown escaped
    code: str
    reason: str


class SkipFile(Exception):
    """Reading a found file failed; the file is reported as skipped."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` as text that is valid UTF-8: bytes that are not are shown as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def raw_name_of(name: str) -> bytes | None:
    """The bytes of ``name`` when it is not valid UTF-8 (so its stored form is escaped)."""
    raw = os.fsencode(name)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    return None


def scan(paths: Iterable[Path], *, follow_symlinks: bool = False) -> Iterator[FoundFile | Skipped]:
    """Regular files under ``paths`` (sorted, recursively), and every entry left out, with why.

    A path named here is taken as given even if it is a link (like ``find -H``); links *inside*
    a folder are followed only with ``follow_symlinks``, and only to targets inside a named path.
    """
    named = list(paths)
    roots = [Path(os.path.realpath(p)) for p in named]
    walker = _Walker(roots, follow_symlinks)
    for path in named:
        yield from walker.named(path)


class _Walker:
    def __init__(self, roots: list[Path], follow_symlinks: bool) -> None:
        self.roots = roots
        self.follow = follow_symlinks
        self.seen_dirs: set[tuple[int, int]] = set()

    def named(self, path: Path) -> Iterator[FoundFile | Skipped]:
        try:
            info = path.stat()
        except OSError as exc:
            yield Skipped(shown(path), *_stat_failure(path, exc))
            return
        if stat.S_ISDIR(info.st_mode):
            yield from self.folder(path, info, ancestors=frozenset())
        elif stat.S_ISREG(info.st_mode):
            yield _found(Path(os.path.realpath(path)), info, name=path.name)
        else:
            yield _not_regular(path, info)

    def folder(
        self, path: Path, info: os.stat_result, ancestors: frozenset[tuple[int, int]]
    ) -> Iterator[FoundFile | Skipped]:
        identity = (info.st_dev, info.st_ino)
        if identity in ancestors:
            yield Skipped(shown(path), SYMLINK_LOOP, "a link back to a folder that contains it")
            return
        if identity in self.seen_dirs:
            yield Skipped(shown(path), SEEN_TWICE, "a folder already ingested through another path")
            return
        self.seen_dirs.add(identity)
        try:
            with os.scandir(path) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            yield Skipped(shown(path), UNREADABLE, f"the folder cannot be listed: {_why(exc)}")
            return
        inner = ancestors | {identity}
        for entry in entries:
            yield from self.entry(Path(entry.path), entry, inner)

    def entry(
        self, path: Path, entry: os.DirEntry[str], ancestors: frozenset[tuple[int, int]]
    ) -> Iterator[FoundFile | Skipped]:
        if entry.name.startswith("."):
            yield Skipped(shown(path), HIDDEN, "hidden entries are not ingested")
            return
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError as exc:
            yield Skipped(shown(path), VANISHED, f"it went away during the scan: {_why(exc)}")
            return
        if stat.S_ISLNK(info.st_mode):
            yield from self.link(path, ancestors)
        elif stat.S_ISDIR(info.st_mode):
            yield from self.folder(path, info, ancestors)
        elif stat.S_ISREG(info.st_mode):
            yield _found(path, info)
        else:
            yield _not_regular(path, info)

    def link(
        self, path: Path, ancestors: frozenset[tuple[int, int]]
    ) -> Iterator[FoundFile | Skipped]:
        if not self.follow:
            yield Skipped(shown(path), SYMLINK, "a symbolic link (use --follow-symlinks)")
            return
        try:
            info = path.stat()
        except OSError as exc:
            yield Skipped(shown(path), *_stat_failure(path, exc))
            return
        target = Path(os.path.realpath(path))
        if not any(target.is_relative_to(root) for root in self.roots):
            yield Skipped(
                shown(path), OUTSIDE_ROOT, f"a link to {shown(target)}, outside the named paths"
            )
        elif stat.S_ISDIR(info.st_mode):
            yield from self.folder(path, info, ancestors)
        elif stat.S_ISREG(info.st_mode):
            yield _found(target, info, name=path.name)
        else:
            yield _not_regular(path, info)


def _found(path: Path, info: os.stat_result, name: str | None = None) -> FoundFile:
    name = name or path.name
    return FoundFile(path, shown(name), raw_name_of(name), (info.st_dev, info.st_ino), info.st_size)


def _not_regular(path: Path, info: os.stat_result) -> Skipped:
    kind = next((label for test, label in _KINDS if test(info.st_mode)), "not a regular file")
    return Skipped(shown(path), NOT_REGULAR, f"{kind}; only regular files are ingested")


def _stat_failure(path: Path, exc: OSError) -> tuple[str, str]:
    if exc.errno == errno.ELOOP:
        return SYMLINK_LOOP, "a symbolic link loop"
    if isinstance(exc, FileNotFoundError):
        if path.is_symlink():
            return BROKEN_SYMLINK, "a symbolic link to nothing"
        return NOT_FOUND, "no such file or folder"
    return UNREADABLE, _why(exc)


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def read_found(found: FoundFile, max_bytes: int) -> bytes:
    """The content of ``found``, or ``SkipFile`` (unreadable, vanished, replaced, too large).

    The size is checked from ``fstat`` before reading, and at most ``max_bytes + 1`` bytes are
    read, so a file that grows meanwhile cannot make us read more.
    """
    if found.size > max_bytes:
        raise _too_large(found.size, max_bytes)
    try:
        fd = os.open(found.path, _OPEN_FLAGS)
    except OSError as exc:
        raise _open_failure(exc) from exc
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != found.identity:
            raise SkipFile(VANISHED, "the file was replaced by another entry during the ingest")
        if info.st_size > max_bytes:
            raise _too_large(info.st_size, max_bytes)
        try:
            data = file.read(max_bytes + 1)
        except OSError as exc:
            raise SkipFile(UNREADABLE, f"the file cannot be read: {_why(exc)}") from exc
    if len(data) > max_bytes:
        raise _too_large(len(data), max_bytes)
    return data


def _open_failure(exc: OSError) -> SkipFile:
    if exc.errno == errno.ELOOP:
        return SkipFile(SYMLINK, "the file was replaced by a symbolic link during the ingest")
    if isinstance(exc, FileNotFoundError):
        return SkipFile(VANISHED, "the file was deleted during the ingest")
    return SkipFile(UNREADABLE, f"the file cannot be opened: {_why(exc)}")


def _too_large(size: int, max_bytes: int) -> SkipFile:
    return SkipFile(
        TOO_LARGE,
        f"the file is {size / 2**20:.1f} MiB; the parser takes up to {max_bytes / 2**20:.0f} MiB",
    )
