"""How the CLI shows things: rich tables, the run tree, the live progress view; JSON for scripts."""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from exospherehost.statuses import FAILED, PHASE, Phase, RunStatus, StateStatus


def _console() -> Console:
    # A pipe gets wide lines: ids must not be folded or cut for the scripts and logs reading them.
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=200 if piped else None, highlight=False)


out = _console()

# A state's status is shown in the style of its phase (`exospherehost.statuses.PHASE`).
PHASE_STYLE = {
    Phase.WAITING: "dim",
    Phase.RUNNING: "cyan",
    Phase.SUCCESS: "green",
    Phase.PRUNED: "yellow",
    Phase.RETRIED: "magenta",
    Phase.ERRORED: "bold red",
    Phase.CANCELLED: "bright_black",
}
STATUS_STYLE: dict[str, str] = {
    **{status: PHASE_STYLE[PHASE[status]] for status in StateStatus},
    RunStatus.PENDING: "cyan",
    RunStatus.SUCCESS: "green",
    RunStatus.FAILED: "bold red",
    RunStatus.CANCELLED: "bright_black",
    "VALID": "green",
    "INVALID": "bold red",
}
# Progress columns: (heading, the phase whose states it counts).
PROGRESS_COLUMNS = (
    ("waiting", Phase.WAITING),
    ("running", Phase.RUNNING),
    ("succeeded", Phase.SUCCESS),
    ("pruned", Phase.PRUNED),
    ("retried", Phase.RETRIED),
    ("errored", Phase.ERRORED),
    ("cancelled", Phase.CANCELLED),
)
FANOUT_SHOWN = 5  # siblings of one node shown under a parent before the rest are summarised


def error(message: str) -> None:
    """One line on stderr, whatever the terminal width."""
    sys.stderr.write("error: " + " ".join(message.split()) + "\n")
    sys.stderr.flush()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def compact(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)


def when(iso: str | None) -> str:
    """`2024-05-01T12:00:03.123456` (UTC) → `2024-05-01 12:00:03`."""
    return iso.replace("T", " ")[:19] if iso else "-"


def duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def state_duration(state: Mapping[str, Any]) -> str | None:
    if not state.get("started_at") or not state.get("finished_at"):
        return None
    delta = datetime.fromisoformat(state["finished_at"]) - datetime.fromisoformat(state["started_at"])
    return duration(max(delta.total_seconds(), 0.0))


# -- graphs -------------------------------------------------------------------------------------


def graph_list(templates: list[dict[str, Any]]) -> RenderableType:
    if not templates:
        return Text("No graphs in this namespace.")
    table = Table("name", "version", "status", "nodes", "problems", "updated (UTC)")
    for graph in templates:
        problems = len(graph.get("validation_errors") or [])
        table.add_row(
            graph["name"],
            str(graph.get("version", "")),
            status_text(graph["validation_status"]),
            str(len(graph.get("nodes") or [])),
            str(problems) if problems else "",
            when(graph.get("updated_at")),
        )
    return table


def validation_report(graph: Mapping[str, Any]) -> RenderableType:
    status = graph["validation_status"]
    lines: list[RenderableType] = [
        Text.assemble("graph ", (graph["name"], "bold"), f" version {graph.get('version', '?')}: ", status_text(status))
    ]
    lines += [Text(f"  error: {e}", style="red") for e in graph.get("validation_errors") or []]
    lines += [Text(f"  warning: {w}", style="yellow") for w in graph.get("validation_warnings") or []]
    return Group(*lines)


