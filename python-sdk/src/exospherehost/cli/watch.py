"""`exosphere run watch RUN_ID`: follow a run live, with a progress bar and an ETA.

The run's events come from `StateManager.watch_run` (the server's event stream), which reconnects
after a dropped connection or a server restart and resumes where it was: the watch goes on instead
of exiting. On a terminal the progress is a rich progress bar; in a pipe (CI logs) it is one plain
line per change, at most one a second, and always the last.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from exospherehost.cli import render
from exospherehost.cli.errors import EXIT_FAILED, EXIT_TIMEOUT, CliError
from exospherehost.cli.options import (
    DEFAULT_SERVER,
    JsonOption,
    KeyOption,
    NamespaceOption,
    ServerOption,
    connect,
    parse_duration,
)
from exospherehost.contract import RunEvent
from exospherehost.state_manager import StateManager
from exospherehost.statuses import FAILED, RunStatus, StateStatus

PLAIN_LINE_EVERY_S = 1.0


class Eta:
    """The time left, from how fast states have finished since the watch began.

    A fan-out grows while it runs, so this is the time to finish the states known now at the rate seen
    so far: a guide that firms up as the run goes, None until a state has finished.

    Example::

        eta = Eta(time.monotonic())
        eta.seconds_left(done=10, total=40, now=start + 5.0)  # 15.0
    """

    def __init__(self, started: float) -> None:
        self.started = started
        self.first_done: int | None = None

    def seconds_left(self, done: int, total: int, now: float) -> float | None:
        if self.first_done is None:
            self.first_done = done  # states already done when the watch began say nothing of its rate
        finished_here = done - self.first_done
        elapsed = now - self.started
        if finished_here <= 0 or elapsed <= 0:
            return None
        return max(total - done, 0) / (finished_here / elapsed)


def done_and_total(event: RunEvent) -> tuple[int, int]:
    """States that will not run again (succeeded, failed, retried, pruned) and all the run's states."""
    return event.total_count - event.pending_count, event.total_count


def progress_line(event: RunEvent, elapsed: float, eta: float | None) -> str:
    """One plain progress line, e.g. `run 1f… RUNNING 12/40 states (2 errored) 25% elapsed 4.2s eta 9.8s`."""
    done, total = done_and_total(event)
    status = "RUNNING" if event.status == RunStatus.PENDING else str(event.status)
    percent = f"{100 * done // total}%" if total else "0%"
    errored = f" ({event.errored_count} errored)" if event.errored_count else ""
    left = f" eta {render.duration(eta)}" if eta is not None and not event.finished else ""
    return (
        f"run {event.run_id} {status} {done}/{total} states{errored} {percent} elapsed {render.duration(elapsed)}{left}"
    )


