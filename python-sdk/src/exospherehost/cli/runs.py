"""`exosphere trigger`, `exosphere runs` and `exosphere run show`: starting runs, following and cancelling them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.text import Text

from exospherehost.cli import render
from exospherehost.cli.errors import EXIT_FAILED, EXIT_TIMEOUT, EXIT_USAGE, CliError
from exospherehost.cli.options import (
    DEFAULT_SERVER,
    JsonOption,
    KeyOption,
    NamespaceOption,
    ServerOption,
    connect,
    parse_duration,
    parse_pairs,
)
from exospherehost.cli.session import Session
from exospherehost.cli.trigger_file import read_trigger_file
from exospherehost.cli.watch import watch_run
from exospherehost.contract import MAX_TRIGGER_MANY
from exospherehost.errors import ApiError, ConflictError, RunTimeoutError
from exospherehost.state_manager import StateManager
from exospherehost.statuses import RunStatus

run_app = typer.Typer(help="Inspect, watch or cancel one run.", no_args_is_help=True)
run_app.command("watch")(watch_run)
runs_app = typer.Typer(help="List the namespace's runs, newest first; `exosphere runs cancel` cancels many.")
RUN_STATUSES = tuple(RunStatus)


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
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="A repeat with the same key prints the first run's id, starting none"),
    ] = None,
    priority: Annotated[
        int | None,
        typer.Option(
            "--priority", help="Higher is claimed first; a point is a second of waiting (default: the graph's)"
        ),
    ] = None,
    budget_tokens: Annotated[
        int | None, typer.Option("--budget-tokens", help="Cancel the run once its nodes report more tokens")
    ] = None,
    budget_cost: Annotated[
        float | None, typer.Option("--budget-cost", help="Cancel the run once its nodes report more US dollars")
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file",
            help="Start one run per entry of this file (JSON lines, or one JSON list; '-' reads stdin): "
            'each entry a trigger body such as {"inputs": {...}, "store": {...}, "idempotency_key": "..."}',
        ),
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    key: KeyOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start a run of a graph and print its id; with --wait, follow it and print its outputs and errors.

    With --from-file, start one run per entry of the file (in requests of up to 1,000 runs) and print
    their ids, one per line, in the file's order.

    With --wait the exit code is 0 when the run succeeded, 1 when any state ended errored, 4 on timeout.
    """
    if from_file is not None:
        single = _single_run_options(inputs, store, delay, wait, idempotency_key, priority, budget_tokens, budget_cost)
        given = [name for name, value in single if value is not None and value is not False and value != []]
        if given:
            raise CliError(f"--from-file takes each run's values from the file: drop {', '.join(given)}", EXIT_USAGE)
        _trigger_from_file(graph.strip(), read_trigger_file(from_file), server, key, namespace, as_json)
        return
    run_inputs = parse_pairs(inputs, "--input")
    run_store = parse_pairs(store, "--store")
    start_delay = round(parse_duration(delay, "--delay") * 1000) if delay is not None else 0
    limit = parse_duration(timeout, "--timeout") if timeout is not None else None
    if limit is not None and not wait:
        raise CliError("--timeout only applies with --wait", EXIT_USAGE)
    with connect(server, key, namespace) as session:
        answer = session.run(
            session.sm.trigger(
                graph.strip(),
                inputs=run_inputs,
                store=run_store,
                start_delay=start_delay,
                idempotency_key=idempotency_key,
                priority=priority,
                budget=_budget(budget_tokens, budget_cost),
            )
        )
        run_id = answer["run_id"]
        if not wait:
            if as_json:
                render.print_json({"run_id": run_id})
            else:
                render.out.print(run_id, markup=False)
            return
        if not as_json:
            render.out.print(f"run {run_id} started", markup=False)
        succeeded = follow_run(session, run_id, limit, as_json)
    if not succeeded:
        raise typer.Exit(EXIT_FAILED)


def _single_run_options(*values: object) -> list[tuple[str, object]]:
    names = ("--input", "--store", "--delay", "--wait", "--idempotency-key", "--priority", "--budget-tokens")
    return list(zip((*names, "--budget-cost"), values, strict=True))