def graph_detail(graph: Mapping[str, Any]) -> RenderableType:
    nodes = Table("identifier", "node", "next nodes", "unites", "inputs", title="Nodes", title_justify="left")
    for node in graph.get("nodes") or []:
        unites = node.get("unites")
        nodes.add_row(
            node["identifier"],
            f"{node['node_name']}" + (f" ({node['namespace']})" if node.get("namespace") != graph["namespace"] else ""),
            ", ".join(node.get("next_nodes") or []),
            f"{unites['identifier']} ({unites.get('strategy', 'ALL_SUCCESS')})" if unites else "",
            "\n".join(f"{k} = {v}" for k, v in (node.get("inputs") or {}).items()),
        )
    policy = graph.get("retry_policy") or {}
    store = graph.get("store_config") or {}
    facts = Table.grid(padding=(0, 2))
    facts.add_row("retry policy", ", ".join(f"{k}={v}" for k, v in policy.items()) or "-")
    facts.add_row("store keys required", ", ".join(store.get("required_keys") or []) or "-")
    facts.add_row(
        "store defaults", ", ".join(f"{k}={v}" for k, v in (store.get("default_values") or {}).items()) or "-"
    )
    facts.add_row("secrets", ", ".join(sorted(graph.get("secrets") or {})) or "-")  # names only, never values
    facts.add_row("triggers", ", ".join(t["value"]["expression"] for t in graph.get("triggers") or []) or "-")
    facts.add_row("updated (UTC)", when(graph.get("updated_at")))
    return Group(validation_report(graph), facts, nodes)


# -- runs ---------------------------------------------------------------------------------------


def run_list(runs: list[dict[str, Any]], total: int) -> RenderableType:
    if not runs:
        return Text("No runs match.")
    table = Table(
        "run id",
        "graph",
        "status",
        "succeeded",
        "pending",
        "errored",
        "retried",
        "cancelled",
        "total",
        "created (UTC)",
        "duration",
        caption=f"{len(runs)} of {total} runs, newest first" if total > len(runs) else None,
    )
    for run in runs:
        table.add_row(
            run["run_id"],
            run["graph_name"],
            status_text(run["status"]),
            str(run["success_count"]),
            str(run["pending_count"]),
            str(run["errored_count"]),
            str(run["retried_count"]),
            str(run.get("cancelled_count", 0)),
            str(run["total_count"]),
            when(run.get("created_at")),
            run_duration(run),
        )
    return table


def run_duration(run: Mapping[str, Any]) -> str:
    """How long the run took, or has been going (`…` marks a run still going); `-` from an older server."""
    took = run.get("duration_ms")
    if took is None:
        return "-"
    return duration(took / 1000) + ("" if run.get("finished_at") else " …")


def run_header(run: Mapping[str, Any], elapsed: float | None = None) -> Text:
    text = Text.assemble("run ", (run["run_id"], "bold"), " of graph ", (run["graph_name"], "bold"), "  ")
    text.append_text(status_text("RUNNING" if run["status"] == RunStatus.PENDING else run["status"]))
    counts = f"  {run['total_count']} states: {run['success_count']} succeeded, {run['pending_count']} pending, "
    text.append(counts + f"{run['errored_count']} errored, {run['retried_count']} retried")
    if run.get("cancelled_count"):
        text.append(f", {run['cancelled_count']} cancelled")
    if elapsed is not None:
        text.append(f"  elapsed {duration(elapsed)}")
    elif run.get("duration_ms") is not None:
        text.append(("  took " if run.get("finished_at") else "  running for ") + duration(run["duration_ms"] / 1000))
    used = usage_text(run.get("usage"))
    if used:
        text.append(f"\nusage: {used}")
    limits = [f"priority {run['priority']}"] if run.get("priority") else []
    budget = run.get("budget") or {}
    if budget:
        parts = [f"{budget['tokens']:,} tokens"] if budget.get("tokens") is not None else []
        parts += [cost(budget["cost_usd"])] if budget.get("cost_usd") is not None else []
        limits.append("budget " + ", ".join(parts))
    if limits:
        text.append("\n" + ", ".join(limits))
    if run.get("parent_run_id"):  # a child run (a newer server's field)
        text.append(f"\nchild run of run {run['parent_run_id']} (state {run.get('parent_state_id')})")
    if run.get("cancel_reason"):
        text.append(f"\ncancelled: {run['cancel_reason']}", style=STATUS_STYLE[RunStatus.CANCELLED])
    for warning in run.get("warnings") or []:
        text.append(f"\nwarning: {warning}", style="bold yellow")
    return text


