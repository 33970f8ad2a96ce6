"""`exosphere key create | list | revoke` and `exosphere audit`: scoped API keys and who did what.

These need an admin key for every namespace (`STATE_MANAGER_SECRET`, or a key made with
`--role admin` and no `--namespace`).

Example::

    exosphere key create nightly-runtime --role runtime --namespace etl   # prints the secret, once
    exosphere key list
    exosphere key revoke key_0123456789abcdef
    exosphere audit --limit 20
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, get_args

import typer
from rich.table import Table

from exospherehost.cli import render
from exospherehost.cli.errors import EXIT_USAGE, CliError
from exospherehost.cli.options import DEFAULT_SERVER, JsonOption, KeyOption, ServerOption
from exospherehost.cli.session import Session
from exospherehost.contract import KeyRole

app = typer.Typer(help="Create, list and revoke scoped API keys (admin).", no_args_is_help=True)
ROLES: tuple[str, ...] = get_args(KeyRole)
MAX_AUDIT_LIMIT = 1000


def _time(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _role(value: str) -> KeyRole:
    role = value.strip().lower()
    if role not in ROLES:
        raise CliError(f"invalid --role {value!r}: use one of {', '.join(ROLES)}", EXIT_USAGE)
    return role  # type: ignore[return-value]  # checked against KeyRole's values just above


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who or what holds the key (shown in the audit log)")],
    role: Annotated[str, typer.Option("--role", help=f"One of {', '.join(ROLES)}")],
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="The one namespace the key works in (default: all)")
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key; prints its secret, which the server does not keep: store it now."""
    chosen = _role(role)
    if namespace is not None and not namespace.strip():
        raise CliError("invalid --namespace '': leave it out for a key that works in every namespace", EXIT_USAGE)
    with Session(server, key, None) as session:
        created = session.run(session.sm.create_key(name, chosen, namespace.strip() if namespace else None))
    if as_json:
        render.print_json(created)
        return
    scope = f"namespace {created['namespace']}" if created["namespace"] else "every namespace"
    render.out.print(f"created {created['role']} key {created['id']} ({created['name']}) for {scope}", markup=False)
    render.out.print(f"secret (shown once): {created['key']}", markup=False)


@app.command("list")
def list_keys(server: ServerOption = DEFAULT_SERVER, key: KeyOption = None, as_json: JsonOption = False) -> None:
    """Every key, revoked ones too (never their secrets)."""
    with Session(server, key, None) as session:
        found = session.run(session.sm.list_keys())
    if as_json:
        render.print_json(found)
        return
    table = Table("id", "name", "role", "namespace", "created (UTC)", "revoked (UTC)")
    for item in found["keys"]:
        table.add_row(
            item["id"],
            item["name"],
            item["role"],
            item["namespace"] or "(all)",
            _time(item["created_at"]),
            _time(item["revoked_at"]),
        )
    render.out.print(table if found["keys"] else "No API keys yet: `exosphere key create` makes one.")


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `exosphere key list`)")],
    server: ServerOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a key: every replica refuses it from the next request on."""
    with Session(server, key, None) as session:
        revoked = session.run(session.sm.revoke_key(key_id.strip()))
    if as_json:
        render.print_json(revoked)
    else:
        render.out.print(f"revoked key {revoked['id']} ({revoked['name']})", markup=False)


def audit(
    limit: Annotated[int, typer.Option("--limit", help=f"Entries to show, newest first (1-{MAX_AUDIT_LIMIT})")] = 50,
    before: Annotated[int | None, typer.Option("--before", help="Only entries older than this entry id")] = None,
    server: ServerOption = DEFAULT_SERVER,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Who did what: admin and operator actions that succeeded, newest first (admin)."""
    if not 1 <= limit <= MAX_AUDIT_LIMIT:
        raise CliError(f"invalid --limit {limit}: must be between 1 and {MAX_AUDIT_LIMIT}", EXIT_USAGE)
    with Session(server, key, None) as session:
        found: dict[str, Any] = session.run(session.sm.audit_log(limit, before))
    if as_json:
        render.print_json(found)
        return
    table = Table("id", "when (UTC)", "key", "role", "action", "namespace", "target")
    for e in found["entries"]:
        table.add_row(
            str(e["id"]),
            _time(e["at"]),
            f"{e['key_name']} ({e['key_id']})",
            e["role"],
            e["action"],
            e["namespace"] or "",
            e["target"],
        )
    render.out.print(table if found["entries"] else "No admin or operator action yet.")