def _budget(tokens: int | None, cost_usd: float | None) -> dict[str, float] | None:
    """The run's budget from --budget-tokens and --budget-cost; None (the graph's) without either."""
    budget = {name: value for name, value in (("tokens", tokens), ("cost_usd", cost_usd)) if value is not None}
    return budget or None


def _trigger_from_file(
    graph: str, entries: list[dict[str, Any]], server: str, key: str | None, namespace: str | None, as_json: bool
) -> None:
    started: list[dict[str, Any]] = []
    with connect(server, key, namespace) as session:
        for first in range(0, len(entries), MAX_TRIGGER_MANY):
            started += session.run(session.sm.trigger_many(graph, entries[first : first + MAX_TRIGGER_MANY]))
    if as_json:
        render.print_json({"runs": started})
    else:
        for run in started:
            render.out.print(run["run_id"], markup=False)


def follow_run(session: Session, run_id: str, limit: float | None, as_json: bool) -> bool:
    """Show the run's progress until it ends (or `limit` seconds pass); then its result. True if it succeeded.

    The end is awaited with the SDK's `wait_for_run`, which rides out a server restart; `limit` bounds it.
    """
    started = time.monotonic()
    try:
        if as_json:
            run = session.run(session.sm.wait_for_run(run_id, timeout=limit))
        else:
            with Live(Text(""), console=render.out, refresh_per_second=4) as live:

                def show(progress: dict[str, Any]) -> None:
                    live.update(render.progress_view(progress, time.monotonic() - started))

                try:
                    run = session.run(_follow_live(session.sm, run_id, limit, show))
                finally:
                    live.stop()
                    if not render.out.is_terminal:
                        render.out.line()  # Live ends a terminal's last line itself, not a pipe's
    except KeyboardInterrupt:
        raise CliError(
            f"stopped waiting; run {run_id} goes on in the server (see `exosphere run show {run_id}`)", 130
        ) from None
    except RunTimeoutError as exc:
        pending = f": {exc.run['pending_count']} states still pending" if exc.run else ""
        raise CliError(
            f"timed out after {render.duration(exc.timeout)} waiting for run {run_id}{pending}; "
            f"the run goes on (see `exosphere run show {run_id}`)",
            EXIT_TIMEOUT,
        ) from None
    elapsed = time.monotonic() - started
    states = session.run(session.sm.get_run_states(run_id))
    if as_json:
        render.print_json({"run": run, "elapsed_seconds": round(elapsed, 3), "states": states})
    else:
        terminal = session.run(_terminal_nodes(session.sm, run["graph_name"]))
        render.out.print(render.run_result(run, states, terminal, elapsed))
    return bool(run["status"] == RunStatus.SUCCESS)