def progress_view(progress: Mapping[str, Any], elapsed: float) -> RenderableType:
    """The live view of `trigger --wait`: the run's counts, then one row per node (fan-out = its total)."""
    table = Table("node", *(heading for heading, _ in PROGRESS_COLUMNS), "total")
    for node in progress.get("nodes") or []:
        counts: dict[str, int] = node["counts"]
        # A status this CLI does not know (a newer server's) has no phase: it counts only in the total.
        cells = [sum(n for s, n in counts.items() if PHASE.get(s) == phase) for _, phase in PROGRESS_COLUMNS]
        styled = [
            Text(str(n) if n else "", style=PHASE_STYLE[phase] if n else "")
            for n, (_, phase) in zip(cells, PROGRESS_COLUMNS, strict=True)
        ]
        table.add_row(f"{node['identifier']} ({node['node_name']})", *styled, str(sum(counts.values())))
    return Group(run_header(progress, elapsed), table)


def run_result(
    run: Mapping[str, Any], states: list[dict[str, Any]], terminal: set[str] | None, elapsed: float
) -> RenderableType:
    """After `trigger --wait`: how the run ended, the outputs of its last nodes, and every error."""
    parts: list[RenderableType] = [
        Text.assemble("run ", (run["run_id"], "bold"), " ", status_text(run["status"]), f" after {duration(elapsed)}")
    ]
    finals = [
        s for s in states if s["status"] == StateStatus.SUCCESS and (terminal is None or s["identifier"] in terminal)
    ]
    if terminal is None:  # graph unreadable: the last states are those no other state descends from
        parents = {direct_parent(s) for s in states}
        finals = [s for s in finals if s["state_id"] not in parents]
    if finals:
        table = Table("node", "state id", "outputs", title="Outputs", title_justify="left")
        for state in finals:
            table.add_row(state["identifier"], state["state_id"], compact(state.get("outputs") or {}))
        parts.append(table)
    failed = [s for s in states if s["status"] in FAILED]
    if failed:
        table = Table("node", "state id", "status", "error", title="Errors", title_justify="left")
        for state in failed:
            table.add_row(
                state["identifier"], state["state_id"], status_text(state["status"]), state.get("error") or ""
            )
        parts.append(table)
    return Group(*parts)


def direct_parent(state: Mapping[str, Any]) -> str | None:
    """`parents` maps each ancestor's identifier to its state id, root first: the last is the parent."""
    parents = list((state.get("parents") or {}).values())
    return parents[-1] if parents else None


def state_label(state: Mapping[str, Any], child_runs: Iterable[Mapping[str, Any]] = ()) -> Text:
    """One state's line; `child_runs` are the runs it started (its node names a graph), one per line."""
    label = Text.assemble((state["identifier"], "bold"), f" ({state['node_name']}) ", status_text(state["status"]))
    label.append(f"  {state['state_id']}", style="dim")
    facts = [f"attempts {state.get('attempts', 0)}"]
    if state.get("retry_count"):
        facts.append(f"retry #{state['retry_count']}")
    took = state_duration(state)
    if took:
        facts.append(took)
    if state.get("runtime_name"):
        facts.append(f"on {state['runtime_name']}")
    used = usage_text(state.get("usage"))
    if used:
        facts.append(f"used {used}")
    label.append("  " + ", ".join(facts))
    if state.get("waiting_for"):  # a newer server's field: older ones never send it
        label.append(f"  waiting for signal {state['waiting_for']}", style="yellow")
    if state.get("error"):
        label.append("  " + " ".join(str(state["error"]).split()), style="red")
    for child in child_runs:
        label.append("\n  child run ")
        label.append(child["run_id"], style="bold")
        label.append(f" of graph {child['graph_name']} ")
        label.append_text(status_text("RUNNING" if child["status"] == RunStatus.PENDING else child["status"]))
    return label


