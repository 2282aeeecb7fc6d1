"""The embedded PostgreSQL accepts only its own user (issue 7, finding 1; failed on main, where it
ran with `trust` on a world-writable /tmp socket folder), and serves a fleet over TCP with a
password when asked to (issue 11)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ingestd.db.embedded import SYSTEM_USER, EmbeddedPostgres, _bin, can_traverse, parse_listen
from ingestd.errors import ConfigurationError
from tests.cli_inprocess import invoke


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def fleet_server(pg_base: Path) -> Iterator[EmbeddedPostgres]:
    """A server whose data path is too long for a socket (so its socket folder is a mkdtemp one),
    listening on TCP."""
    deep = pg_base / ("fleet-" + "d" * 90)
    server = EmbeddedPostgres(deep / "pgdata")
    server.ensure_running(listen=f"127.0.0.1:{free_port()}")
    yield server
    server.stop(mode="immediate")


def require_root(why: str) -> None:
    """The suite runs as root, as CI does (`id -u` is 0 there): only root can create a second OS
    account, and only root hands the server to a system user. Said as a failure, never a skip."""
    if os.geteuid() != 0:
        pytest.fail(f"{why} needs root: run the suite as root, as CI does (id -u = 0)")


@pytest.fixture
def other_user() -> Iterator[str]:
    """A second OS account, created for the test and removed afterwards."""
    require_root("creating a second OS user")
    name = f"intruder{uuid.uuid4().hex[:6]}"
    subprocess.run(["useradd", "--no-create-home", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_socket_folder_and_password_file_are_private(fleet_server: EmbeddedPostgres) -> None:
    """What keeps other OS users out, asserted without one (as any user): the modes and owners,
    and that the traversal rule refuses an unrelated account the socket and data folders."""
    status = fleet_server.status()
    server_uid = pwd.getpwnam(SYSTEM_USER).pw_uid if os.geteuid() == 0 else os.geteuid()
    assert status.socket_dir != status.pgdata
    assert status.socket_dir.name.startswith("ingestd-pg-")
    assert mode(status.socket_dir) == 0o700 and status.socket_dir.stat().st_uid == server_uid
    assert mode(status.pgdata) == 0o700 and status.pgdata.stat().st_uid == server_uid
    assert mode(status.passfile) == 0o600 and status.passfile.stat().st_uid == os.geteuid()
    assert fleet_server.password() not in status.url()
    stranger = max(server_uid, os.geteuid()) + 1000
    for folder in (status.socket_dir, status.pgdata):
        st = folder.stat()
        assert not can_traverse(st.st_mode, st.st_uid, st.st_gid, stranger, {stranger}), folder


def test_a_login_without_the_password_is_refused(fleet_server: EmbeddedPostgres) -> None:
    status = fleet_server.status()
    with psycopg.connect(status.url(), connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    bare = f"host={status.socket_dir} port={status.port} user=postgres dbname=ingestd"
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(bare, connect_timeout=5, passfile="/dev/null")


def test_another_os_user_cannot_connect(fleet_server: EmbeddedPostgres, other_user: str) -> None:
    status = fleet_server.status()
    psql = [_bin("psql"), "-w", "-U", "postgres", "-d", "ingestd", "-c", "SELECT 1"]
    attempts = {
        "socket": [*psql, "-h", str(status.socket_dir), "-p", str(status.port)],
        "tcp": [*psql, "-h", "127.0.0.1", "-p", str(status.port)],
        "passfile": ["cat", str(status.passfile)],
    }
    for way, argv in attempts.items():
        done = subprocess.run(
            argv, user=other_user, capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode != 0, f"{way}: {done.stdout}"
        assert "Permission denied" in done.stderr or "password" in done.stderr, done.stderr


def test_two_clients_share_the_server_over_tcp(fleet_server: EmbeddedPostgres) -> None:
    status = fleet_server.status()
    host, port = parse_listen(status.listen or "")
    assert port == status.port
    url = status.remote_url(host, password=fleet_server.password())
    with psycopg.connect(url, connect_timeout=5) as one, psycopg.connect(url) as two:
        one.execute("CREATE TABLE IF NOT EXISTS fleet (n int)")
        one.execute("INSERT INTO fleet VALUES (7)")
        one.commit()
        assert two.execute("SELECT n FROM fleet").fetchall() == [(7,)]
    wrong = status.remote_url(host, password="not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)


def test_a_legacy_trust_cluster_is_upgraded_in_place(fleet_server: EmbeddedPostgres) -> None:
    # Data written before the upgrade (this test's own: tests of a module may run in any process).
    with psycopg.connect(fleet_server.status().url(), connect_timeout=5) as conn:
        conn.execute("CREATE TABLE legacy_data (n int)")
        conn.execute("INSERT INTO legacy_data VALUES (7)")
    fleet_server.stop()
    old_password = fleet_server.password()
    fleet_server.passfile.unlink()
    legacy_hba = "local all all trust\nhost all all all trust\n"
    (fleet_server.pgdata / "pg_hba.conf").write_text(legacy_hba)
    status = fleet_server.ensure_running()
    assert fleet_server.password() != old_password
    with psycopg.connect(status.url(), connect_timeout=5) as conn:
        assert conn.execute("SELECT n FROM legacy_data").fetchall() == [(7,)]
    assert "trust" not in (fleet_server.pgdata / "pg_hba.conf").read_text()


@pytest.mark.parametrize(
    ("mode_bits", "owner", "group", "uid", "gids", "allowed"),
    [
        (0o700, 1, 1, 1, {1}, True),
        (0o700, 1, 1, 2, {1}, False),
        (0o710, 1, 5, 2, {5}, True),
        (0o701, 1, 5, 2, {6}, True),
        (0o770, 1, 5, 2, {6}, False),
    ],
)
def test_traversal_rule(
    mode_bits: int, owner: int, group: int, uid: int, gids: set[int], allowed: bool
) -> None:
    assert can_traverse(mode_bits, owner, group, uid, gids) is allowed


@pytest.mark.parametrize("bad", ["5432", "host:", ":5432", "host:99999", "host:port"])
def test_listen_must_be_host_and_port(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="HOST:PORT"):
        parse_listen(bad)


def test_as_root_a_home_the_server_cannot_reach_fails_clearly(tmp_path: Path) -> None:
    require_root("handing the server to a system user")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    with pytest.raises(ConfigurationError, match="cannot reach") as caught:
        EmbeddedPostgres(locked / "home" / "pgdata").ensure_running()
    assert "is not searchable" in caught.value.message
    assert mode(locked) == 0o700 and mode(tmp_path) == mode(tmp_path.parent.parent) == 0o700


def test_db_url_prints_the_tcp_url_without_the_password(fleet_server: EmbeddedPostgres) -> None:
    env = {"INGESTD_HOME": str(fleet_server.home), "INGESTD_DATABASE_URL": ""}
    hidden = invoke(["db", "url", "--host", "db.example"], env)
    port = fleet_server.status().port
    assert hidden.exit_code == 0, hidden.output
    assert hidden.stdout.strip() == f"postgresql://postgres@db.example:{port}/ingestd"
    assert str(fleet_server.passfile) in hidden.stderr
    shown = invoke(["db", "url", "--host", "db.example", "--show-password"], env)
    assert fleet_server.password() in shown.stdout
    local = invoke(["db", "url", "--local"], env)
    assert local.stdout.strip() == fleet_server.status().url()


def test_db_url_hides_an_external_password() -> None:
    env = {"INGESTD_DATABASE_URL": "postgresql://app:s3cret-pw@db.example/x"}
    hidden = invoke(["db", "url"], env)
    assert hidden.stdout.strip() == "postgresql://app:***@db.example/x"
    shown = invoke(["db", "url", "--show-password"], env)
    assert shown.stdout.strip() == "postgresql://app:s3cret-pw@db.example/x"


def server_uid() -> int:
    return pwd.getpwnam(SYSTEM_USER).pw_uid if os.geteuid() == 0 else os.geteuid()


def test_the_socket_folder_is_removed_when_the_server_stops(pg_base: Path) -> None:
    server = EmbeddedPostgres(pg_base / ("sockets-" + "d" * 90) / "pgdata")
    try:
        first = server.ensure_running().socket_dir
        assert first.name.startswith("ingestd-pg-") and first.is_dir()
        assert server.stop()
        assert not first.exists() and not server.socket_record.exists()
        again = server.ensure_running().socket_dir  # a new private folder for the next run
        assert again.is_dir() and again != first
    finally:
        server.stop(mode="immediate")
    assert not again.exists()


def recorded_folder(server: EmbeddedPostgres, folder: Path) -> Path:
    server.home.mkdir(parents=True, exist_ok=True)
    server.socket_record.write_text(f"{folder}\n")
    return folder


def private_folder(*files: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="ingestd-pg-"))
    for name in files:
        (folder / name).write_text("")
    os.chown(folder, server_uid(), -1)
    return folder


def test_stop_removes_what_a_dead_server_left_and_nothing_else(tmp_path: Path) -> None:
    """``stop`` with no server running (it died): the recorded folder goes if it is certainly
    the server's — private, ours, named so, holding only socket files; otherwise it stays."""
    server = EmbeddedPostgres(tmp_path / "home" / "pgdata")
    dead = recorded_folder(server, private_folder(".s.PGSQL.5432", ".s.PGSQL.5432.lock"))
    assert server.stop() is False
    assert not dead.exists() and not server.socket_record.exists()

    shared = private_folder()
    shared.chmod(0o755)
    foreign = private_folder(".s.PGSQL.5432", "notes.txt")
    unnamed = tmp_path / "not-a-socket-folder"
    unnamed.mkdir(mode=0o700)
    os.chown(unnamed, server_uid(), -1)
    link = tmp_path / "ingestd-pg-link"
    link.symlink_to(private_folder())
    server.pgdata.mkdir(mode=0o700)
    os.chown(server.pgdata, server_uid(), -1)
    try:
        for folder in (shared, foreign, unnamed, link, server.pgdata):
            recorded_folder(server, folder)
            server.stop()
            assert folder.is_dir(), folder
            assert not server.socket_record.exists()  # a record of a folder left alone goes
        assert (foreign / ".s.PGSQL.5432").exists()
    finally:
        for folder in (shared, foreign, link.resolve()):
            shutil.rmtree(folder)
