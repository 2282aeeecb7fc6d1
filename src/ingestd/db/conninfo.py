"""Connection strings without passwords: a password moves into a 0600 libpq password file.

Child processes (``ingestd run --processes``) get the database URL through their environment,
which other tools dump freely (``ps e``, crash reports, /proc for the same user); with the password
in a passfile the URL they see is safe to print.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo


def passfile_line(password: str) -> str:
    """A libpq password-file line matching any host, port, database and user."""
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:*:{escaped}\n"


def split_password(url: str, environ: Mapping[str, str]) -> tuple[str, str | None]:
    """(``url`` without its password, the password: from the URL, else from PGPASSWORD)."""
    params = conninfo_to_dict(url)
    password = params.pop("password", None) or environ.get("PGPASSWORD")
    if password is None:
        return url, None
    return make_conninfo("", **params), str(password)


@contextmanager
def passwordless_env(
    url: str, folder: Path, environ: Mapping[str, str]
) -> Iterator[dict[str, str]]:
    """``environ`` for a child process with INGESTD_DATABASE_URL set to ``url`` minus its
    password (and no PGPASSWORD); a password goes to a 0600 passfile in ``folder``, removed on
    exit."""
    bare, password = split_password(url, environ)
    env = {k: v for k, v in environ.items() if k != "PGPASSWORD"}
    if password is None:
        yield {**env, "INGESTD_DATABASE_URL": url}
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=folder, prefix=".pgpass-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(passfile_line(password))
        yield {**env, "INGESTD_DATABASE_URL": make_conninfo(bare, passfile=path)}
    finally:
        Path(path).unlink(missing_ok=True)