def run_tree(
    run: Mapping[str, Any],
    states: list[dict[str, Any]],
    show_all: bool = False,
    nodes: list[dict[str, Any]] | None = None,
) -> RenderableType:
    """The run as a tree of states, each under the one it came from, fan-outs summarised past a few;
    then every failed state, whatever its parents' status and however large the fan-out; then, when
    the run reported any, its usage per node (`nodes`: the run's progress nodes)."""
    parts: list[RenderableType] = [_state_tree(run, states, show_all)]
    failed = [s for s in states if s["status"] in FAILED]
    if failed:
        parts.append(failed_states(failed))
    if nodes and usage_text(run.get("usage")):
        parts.append(usage_by_node(nodes, run["usage"]))
    return parts[0] if len(parts) == 1 else Group(*parts)


USAGE_COUNTS = (("input_tokens", "in"), ("output_tokens", "out"), ("requests", "requests"))


def usage_text(usage: Mapping[str, Any] | None) -> str | None:
    """Usage in one line, e.g. ``1,200 in + 80 out tokens, 2 requests, $0.0031``; None when nothing was used."""
    if not usage or not any(usage.get(name) for name in ("input_tokens", "output_tokens", "requests", "cost_usd")):
        return None
    parts = [f"{usage.get('input_tokens') or 0:,} in + {usage.get('output_tokens') or 0:,} out tokens"]
    if usage.get("requests"):
        parts.append(f"{usage['requests']:,} request{'' if usage['requests'] == 1 else 's'}")
    if usage.get("cost_usd"):
        parts.append(cost(usage["cost_usd"]))
    return ", ".join(parts)


def cost(dollars: float) -> str:
    """Dollars with the digits that matter: ``$12.34``, ``$0.0031``."""
    return f"${dollars:,.2f}" if dollars >= 1 else f"${dollars:.4g}"


def usage_by_node(nodes: list[dict[str, Any]], total: Mapping[str, Any]) -> RenderableType:
    """The run's usage per node (all its attempts, failed ones too) and in total."""
    table = Table("node", "input tokens", "output tokens", "requests", "cost", title="Usage", title_justify="left")

    def row(label: str, usage: Mapping[str, Any]) -> list[str]:
        counts = [f"{usage.get(name) or 0:,}" for name, _ in USAGE_COUNTS]
        return [label, *counts, cost(usage.get("cost_usd") or 0.0)]

    for node in nodes:
        if usage_text(node.get("usage")):
            table.add_row(*row(f"{node['identifier']} ({node['node_name']})", node["usage"]))
    table.add_row(*row("total", total), style="bold")
    return table


def failed_states(failed: list[dict[str, Any]]) -> RenderableType:
    """One row per failed state: node, id, attempts, where it ran, its error."""
    table = Table(
        "node",
        "state id",
        "status",
        "attempts",
        "runtime",
        "error",
        title=f"Failed states ({len(failed)})",
        title_justify="left",
    )
    for state in failed:
        table.add_row(
            f"{state['identifier']} ({state['node_name']})",
            state["state_id"],
            status_text(state["status"]),
            f"{state.get('attempts', 0)}" + (f", retry #{state['retry_count']}" if state.get("retry_count") else ""),
            _runtime(state),
            Text(" ".join(str(state.get("error") or "").split()), style="red"),
        )
    return table


def _runtime(state: Mapping[str, Any]) -> str:
    name, instance = state.get("runtime_name"), state.get("runtime_instance")
    return f"{name} ({instance})" if name and instance else name or "-"