async def _follow_live(
    sm: StateManager, run_id: str, limit: float | None, show: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Follow the run's events (`StateManager.watch_run`), redrawing the live view from each; the end's summary."""

    async def watch() -> dict[str, Any]:
        async for event in sm.watch_run(run_id):
            show({**event.summary(), "nodes": [node.model_dump() for node in event.nodes]})
        return await sm.get_run(run_id)

    try:
        return await asyncio.wait_for(watch(), limit)
    except TimeoutError:
        raise RunTimeoutError(run_id, limit or 0.0, None) from None


async def _terminal_nodes(sm: StateManager, graph_name: str) -> set[str] | None:
    """Identifiers of the graph's last nodes (no next nodes), whose outputs are the run's result."""
    try:
        graph = await sm.get_graph(graph_name)
    except ApiError:
        return None
    return {node["identifier"] for node in graph.get("nodes") or [] if not node.get("next_nodes")}


@runs_app.callback(invoke_without_command=True)
def list_runs(
    ctx: typer.Context,
    graph: Annotated[str | None, typer.Option("--graph", "-g", help="Only runs of this graph")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help=f"Only {', '.join(RUN_STATUSES[:-1])} or {RUN_STATUSES[-1]} runs")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many runs, newest first (1..1000)")] = 20,
    server: ServerOption = DEFAULT_SERVER,
    key: KeyOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the namespace's runs, newest first (`exosphere runs cancel --help`: cancel many)."""
    if ctx.invoked_subcommand is not None:
        return
    wanted: RunStatus | None = None
    if status is not None:
        given = status.strip().upper()
        if given not in (*RUN_STATUSES, "RUNNING"):
            raise CliError(f"invalid --status {status!r}: use one of {', '.join(RUN_STATUSES)}", EXIT_USAGE)
        wanted = RunStatus.PENDING if given == "RUNNING" else RunStatus(given)
    if not 1 <= limit <= 1000:
        raise CliError(f"invalid --limit {limit}: must be between 1 and 1000", EXIT_USAGE)
    with connect(server, key, namespace) as session:
        page = session.run(session.sm.list_runs(1, limit, graph_name=graph, status=wanted))
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
    """Show a run as a tree of states with status, attempts, durations, errors and usage (per node too)."""
    with connect(server, key, namespace) as session:
        run = session.run(session.sm.get_run(run_id.strip()))
        states = session.run(session.sm.get_run_states(run_id.strip()))
        nodes = session.run(session.sm.get_run_progress(run_id.strip()))["nodes"] if run.get("usage") else None
    if as_json:
        render.print_json({"run": run, "states": states})
    else:
        render.out.print(render.run_tree(run, states, show_all, nodes))


@run_app.command("cancel")
def cancel_run(
    run_id: Annotated[str, typer.Argument(help="Run id (printed by `exosphere trigger`)")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why; shown with the run")] = None,
    server: ServerOption = DEFAULT_SERVER,
    key: KeyOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a pending run: its unfinished states become CANCELLED and its executing nodes are stopped.

    Cancelling a run again prints the same; a finished run is refused (exit 3) naming its status.
    """
    with connect(server, key, namespace) as session:
        answer = session.run(session.sm.cancel_run(run_id.strip(), reason))
    if as_json:
        render.print_json(answer)
    else:
        render.out.print(f"run {answer['run_id']} cancelled: {answer['cancelled_states']} states", markup=False)


@runs_app.command("cancel")
def cancel_runs(
    graph: Annotated[str, typer.Option("--graph", "-g", help="Cancel runs of this graph")],
    status: Annotated[
        str, typer.Option("--status", help="Which runs: RUNNING (the same as PENDING), the only ones a cancel ends")
    ] = "RUNNING",
    reason: Annotated[str | None, typer.Option("--reason", help="Why; shown with each run")] = None,
    server: ServerOption = DEFAULT_SERVER,
    key: KeyOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel every pending run of a graph, e.g. `exosphere runs cancel --graph G --status RUNNING`."""
    if status.strip().upper() not in ("RUNNING", RunStatus.PENDING):
        raise CliError(f"invalid --status {status!r}: only RUNNING (or PENDING) runs can be cancelled", EXIT_USAGE)
    with connect(server, key, namespace) as session:
        cancelled, finished = session.run(_cancel_pending_runs(session.sm, graph.strip(), reason))
    if as_json:
        render.print_json({"cancelled": cancelled, "finished_meanwhile": finished})
    else:
        states = sum(answer["cancelled_states"] for answer in cancelled)
        ended = f"; {len(finished)} finished before their cancel" if finished else ""
        render.out.print(f"{len(cancelled)} runs of {graph.strip()} cancelled ({states} states){ended}", markup=False)


async def _cancel_pending_runs(
    sm: StateManager, graph: str, reason: str | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Cancel the graph's pending runs, listed first (cancelling changes what the listing holds)."""
    run_ids: list[str] = []
    page = 1
    while True:
        listed = await sm.list_runs(page, 1000, graph_name=graph, status=RunStatus.PENDING)
        run_ids += [run["run_id"] for run in listed["runs"]]
        if page * 1000 >= listed["total"] or not listed["runs"]:
            break
        page += 1
    cancelled: list[dict[str, Any]] = []
    finished: list[str] = []
    for run_id in dict.fromkeys(run_ids):
        try:
            cancelled.append(await sm.cancel_run(run_id, reason))
        except ConflictError:
            finished.append(run_id)  # it ended between the listing and its cancel
    return cancelled, finished
