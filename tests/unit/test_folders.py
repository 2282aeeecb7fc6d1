"""What a folder ingest takes and what it leaves out, and why (issue 7, findings 2 and 3)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from ingestd import folders
from ingestd.folders import FoundFile, SkipFile, Skipped, read_found, scan
from ingestd.parsers.detect import JSON, detect_media_type


def outcome(paths: list[Path], follow: bool = False) -> dict[str, str]:
    """Each entry's path (relative to the tmp folder's parent) → the name it is stored under,
    or the code it was skipped with."""
    found = {}
    for item in scan(paths, follow_symlinks=follow):
        if isinstance(item, Skipped):
            found[Path(item.path).name] = item.code
        else:
            found[Path(folders.shown(item.path)).name] = "file"
    return found


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """A folder with one of each kind of entry a folder ingest must not trip over."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("root:x:0:0:root:/root:/bin/bash\n")
    inside = tmp_path / "in"
    (inside / "sub").mkdir(parents=True)
    (inside / "a.txt").write_text("alpha")
    (inside / "sub" / "b.txt").write_text("beta")
    (inside / "to-secret").symlink_to(outside / "secret.txt")
    (inside / "to-outside-dir").symlink_to(outside)
    (inside / "to-a").symlink_to(inside / "a.txt")
    (inside / "sub" / "up").symlink_to(inside)  # a loop when followed
    (inside / "self").symlink_to(inside / "self")  # a loop by itself
    (inside / "dangling").symlink_to(tmp_path / "nothing")
    os.mkfifo(inside / "pipe")
    (inside / ".hidden").write_text("dot file")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(inside / "sock"))
    return inside


def test_links_are_not_followed_by_default_and_every_other_entry_is_reported(
    hostile: Path,
) -> None:
    assert outcome([hostile]) == {
        ".hidden": folders.HIDDEN,
        "a.txt": "file",
        "dangling": folders.SYMLINK,
        "pipe": folders.NOT_REGULAR,
        "self": folders.SYMLINK,
        "sock": folders.NOT_REGULAR,
        "to-a": folders.SYMLINK,
        "to-outside-dir": folders.SYMLINK,
        "to-secret": folders.SYMLINK,
        "b.txt": "file",
        "up": folders.SYMLINK,
    }


def test_followed_links_stay_inside_the_named_paths_and_loops_end(hostile: Path) -> None:
    found = outcome([hostile], follow=True)
    assert found["to-secret"] == folders.OUTSIDE_ROOT
    assert found["to-outside-dir"] == folders.OUTSIDE_ROOT
    assert found["self"] == folders.SYMLINK_LOOP
    assert found["up"] == folders.SYMLINK_LOOP
    assert found["dangling"] == folders.BROKEN_SYMLINK
    assert found["a.txt"] == "file" and found["b.txt"] == "file"
    files = [i for i in scan([hostile], follow_symlinks=True) if isinstance(i, FoundFile)]
    assert sorted(f.name for f in files) == ["a.txt", "b.txt", "to-a"]
    assert all(f.path.is_relative_to(hostile) for f in files)


def test_paths_named_on_the_command_line_are_reported_not_raised(hostile: Path) -> None:
    named = [hostile / "pipe", hostile / "self", hostile / "missing", hostile / "dangling"]
    assert outcome(named) == {
        "pipe": folders.NOT_REGULAR,
        "self": folders.SYMLINK_LOOP,
        "missing": folders.NOT_FOUND,
        "dangling": folders.BROKEN_SYMLINK,
    }
    # A link named on purpose is taken, like find -H.
    assert outcome([hostile / "to-a"]) == {"a.txt": "file"}


def test_a_name_that_is_not_utf8_is_kept_and_shown_escaped(tmp_path: Path) -> None:
    raw = b"caf\xe9 r\xc3\xa9sum\xe9.txt"
    with open(os.path.join(os.fsencode(tmp_path), raw), "wb") as file:
        file.write(b"menu")
    [found] = scan([tmp_path])
    assert isinstance(found, FoundFile)
    assert found.name == "caf\\xe9 résum\\xe9.txt"
    found.name.encode("utf-8")  # storable as PostgreSQL text
    assert found.raw_name == raw
    assert read_found(found, 100) == b"menu"


def test_read_checks_size_first_and_reports_a_vanished_or_swapped_file(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"x" * 10)
    [found] = scan([path])
    assert isinstance(found, FoundFile)
    with pytest.raises(SkipFile) as too_large:
        read_found(found, 9)
    assert too_large.value.code == folders.TOO_LARGE
    (tmp_path / "other").write_bytes(b"y" * 10)
    (tmp_path / "other").replace(path)  # another file under the same name
    with pytest.raises(SkipFile) as swapped:
        read_found(found, 100)
    assert swapped.value.code == folders.VANISHED
    path.unlink()
    os.mkfifo(path)  # a FIFO swapped in must not block the ingest
    with pytest.raises(SkipFile) as fifo:
        read_found(found, 100)
    assert fifo.value.code == folders.VANISHED
    path.unlink()
    with pytest.raises(SkipFile) as gone:
        read_found(found, 100)
    assert gone.value.code == folders.VANISHED


def test_deeply_nested_json_is_detected_as_json_not_a_crash() -> None:
    data = b"[" * 2000 + b"]" * 2000  # 4 KB, deeper than Python's recursion limit
    assert detect_media_type(data, "deep.json") == JSON