def watch_run(
    run_id: Annotated[str, typer.Argument(help="Run id (printed by `exosphere trigger`)")],
    timeout: Annotated[
        str | None, typer.Option("--timeout", help="Give up after this long, e.g. 10m (default: never)")
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
    key: KeyOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
    stream: Annotated[
        bool, typer.Option("--stream", help="Print the live text the running states stream, instead of progress")
    ] = False,
) -> None:
    """Follow a run live until it ends: a progress bar with an ETA (plain lines when not a terminal).

    Survives a server restart: the watch reconnects and goes on. Exit code 0 when the run succeeded,
    1 when it failed, 4 on --timeout. With --json, one JSON object per event (JSON lines). With
    --stream, the text each running state streams (`BaseNode.stream`), as it comes, under a
    `[identifier state_id]` line whenever the state printing changes (JSON lines of chunks with --json).
    """
    limit = parse_duration(timeout, "--timeout") if timeout is not None else None
    run_id = run_id.strip()
    with connect(server, key, namespace) as session:
        started = time.monotonic()
        eta = Eta(started)
        live_text = LiveText(session.sm, run_id, as_json) if stream else None
        show: Show
        finish: Callable[[], None]
        if live_text is not None:
            show, finish = live_text.show, lambda: None
        elif as_json:
            show, finish = _json_lines()
        elif render.out.is_terminal:
            show, finish = _progress_bar(eta)
        else:
            show, finish = _plain_lines(eta)
        try:
            watching = _follow(session.sm.watch_run(run_id), show, limit)
            last = session.run(live_text.follow(watching) if live_text is not None else watching)
        except KeyboardInterrupt:
            raise CliError(f"stopped watching; run {run_id} goes on in the server", 130) from None
        finally:
            finish()
        if last is None:
            raise CliError(
                f"timed out after {render.duration(limit or 0)} watching run {run_id}; the run goes on "
                f"(see `exosphere run show {run_id}`)",
                EXIT_TIMEOUT,
            )
        if not as_json:
            # The run itself, not the last event: its answer holds the run's end (`finished_at`).
            render.out.print(render.run_header(session.run(session.sm.get_run(run_id))))
            if last.status != RunStatus.SUCCESS:
                states = session.run(session.sm.get_run_states(run_id))
                render.out.print(render.failed_states([s for s in states if s["status"] in FAILED]))
    if last.status != RunStatus.SUCCESS:
        raise typer.Exit(EXIT_FAILED)


Show = Callable[[RunEvent], None]
STATES_READ_EVERY_S = 0.5  # the most often --stream lists the run's states to find newly running ones


class LiveText:
    """`--stream`: follows the stream of each state of the run seen running, printing chunks as they come.

    Running states are found by listing the run's states when its events show states running (at most
    every `STATES_READ_EVERY_S`); a state that starts and ends between two looks is not printed.
    """

    def __init__(self, sm: StateManager, run_id: str, as_json: bool) -> None:
        self.sm, self.run_id, self.as_json = sm, run_id, as_json
        self.followed: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.looked_at = -STATES_READ_EVERY_S
        self.running = False
        self.last_source: str | None = None
        self.wake = asyncio.Event()

    def show(self, event: RunEvent) -> None:
        self.running = any(node.counts.get(StateStatus.QUEUED, 0) for node in event.nodes)
        self.wake.set()

    async def follow(self, run: Awaitable[RunEvent | None]) -> RunEvent | None:
        """Run `run` (the watch of the run's events) while following the streams of its running states;
        once it ends, wait for the streams followed to end too."""
        finder = asyncio.create_task(self._find_running())
        try:
            last = await run
        finally:
            finder.cancel()
        if last is not None and self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        for task in self.tasks:
            task.cancel()
        if self.last_source is not None and not self.as_json:
            render.out.file.write("\n")
        return last

    async def _find_running(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            self.wake.clear()
            pause = self.looked_at + STATES_READ_EVERY_S - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            if not self.running:
                continue
            self.looked_at = loop.time()
            for state in await self.sm.get_run_states(self.run_id):
                if state["status"] == StateStatus.QUEUED and state["state_id"] not in self.followed:
                    self.followed.add(state["state_id"])
                    task = asyncio.create_task(self._print_stream(state["state_id"], state["identifier"]))
                    self.tasks.add(task)

    async def _print_stream(self, state_id: str, identifier: str) -> None:
        out = render.out.file
        async for chunk in self.sm.stream_state(state_id):
            if self.as_json:
                line = {"state_id": state_id, "identifier": identifier, **chunk.model_dump(mode="json")}
                out.write(json.dumps(line) + "\n")
            else:
                if self.last_source != state_id:
                    out.write(("\n" if self.last_source is not None else "") + f"[{identifier} {state_id}]\n")
                    self.last_source = state_id
                out.write(chunk.text)
            out.flush()


async def _follow(events: AsyncIterator[RunEvent], show: Show, limit: float | None) -> RunEvent | None:
    """Show each event until the run finishes; its last event, or None when `limit` seconds passed."""

    async def follow() -> RunEvent:
        last: RunEvent | None = None
        async for event in events:
            show(event)
            last = event
        assert last is not None  # watch_run ends only on a finished event (or raises)
        return last

    try:
        return await asyncio.wait_for(follow(), limit)
    except TimeoutError:
        return None


def _json_lines() -> tuple[Show, Callable[[], None]]:
    def show(event: RunEvent) -> None:
        render.out.file.write(event.model_dump_json() + "\n")
        render.out.file.flush()

    return show, lambda: None


def _plain_lines(eta: Eta) -> tuple[Show, Callable[[], None]]:
    printed_at = 0.0
    pending: list[str] = []

    def show(event: RunEvent) -> None:
        nonlocal printed_at
        now = time.monotonic()
        done, total = done_and_total(event)
        line = progress_line(event, now - eta.started, eta.seconds_left(done, total, now))
        if event.finished or now - printed_at >= PLAIN_LINE_EVERY_S:
            render.out.print(line, markup=False, highlight=False)
            printed_at, pending[:] = now, []
        else:
            pending[:] = [line]  # printed by `finish` if nothing newer comes

    def finish() -> None:
        for line in pending:
            render.out.print(line, markup=False, highlight=False)

    return show, finish


def _progress_bar(eta: Eta) -> tuple[Show, Callable[[], None]]:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("states"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[eta]}"),
        console=render.out,
    )
    task = progress.add_task("connecting", total=None, eta="")
    progress.start()

    def show(event: RunEvent) -> None:
        now = time.monotonic()
        done, total = done_and_total(event)
        left = eta.seconds_left(done, total, now)
        status = "RUNNING" if event.status == RunStatus.PENDING else str(event.status)
        errored = f" [red]{event.errored_count} errored[/]" if event.errored_count else ""
        progress.update(
            task,
            description=f"{status}{errored}",
            completed=done,
            total=total,
            eta=f"eta {render.duration(left)}" if left is not None and not event.finished else "",
        )

    return show, progress.stop
