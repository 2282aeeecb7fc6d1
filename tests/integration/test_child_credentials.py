"""`run --processes` children get the database URL without its password (issue 7, finding 7; on
main the full URL, password included, went into every child's environment)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ingestd.db.conninfo import passfile_line, passwordless_env
from ingestd.db.embedded import EmbeddedPostgres


@pytest.fixture
def url_with_password(pg_server: EmbeddedPostgres, db_url: str) -> str:
    """The test database's URL in keyword form with the password written into it."""
    params = conninfo_to_dict(db_url)
    params.pop("passfile")
    return make_conninfo("", **params, password=pg_server.password())


def test_children_get_a_passfile_instead_of_the_password(
    url_with_password: str, pg_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    password = pg_server.password()
    environ = {"PATH": os.environ["PATH"], "PGPASSWORD": password}
    with passwordless_env(url_with_password, tmp_path / "home", environ) as env:
        assert not any(password in value for value in env.values())
        assert "PGPASSWORD" not in env
        passfile = Path(conninfo_to_dict(env["INGESTD_DATABASE_URL"])["passfile"] or "")
        assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
        with psycopg.connect(env["INGESTD_DATABASE_URL"], connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    assert not passfile.exists()


def test_a_url_without_a_password_is_passed_as_is(db_url: str, tmp_path: Path) -> None:
    with passwordless_env(db_url, tmp_path, {"PATH": "/bin"}) as env:
        assert env["INGESTD_DATABASE_URL"] == db_url
    assert list(tmp_path.iterdir()) == []


def test_passfile_lines_escape_colons_and_backslashes() -> None:
    assert passfile_line("a:b\\c") == "*:*:*:*:a\\:b\\\\c\n"
