"""The `exosphere` CLI without the server package: SDK errors as one line, plugins, the [cli] extra.

The CLI runs as a real subprocess against the scripted HTTP server of fake_server.py; the commands
that need a real state manager are tested in state-manager/tests/cli/.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint

import pytest
import pytest_asyncio
from exospherehost.cli.app import PLUGIN_GROUP, build_app, run
from exospherehost.cli.errors import EXIT_REFUSED, EXIT_USAGE, CliError, from_sdk_error
from exospherehost.cli.options import parse_duration, parse_pairs
from exospherehost.errors import ServerUnavailableError
from fake_server import FakeServer, Reply, Request


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


async def exosphere(*args: str, server: str, env: dict[str, str] | None = None) -> Result:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exospherehost.cli",
        *args,
        env={**os.environ, "EXOSPHERE_STATE_MANAGER_URI": server, "EXOSPHERE_NAMESPACE": "ns", **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


def one_line_error(result: Result, code: int, fragment: str) -> None:
    assert result.code == code, result
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in result.stderr, result.stderr


class Routes:
    """Replies by (method, path suffix); a list is served in order, its last reply repeating."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Reply]] = {}

    def on(self, method: str, suffix: str, *replies: Reply) -> None:
        self.routes[(method, suffix)] = list(replies)

    async def handle(self, request: Request) -> Reply:
        for (method, suffix), replies in self.routes.items():
            if request.method == method and request.path.endswith(suffix):
                return replies.pop(0) if len(replies) > 1 else replies[0]
        return Reply(404, {"detail": "Not Found"})


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[tuple[Routes, FakeServer]]:
    routes = Routes()
    server = FakeServer(routes.handle)
    await server.start()
    yield routes, server
    await server.stop()


Fake = tuple[Routes, FakeServer]


@pytest.mark.asyncio
async def test_server_answers_become_one_line_errors(fake: Fake) -> None:
    routes, server = fake
    routes.on("GET", "/graphs/", Reply(401, {"detail": "Invalid API key"}))
    one_line_error(await exosphere("graph", "list", server=server.url), EXIT_REFUSED, "refused the API key")
    one_line_error(
        await exosphere("runs", server=server.url),
        EXIT_REFUSED,
        f"{server.url} has no endpoint for listing runs: is it an Exosphere state manager?",
    )
    routes.on("GET", "/state/s1", Reply(500, {"detail": "boom"}))
    one_line_error(await exosphere("state", "show", "s1", server=server.url), EXIT_REFUSED, "failed (HTTP 500): boom")
    routes.on("GET", "/run/r1", Reply(404, {"detail": "Run r1 not found in namespace ns"}))
    one_line_error(await exosphere("run", "show", "r1", server=server.url), EXIT_REFUSED, "Run r1 not found")
    routes.on("GET", "/run/r2", Reply(drop=True))
    one_line_error(
        await exosphere("run", "show", "r2", server=server.url), EXIT_REFUSED, "request to the state manager at"
    )


@pytest.mark.asyncio
async def test_requests_go_through_the_sdk_once_with_the_key_only_when_given(fake: Fake) -> None:
    routes, server = fake
    routes.on(
        "GET",
        "/graphs/",
        Reply(503, {"detail": "restarting"}),
        Reply(200, {"namespace": "ns", "count": 0, "templates": []}),
    )
    one_line_error(await exosphere("graph", "list", server=server.url), EXIT_REFUSED, "HTTP 503")
    assert len(server.requests) == 1  # the CLI does not retry: the person running it decides
    listed = await exosphere("graph", "list", "--json", server=server.url, env={"EXOSPHERE_API_KEY": ""})
    assert listed.code == 0 and listed.stdout.strip() == "[]"
    assert "x-api-key" not in server.requests[-1].headers
    assert server.requests[-1].headers["user-agent"].startswith("exospherehost-python/")
    await exosphere("graph", "list", "--key", "k1", server=server.url)
    assert server.requests[-1].headers["x-api-key"] == "k1"


