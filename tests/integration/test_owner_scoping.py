"""Every command that reads or changes jobs takes the same default owner as `search`, and
`--all-owners` is explicit; `jobs show` takes its prefix literally (issue 7, finding 8; on main
`status`, `jobs list|show|retry` and `reindex` acted on every owner without --owner, and
`jobs show %` matched any job)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
from typer.testing import Result

from ingestd.config import Settings
from tests.cli_inprocess import invoke
from tests.conftest import worker_env


def run_cli(settings: Settings, *args: str) -> Result:
    env = worker_env(settings, INGESTD_LOG_LEVEL="WARNING")
    return invoke(list(args), env)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def jobs_of(settings: Settings, *scope: str) -> list[dict[str, Any]]:
    return as_json(run_cli(settings, "jobs", "list", "--json", *scope))  # type: ignore[no-any-return]


def test_job_commands_are_scoped_to_one_owner_unless_all_owners(
    settings: Settings, tmp_path: Path
) -> None:
    for owner in ("alice", "bob"):
        (tmp_path / owner).mkdir()
        (tmp_path / owner / f"{owner}.md").write_text(f"# {owner}\n\nNotes that {owner} wrote.\n")
    assert run_cli(settings, "run", "--owner", "bob", str(tmp_path / "bob")).exit_code == 0
    assert run_cli(settings, "ingest", "--owner", "alice", str(tmp_path / "alice")).exit_code == 0
    with psycopg.connect(settings.database_url or "", autocommit=True) as conn:
        conn.execute("UPDATE jobs SET state = 'failed_parse' WHERE owner = 'alice'")

    # reads: the default owner ('local') has nothing; each owner sees its own; all see both
    assert jobs_of(settings) == []
    assert [j["filename"] for j in jobs_of(settings, "--owner", "bob")] == ["bob.md"]
    assert len(jobs_of(settings, "--all-owners")) == 2
    assert sum(as_json(run_cli(settings, "status", "--json"))["counts"].values()) == 0
    everyone = as_json(run_cli(settings, "status", "--json", "--all-owners"))["counts"]
    assert everyone["complete"] == 1 and everyone["failed_parse"] == 1

    # jobs show: scoped, and its prefix is literal (not a LIKE pattern)
    bob_id = jobs_of(settings, "--owner", "bob")[0]["id"]
    assert run_cli(settings, "jobs", "show", bob_id[:8]).exit_code == 4
    assert run_cli(settings, "jobs", "show", bob_id[:8], "--owner", "bob").exit_code == 0
    assert run_cli(settings, "jobs", "show", bob_id[:8], "--all-owners").exit_code == 0
    for pattern in ("%", "_", "%" + bob_id[-4:]):
        assert run_cli(settings, "jobs", "show", pattern, "--owner", "bob").exit_code == 4

    # changes: retry and reindex touch only the scoped owner's jobs
    assert "requeued 0 job(s)" in run_cli(settings, "jobs", "retry").stdout
    assert "re-indexing 0 document(s)" in run_cli(settings, "reindex", "--all").output
    assert "requeued 1 job(s)" in run_cli(settings, "jobs", "retry", "--owner", "alice").stdout
    moved = run_cli(settings, "reindex", "--all", "--all-owners").output
    assert "re-indexing 1 document(s)" in moved
