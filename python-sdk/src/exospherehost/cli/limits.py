"""`exosphere limit set | list | delete`: the namespace's named limits (concurrency, requests and tokens per minute).

Example::

    exosphere limit set openai --rpm 500 --tpm 90000
    exosphere limit set slow-api --concurrency 4
    exosphere limit list
    exosphere limit delete openai
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from exospherehost.cli import render
from exospherehost.cli.errors import EXIT_USAGE, CliError
from exospherehost.cli.options import DEFAULT_SERVER, JsonOption, KeyOption, NamespaceOption, ServerOption, connect

app = typer.Typer(help="Set, list and delete the namespace's named limits.", no_args_is_help=True)


def _number(value: int | None) -> str:
    return "" if value is None else str(value)


@app.command("set")
def set_limit(
    name: Annotated[str, typer.Argument(help="The limit's name, e.g. openai")],
    concurrency: Annotated[int | None, typer.Option("--concurrency", help="States claimed at once")] = None,
    rpm: Annotated[int | None, typer.Option("--rpm", help="Requests (claims) per minute")] = None,
    tpm: Annotated[int | None, typer.Option("--tpm", help="Tokens per minute, charged with each estimate")] = None,
    server: ServerOption = DEFAULT_SERVER,
    key: KeyOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create or replace limit NAME: the budgets given replace all three (a budget left out is none)."""
    if concurrency is None and rpm is None and tpm is None:
        raise CliError("give at least one of --concurrency, --rpm and --tpm", EXIT_USAGE)
    with connect(server, key, namespace) as session:
        answer = session.run(
            session.sm.set_limit(name.strip(), concurrency=concurrency, requests_per_minute=rpm, tokens_per_minute=tpm)
        )
    if as_json:
        render.print_json(answer)
        return
    render.out.print(f"limit {answer['name']} set", markup=False)


@app.command("list")
def list_limits(
    server: ServerOption = DEFAULT_SERVER,
    key: KeyOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """The namespace's limits, and until when one is paused by a provider's 429."""
    with connect(server, key, namespace) as session:
        found = session.run(session.sm.list_limits())
    if as_json:
        render.print_json(found)
        return
    table = Table("name", "concurrency", "requests/min", "tokens/min", "paused until (UTC)")
    for item in found["limits"]:
        paused = item["paused_until"]
        until = datetime.fromtimestamp(paused / 1000, UTC).strftime("%H:%M:%S.%f")[:-3] if paused else ""
        table.add_row(
            item["name"],
            _number(item["concurrency"]),
            _number(item["requests_per_minute"]),
            _number(item["tokens_per_minute"]),
            until,
        )
    render.out.print(table)


@app.command("delete")
def delete_limit(
    name: Annotated[str, typer.Argument(help="The limit's name")],
    server: ServerOption = DEFAULT_SERVER,
    key: KeyOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove limit NAME; states of nodes that use it wait until it is defined again."""
    with connect(server, key, namespace) as session:
        answer = session.run(session.sm.delete_limit(name.strip()))
    if as_json:
        render.print_json(answer)
        return
    render.out.print(f"limit {answer['name']} deleted", markup=False)
