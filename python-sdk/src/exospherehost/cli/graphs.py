"""`exosphere graph apply | list | show`: graph templates from files, and what the server holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from exospherehost.cli import render
from exospherehost.cli.errors import EXIT_FAILED, EXIT_USAGE, CliError, field_path
from exospherehost.cli.options import (
    DEFAULT_SERVER,
    JsonOption,
    KeyOption,
    NamespaceOption,
    ServerOption,
    connect,
)
from exospherehost.errors import ApiError

app = typer.Typer(help="Create, list and inspect graph templates.", no_args_is_help=True)

BODY_FIELDS = ("nodes", "secrets", "retry_policy", "store_config", "triggers")
INVALID_PREFIX = "Error validating graph template: "


def load_graph_file(path: Path) -> dict[str, Any]:
    """The file as a mapping; JSON or YAML (by extension, YAML otherwise, which also reads JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE) from exc
    except UnicodeDecodeError as exc:
        raise CliError(f"cannot read {path}: not UTF-8 text", EXIT_USAGE) from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", EXIT_USAGE
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CliError(f"{path} is not valid YAML: {problem}{where}", EXIT_USAGE) from exc
    if not isinstance(data, dict):
        raise CliError(f"{path} must hold a mapping with the graph's fields ({', '.join(BODY_FIELDS)})", EXIT_USAGE)
    unknown = sorted(set(data) - {"name", *BODY_FIELDS})
    if unknown:
        raise CliError(
            f"{path}: unknown field(s) {', '.join(unknown)} (expected name, {', '.join(BODY_FIELDS)})", EXIT_USAGE
        )
    return data


def upsert_body(data: dict[str, Any], namespace: str) -> dict[str, Any]:
    body = {key: data[key] for key in BODY_FIELDS if key in data}
    body.setdefault("secrets", {})
    # Nodes registered in the graph's own namespace need not repeat it in the file.
    for node in body.get("nodes") or []:
        if isinstance(node, dict):
            node.setdefault("namespace", namespace)
    return body


def graph_problems(error: ApiError, body: dict[str, Any]) -> list[str] | None:
    """Every problem of a refused upsert, one per line, naming the node and field; None if not a graph problem."""
    if error.status_code == 400 and isinstance(error.detail, str) and error.detail.startswith(INVALID_PREFIX):
        return error.detail[len(INVALID_PREFIX) :].split("; ")
    if error.status_code == 422 and isinstance(error.detail, list):
        return [_field_problem(item, body) for item in error.detail]
    return None


def _field_problem(item: dict[str, Any], body: dict[str, Any]) -> str:
    loc = [part for part in item.get("loc", []) if part != "body"]
    message = item.get("msg", "invalid")
    if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
        nodes = body.get("nodes") or []
        node = nodes[loc[1]] if loc[1] < len(nodes) and isinstance(nodes[loc[1]], dict) else {}
        name = f"node '{node['identifier']}'" if isinstance(node.get("identifier"), str) else f"node #{loc[1] + 1}"
        field = field_path(loc[2:])
        return f"{name}" + (f" field '{field}'" if field else "") + f": {message}"
    return f"field '{field_path(loc)}': {message}" if loc else message


@app.command("apply")
def apply(
    file: Annotated[Path, typer.Argument(help="YAML or JSON file: name, nodes, secrets, retry_policy, ...")],
    name: Annotated[str | None, typer.Option("--name", help="Graph name (default: the file's `name`)")] = None,
    server: ServerOption = DEFAULT_SERVER,
    key: KeyOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create or update a graph from a file and print its validation result.

    Exits 1 when the graph is invalid, after listing every problem.
    """
    data = load_graph_file(file)
    given = name if name is not None else data.get("name")
    if not isinstance(given, str) or not given.strip():
        raise CliError(f"no graph name: add a `name` field to {file} or pass --name", EXIT_USAGE)
    graph_name = given.strip()
    with connect(server, key, namespace) as session:
        body = upsert_body(data, session.namespace)
        try:
            graph = session.run(session.sm.apply_graph(graph_name, body))
        except ApiError as exc:
            problems = graph_problems(exc, body)
            if problems is None:
                raise
            if as_json:
                render.print_json(
                    {"name": graph_name, "validation_status": "INVALID", "saved": False, "validation_errors": problems}
                )
            else:
                render.out.print(f"graph {graph_name}: [bold red]INVALID[/] (nothing was saved)", highlight=False)
                for problem in problems:
                    render.out.print(f"  error: {problem}", style="red", markup=False, highlight=False)
            raise typer.Exit(EXIT_FAILED) from None
    if as_json:
        render.print_json(graph)
    else:
        render.out.print(render.validation_report(graph))
    if graph["validation_status"] != "VALID":
        raise typer.Exit(EXIT_FAILED)


@app.command("list")
def list_graphs(
    server: ServerOption = DEFAULT_SERVER,
    key: KeyOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the graph templates of the namespace."""
    with connect(server, key, namespace) as session:
        templates = session.run(session.sm.list_graphs())["templates"]
    if as_json:
        render.print_json(templates)
    else:
        render.out.print(render.graph_list(templates))


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Graph name")],
    server: ServerOption = DEFAULT_SERVER,
    key: KeyOption = None,
    namespace: NamespaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a graph template: nodes, validation, retry policy, store, triggers (secret names only)."""
    with connect(server, key, namespace) as session:
        graph = session.run(session.sm.get_graph(name.strip()))
    if as_json:
        render.print_json(graph)
    else:
        render.out.print(render.graph_detail(graph))