def _state_tree(run: Mapping[str, Any], states: list[dict[str, Any]], show_all: bool) -> Tree:
    ids = {s["state_id"] for s in states}
    # A state on the way to a failure is always shown, so that each failure hangs in its place.
    leads_to_failure = {a for s in states if s["status"] in FAILED for a in (s.get("parents") or {}).values()}
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for state in states:
        parent = direct_parent(state)
        children[parent if parent in ids else None].append(state)
    tree = Tree(run_header(run))
    child_runs: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for child in run.get("child_runs") or []:  # a newer server's field
        child_runs[child["parent_state_id"]].append(child)

    def add(branch: Tree, parent: str | None) -> None:
        for group in _by_identifier(children.get(parent, [])):
            shown = group if show_all else _worth_showing(group, leads_to_failure)
            for state in shown:
                add(branch.add(state_label(state, child_runs[state["state_id"]])), state["state_id"])
            hidden = [s for s in group if s not in shown]
            if hidden:
                counts = _count_statuses(hidden)
                branch.add(
                    Text(
                        f"… {len(hidden)} more '{group[0]['identifier']}' states: {counts} (--all shows them)",
                        style="dim",
                    )
                )

    add(tree, None)
    return tree


def _by_identifier(states: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for state in states:
        groups.setdefault(state["identifier"], []).append(state)
    return list(groups.values())


def _worth_showing(group: list[dict[str, Any]], leads_to_failure: set[str]) -> list[dict[str, Any]]:
    """Everything that did not succeed or leads to a failure, then successes up to FANOUT_SHOWN in all."""
    if len(group) <= FANOUT_SHOWN:
        return group
    keep = {id(s) for s in group if s["status"] != StateStatus.SUCCESS or s["state_id"] in leads_to_failure}
    for state in group:
        if len(keep) >= FANOUT_SHOWN:
            break
        keep.add(id(state))
    return [s for s in group if id(s) in keep]


def _count_statuses(states: Iterable[Mapping[str, Any]]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for state in states:
        counts[state["status"]] += 1
    return ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))


# -- states -------------------------------------------------------------------------------------


def state_detail(state: Mapping[str, Any]) -> RenderableType:
    """A state for a person: never a secret value (states carry none; the graph holds them encrypted)."""
    facts = Table.grid(padding=(0, 2))
    facts.add_row("state", Text(state["state_id"], style="bold"))
    facts.add_row("status", status_text(state["status"]))
    facts.add_row("node", f"{state['identifier']} ({state['node_name']}, namespace {state['namespace']})")
    facts.add_row("run", f"{state['run_id']} of graph {state['graph_name']}")
    facts.add_row("attempts", f"{state.get('attempts', 0)} (retry count {state.get('retry_count', 0)})")
    facts.add_row("runtime", _runtime(state))
    facts.add_row("created (UTC)", when(state.get("created_at")))
    facts.add_row("started (UTC)", when(state.get("started_at")))
    facts.add_row(
        "finished (UTC)", when(state.get("finished_at")) + (f"  took {d}" if (d := state_duration(state)) else "")
    )
    parents = state.get("parents") or {}
    facts.add_row("parents", ", ".join(f"{k}={v}" for k, v in parents.items()) or "- (root)")
    parts: list[RenderableType] = [facts, _mapping_table("Inputs", state.get("inputs") or {})]
    parts.append(_mapping_table("Outputs", state.get("outputs") or {}))
    if state.get("data"):
        parts.append(_mapping_table("Data", state["data"]))
    if state.get("error"):
        parts.append(Text.assemble(("Error: ", "bold red"), str(state["error"])))
    if state.get("traceback"):
        parts.append(Text.assemble(("Traceback:\n", "bold red"), str(state["traceback"]).rstrip()))
    return Group(*parts)


def _mapping_table(title: str, values: Mapping[str, Any]) -> RenderableType:
    if not values:
        return Text(f"{title}: -")
    table = Table("key", "value", title=title, title_justify="left")
    for key, value in values.items():
        table.add_row(key, value if isinstance(value, str) else compact(value))
    return table
