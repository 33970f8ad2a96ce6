"""`exosphere trigger`, `exosphere runs` and `exosphere run show`: starting runs and following them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Annotated, Any

import exospherehost.errors as sdk_errors
import typer
from exospherehost import StateManager
from rich.live import Live
from rich.text import Text

from exosphere_server.cli import render
from exosphere_server.cli.client import EXIT_FAILED, EXIT_TIMEOUT, EXIT_USAGE, ApiError, Client, CliError, segment
from exosphere_server.cli.options import (
    DEFAULT_SERVER,
    JsonOption,
    KeyOption,
    NamespaceOption,
    ServerOption,
    connect,
    parse_duration,
    parse_pairs,
)

run_app = typer.Typer(help="Inspect one run.", no_args_is_help=True)
RUN_STATUSES = ("PENDING", "SUCCESS", "FAILED")
# A server without an API key (a loopback development server) accepts any; the SDK wants one set.
ANY_KEY = "-"


def trigger(
    graph: Annotated[str, typer.Argument(help="Graph name")],
    inputs: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="Input of the root node, KEY=VALUE (repeatable)")
    ] = None,
    store: Annotated[
        list[str] | None, typer.Option("--store", "-s", help="Value of the run's store, KEY=VALUE (repeatable)")
    ] = None,
    delay: Annotated[str | None, typer.Option("--delay", help="Start after this long, e.g. 30s, 5m")] = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Follow the run live until it ends")] = False,
    timeout: Annotated[
        str | None, typer.Option("--timeout", help="With --wait: give up after this long, e.g. 10m (default: never)")
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    key: KeyOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start a run of a graph and print its id; with --wait, follow it and print its outputs and errors.

    With --wait the exit code is 0 when the run succeeded, 1 when any state ended errored, 4 on timeout.
    """
    body = {
        "inputs": parse_pairs(inputs, "--input"),
        "store": parse_pairs(store, "--store"),
        "start_delay": round(parse_duration(delay, "--delay") * 1000) if delay is not None else 0,
    }
    limit = parse_duration(timeout, "--timeout") if timeout is not None else None
    if limit is not None and not wait:
        raise CliError("--timeout only applies with --wait", EXIT_USAGE)
    with connect(server, key, namespace) as client:
        run_id = client.post(f"graph/{segment(graph.strip())}/trigger", body)["run_id"]
        if not wait:
            if as_json:
                render.print_json({"run_id": run_id})
            else:
                render.out.print(run_id, markup=False)
            return
        if not as_json:
            render.out.print(f"run {run_id} started", markup=False)
        succeeded = follow_run(client, run_id, limit, as_json)
    if not succeeded:
        raise typer.Exit(EXIT_FAILED)


def follow_run(client: Client, run_id: str, limit: float | None, as_json: bool) -> bool:
    """Show the run's progress until it ends (or `limit` seconds pass); then its result. True if it succeeded."""
    started = time.monotonic()
    try:
        if as_json:
            progress = _watch_until_finished(client, run_id, limit, lambda _p: None)
        else:
            with Live(Text(""), console=render.out, refresh_per_second=4) as live:

                def show(p: dict[str, Any]) -> None:
                    live.update(render.progress_view(p, time.monotonic() - started))

                try:
                    progress = _watch_until_finished(client, run_id, limit, show)
                finally:
                    live.stop()
                    if not render.out.is_terminal:
                        render.out.line()  # Live ends a terminal's last line itself, not a pipe's
    except KeyboardInterrupt:
        raise CliError(
            f"stopped waiting; run {run_id} goes on in the server (see `exosphere run show {run_id}`)", 130
        ) from None
    elapsed = time.monotonic() - started
    states = run_states(client, run_id)
    run = {key: value for key, value in progress.items() if key != "nodes"}
    if as_json:
        render.print_json({"run": run, "elapsed_seconds": round(elapsed, 3), "states": states})
    else:
        render.out.print(render.run_result(run, states, _terminal_nodes(client, run["graph_name"]), elapsed))
    return bool(run["status"] == "SUCCESS")


def _watch_until_finished(
    client: Client, run_id: str, limit: float | None, show: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Follow the run's event stream through the SDK (`StateManager.watch_run`) until it has finished."""
    progress: dict[str, Any] = {"pending_count": "?"}

    async def watch() -> None:
        nonlocal progress
        manager = StateManager(client.namespace, state_manager_uri=client.server, key=client.key or ANY_KEY)
        async with manager:
            async for event in manager.watch_run(run_id):
                progress = {**event.summary(), "nodes": [node.model_dump() for node in event.nodes]}
                show(progress)

    try:
        asyncio.run(asyncio.wait_for(watch(), limit))
    except TimeoutError:
        raise CliError(
            f"timed out after {render.duration(limit or 0)} waiting for run {run_id}: {progress['pending_count']} "
            f"states still pending; the run goes on (see `exosphere run show {run_id}`)",
            EXIT_TIMEOUT,
        ) from None
    except sdk_errors.ApiError as exc:
        raise CliError(" ".join(str(exc).split())) from exc
    return progress


def run_states(client: Client, run_id: str, page_size: int = 1000) -> list[dict[str, Any]]:
    """Every state of a run, oldest first, read a page at a time."""
    states: list[dict[str, Any]] = []
    page = 1
    while True:
        body = client.get(f"run/{segment(run_id)}/states", page=page, size=page_size)
        states += body["states"]
        if len(body["states"]) < page_size or len(states) >= body.get("total", 0):
            return states
        page += 1


def _terminal_nodes(client: Client, graph_name: str) -> set[str] | None:
    """Identifiers of the graph's last nodes (no next nodes), whose outputs are the run's result."""
    try:
        graph = client.get(f"graph/{segment(graph_name)}")
    except ApiError:
        return None
    return {node["identifier"] for node in graph.get("nodes") or [] if not node.get("next_nodes")}


def list_runs(
    graph: Annotated[str | None, typer.Option("--graph", "-g", help="Only runs of this graph")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only PENDING, SUCCESS or FAILED runs")] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many runs, newest first (1..1000)")] = 20,
    server: ServerOption = DEFAULT_SERVER,
    key: KeyOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the namespace's runs, newest first."""
    wanted = status.strip().upper() if status is not None else None
    if wanted == "RUNNING":
        wanted = "PENDING"
    if wanted is not None and wanted not in RUN_STATUSES:
        raise CliError(f"invalid --status {status!r}: use one of {', '.join(RUN_STATUSES)}", EXIT_USAGE)
    if not 1 <= limit <= 1000:
        raise CliError(f"invalid --limit {limit}: must be between 1 and 1000", EXIT_USAGE)
    with connect(server, key, namespace) as client:
        page = client.get(f"runs/1/{limit}", graph_name=graph, status=wanted)
    if as_json:
        render.print_json(page)
    else:
        render.out.print(render.run_list(page["runs"], page["total"]))


@run_app.command("show")
def show_run(
    run_id: Annotated[str, typer.Argument(help="Run id (printed by `exosphere trigger`)")],
    show_all: Annotated[bool, typer.Option("--all", help="Show every state of large fan-outs")] = False,
    server: ServerOption = DEFAULT_SERVER,
    key: KeyOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a run as a tree of states with status, attempts, durations and errors."""
    with connect(server, key, namespace) as client:
        run = client.get(f"run/{segment(run_id.strip())}")
        states = run_states(client, run_id.strip())
    if as_json:
        render.print_json({"run": run, "states": states})
    else:
        render.out.print(render.run_tree(run, states, show_all))