@pytest.mark.asyncio
async def test_trigger_wait_follows_the_run_through_a_server_restart(fake: Fake) -> None:
    routes, server = fake
    routes.on("POST", "/graph/g/trigger", Reply(200, {"status": "CREATED", "run_id": "r1"}))
    summary = {
        "run_id": "r1",
        "graph_name": "g",
        "namespace": "ns",
        "status": "SUCCESS",
        "finished": True,
        "created_at": "2026-12-02T12:00:00+00:00",
        **dict.fromkeys(("success_count", "total_count"), 1),
        **dict.fromkeys(("pending_count", "errored_count", "retried_count"), 0),
    }
    finished = {**summary, "version": 3, "nodes": [{"identifier": "a", "node_name": "A", "counts": {"SUCCESS": 1}}]}
    stream = f"retry: 1000\n\nid: 3\nevent: finished\ndata: {json.dumps(finished)}\n\n".encode()
    events = Reply(200, raw=stream, headers={"content-type": "text/event-stream"})
    routes.on("GET", "/run/r1/events", Reply(503, {"detail": "restarting"}), Reply(drop=True), events)
    routes.on("GET", "/run/r1", Reply(200, summary))
    routes.on(
        "GET",
        "/run/r1/states",
        Reply(200, {"run_id": "r1", "count": 0, "total": 0, "page": 1, "size": 1000, "states": []}),
    )
    result = await exosphere("trigger", "g", "--wait", "--json", server=server.url)
    assert result.code == 0, result
    assert '"status": "SUCCESS"' in result.stdout


@pytest.mark.parametrize(
    ("exc", "message", "code"),
    [
        (ServerUnavailableError(None, "ReadTimeout: ", "Listing runs"), "did not answer within 30 s", EXIT_REFUSED),
        (ServerUnavailableError(None, "ConnectError: x", "Listing runs"), "cannot reach the state manager", 3),
    ],
)
def test_no_answer_is_told_apart(exc: ServerUnavailableError, message: str, code: int) -> None:
    exc.timed_out = "Timeout" in str(exc.detail)
    exc.request_sent = exc.timed_out
    error = from_sdk_error(exc, "http://h:1", 30.0)
    assert message in error.message and error.exit_code == code


def test_pairs_and_durations_are_parsed_or_refused_with_the_flag_named() -> None:
    assert parse_pairs(["a=1", "b=x=y"], "--input") == {"a": "1", "b": "x=y"}
    assert parse_duration("1h30m", "--delay") == 5400 and parse_duration("500ms", "--delay") == 0.5
    for bad in ("3x", "-5s", "nan"):
        with pytest.raises(CliError, match="invalid --delay") as caught:
            parse_duration(bad, "--delay")
        assert caught.value.exit_code == EXIT_USAGE


def run_app(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str, **kw: object) -> Result:
    monkeypatch.setattr(sys, "argv", ["exosphere", *args])
    with pytest.raises(SystemExit) as ended:
        run(build_app(**kw))  # type: ignore[arg-type]
    out, err = capsys.readouterr()
    return Result(int(ended.value.code or 0), out, err)


def test_without_the_server_package_server_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for args in (["server"], ["server", "--port", "9000"]):
        result = run_app(monkeypatch, capsys, *args, plugins=[])
        one_line_error(result, EXIT_USAGE, "pip install exosphere_server-")


def test_installed_packages_add_commands_and_a_broken_one_only_breaks_itself(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plugins = [
        EntryPoint("server", "exospherehost.cli.states:show", PLUGIN_GROUP),  # any command function
        EntryPoint("extra", "exospherehost.cli.graphs:app", PLUGIN_GROUP),  # a typer.Typer: a group
        EntryPoint("broken", "no_such_package_here.cli:command", PLUGIN_GROUP),
        EntryPoint("runs", "no_such_package_here.cli:command", PLUGIN_GROUP),  # built-ins win
    ]
    listing = run_app(monkeypatch, capsys, "--help", plugins=plugins)
    assert listing.code == 0
    assert all(name in listing.stdout for name in ("server", "extra", "broken", "graph", "trigger"))
    assert "Show a state" in run_app(monkeypatch, capsys, "server", "--help", plugins=plugins).stdout
    assert "apply" in run_app(monkeypatch, capsys, "extra", "--help", plugins=plugins).stdout
    one_line_error(
        run_app(monkeypatch, capsys, "broken", "--flag", plugins=plugins),
        EXIT_USAGE,
        "`exosphere broken` comes from no_such_package_here.cli:command, which failed to load (ModuleNotFoundError",
    )
    assert "List the namespace's runs" in run_app(monkeypatch, capsys, "runs", "--help", plugins=plugins).stdout


@pytest.mark.asyncio
async def test_without_the_cli_extra_exosphere_says_how_to_get_it() -> None:
    # As if typer were not installed: the import system refuses what sys.modules maps to None.
    blocked = "import sys; sys.modules['typer'] = None; from exospherehost.cli import main; main()"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", blocked, "runs", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    result = Result(process.returncode or 0, out.decode(), err.decode())
    one_line_error(result, EXIT_USAGE, 'needs typer, which is not installed: pip install "exospherehost[cli]"')
