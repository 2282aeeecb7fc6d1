"""``ingestd keys create | list | revoke``: API keys for the API (docs/howto/application.md)."""

from __future__ import annotations

import typer

from ingestd.cli.common import (
    JsonOpt,
    app,
    console,
    err_console,
    load_settings,
    print_json,
    run_command,
    with_db,
)
from ingestd.db import Database
from ingestd.service import keys

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    owner: str = typer.Option(..., "--owner", help="Whose documents the key reaches."),
    name: str = typer.Option("", "--name", help="A label to tell keys apart."),
    admin: bool = typer.Option(False, "--admin", help="The key acts for every owner."),
    as_json: bool = JsonOpt,
) -> None:
    """Create a key and print it once (only a hash of it is stored)."""
    settings = load_settings()

    async def body(db: Database) -> keys.CreatedKey:
        return await keys.create_key(db, owner=owner, name=name, admin=admin)

    created = run_command(with_db(settings, body))
    if as_json:
        print_json({**created.key.to_json(), "key": created.token})
        return
    err_console.print(
        f"key {created.key.id} for owner {created.key.owner!r}"
        f"{' (admin)' if admin else ''}; it is shown only now:"
    )
    print(created.token)


@keys_app.command("list")
def keys_list(
    owner: str | None = typer.Option(None, "--owner", help="Only this owner's keys."),
    as_json: bool = JsonOpt,
) -> None:
    """Every key (never the secrets): owner, label, admin, created, last used, revoked."""
    settings = load_settings()

    async def body(db: Database) -> list[keys.ApiKey]:
        return await keys.list_keys(db, owner=owner)

    found = run_command(with_db(settings, body))
    if as_json:
        print_json([k.to_json() for k in found])
        return
    from rich.table import Table

    table = Table("id", "owner", "name", "admin", "created", "last used", "revoked")
    for k in found:
        row = k.to_json()
        table.add_row(
            k.id,
            k.owner,
            k.name,
            "yes" if k.admin else "",
            row["created_at"][:19],
            (row["last_used_at"] or "")[:19],
            (row["revoked_at"] or "")[:19],
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key's id (or the whole key).")) -> None:
    """Revoke a key: the next request with it gets 401."""
    settings = load_settings()

    async def body(db: Database) -> bool:
        return await keys.revoke_key(db, key_id)

    if not run_command(with_db(settings, body)):
        err_console.print(f"no live key {key_id!r}")
        raise typer.Exit(4)
    console.print(f"revoked {key_id}")
