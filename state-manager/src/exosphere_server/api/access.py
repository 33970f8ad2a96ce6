"""Who may call which route: the one table of roles per route, and the checks that apply it.

Every `/v0` route and every dashboard page or call names here the roles that may call it (`admin` may
call everything) and, when it changes something people answer for, the action the audit log records.
A route without an entry makes the server refuse to start (`check_every_route_has_a_rule`), so a new
route is one line here. A refused call is a `403` naming the roles it needed.

A key limited to one namespace may call only routes about that namespace (the namespace in the path);
routes marked `across_namespaces` show such a key its own namespace only (the dashboard's list).

Example::

    rule = RULES["api.run_routes.trigger"]          # Rule(roles=OPERATE, audit='trigger')
    refusal(Principal("key_1", "ci", "viewer"), rule, "api.run_routes.trigger", "etl")
    # 'trigger needs the operator or admin role; key ci (key_1) has the viewer role'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request
from fastapi.routing import APIRoute, APIRouter

from exosphere_server.engine.keys import Principal

VIEW = frozenset({"admin", "operator", "viewer"})
OPERATE = frozenset({"admin", "operator"})
RUNTIME = frozenset({"admin", "runtime"})
# Prune and re-enqueue-after: the signals a node raises (sent by its runtime), also sent by operators.
SIGNAL = frozenset({"admin", "operator", "runtime"})
ADMIN = frozenset({"admin"})
ROLE_ORDER = ("viewer", "runtime", "operator", "admin")  # how a refusal lists the roles


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str]
    audit: str | None = None  # the action the audit log records when an admin or operator succeeds
    across_namespaces: bool = False  # not about one namespace, yet open to namespace keys (filtered)


# Keyed by the route function, `<module below exosphere_server>.<function>`.
RULES: dict[str, Rule] = {
    # graphs and nodes
    "api.graph_routes.upsert_graph": Rule(ADMIN, audit="graph-upsert"),
    "api.graph_routes.get_graph": Rule(VIEW),
    "api.graph_routes.list_graphs": Rule(VIEW),
    "api.graph_routes.register_nodes": Rule(RUNTIME),
    "api.graph_routes.list_nodes": Rule(VIEW | RUNTIME),
    "api.graph_routes.list_namespaces": Rule(VIEW),
    # runs
    "api.run_routes.trigger": Rule(OPERATE, audit="trigger"),
    "api.run_routes.trigger_many": Rule(OPERATE, audit="trigger-many"),
    "api.run_routes.cancel_run": Rule(OPERATE, audit="cancel"),
    "api.signal_routes.send_signal": Rule(OPERATE, audit="signal"),
    "api.run_routes.list_runs": Rule(VIEW),
    "api.run_routes.get_run": Rule(VIEW),
    "api.run_routes.run_events": Rule(VIEW),
    "api.run_routes.get_run_states": Rule(VIEW),
    "api.run_routes.run_graph": Rule(VIEW),
    "api.run_routes.node_details": Rule(VIEW),
    "api.inspect_routes.get_state": Rule(VIEW),
    "api.inspect_routes.get_state_payload": Rule(VIEW),
    "api.inspect_routes.run_progress": Rule(VIEW),
    # states: what runtimes do, then what operators do
    "api.state_routes.enqueue": Rule(RUNTIME),
    "api.state_routes.executed_many": Rule(RUNTIME),
    "api.state_routes.executed": Rule(RUNTIME),
    "api.state_routes.errored": Rule(RUNTIME),
    "api.state_routes.heartbeat": Rule(RUNTIME),
    "api.state_routes.release": Rule(RUNTIME),
    "api.state_routes.secrets": Rule(RUNTIME),
    "api.state_routes.wait_for_signal": Rule(RUNTIME),
    "api.stream_routes.append_stream": Rule(RUNTIME),
    "api.stream_routes.state_stream": Rule(VIEW | RUNTIME),
    "api.state_routes.prune": Rule(SIGNAL, audit="prune"),
    "api.state_routes.re_enqueue_after": Rule(SIGNAL, audit="re-enqueue-after"),
    "api.state_routes.rate_limited": Rule(SIGNAL, audit="rate-limited"),
    "api.state_routes.manual_retry": Rule(OPERATE, audit="manual-retry"),
    # named limits
    "api.limit_routes.set_limit": Rule(ADMIN, audit="limit-set"),
    "api.limit_routes.delete_limit": Rule(ADMIN, audit="limit-delete"),
    "api.limit_routes.get_limit": Rule(VIEW | RUNTIME),
    "api.limit_routes.list_limits": Rule(VIEW | RUNTIME),
    # keys and the audit log
    "api.key_routes.create_key": Rule(ADMIN, audit="key-create"),
    "api.key_routes.list_keys": Rule(ADMIN),
    "api.key_routes.revoke_key": Rule(ADMIN, audit="key-revoke"),
    "api.key_routes.audit_log": Rule(ADMIN),
    # dashboard pages and the JSON calls they make
    "dashboard.routes.namespaces_page": Rule(VIEW, across_namespaces=True),
    "dashboard.routes.namespace_page": Rule(VIEW),
    "dashboard.routes.graph_page": Rule(VIEW),
    "dashboard.routes.runs_page": Rule(VIEW),
    "dashboard.routes.run_page": Rule(VIEW),
    "dashboard.routes.state_page": Rule(VIEW),
    "dashboard.routes.state_payload": Rule(VIEW),
    "dashboard.routes.audit_page": Rule(ADMIN),
    "dashboard.api.run_progress": Rule(VIEW),
    "dashboard.api.run_events": Rule(VIEW),
    "dashboard.api.run_timeline": Rule(VIEW),
    "dashboard.api.node_states": Rule(VIEW),
    "dashboard.api.attempts": Rule(VIEW),
    "dashboard.api.state_stream": Rule(VIEW),
    "dashboard.api.retry": Rule(OPERATE, audit="manual-retry"),
    "dashboard.api.cancel": Rule(OPERATE, audit="cancel"),
    "dashboard.api.send_signal": Rule(OPERATE, audit="signal"),
}

NAMESPACE_PARAMS = ("namespace_name", "namespace")  # the path parameter naming the namespace: /v0, dashboard
# Path parameters that name what an action was done to, most specific first, for the audit log.
TARGET_PARAMS = ("key_id", "state_id", "run_id", "graph_name")


def route_id(endpoint: Callable[..., Any]) -> str:
    return f"{endpoint.__module__.removeprefix('exosphere_server.')}.{endpoint.__name__}"


def check_every_route_has_a_rule(routers: Iterable[APIRouter], public: Iterable[str] = ()) -> None:
    """Raise at start-up for a route this table forgets (or an entry naming no route): a route nobody
    classified must not be served with a guess."""
    seen = {route_id(r.endpoint) for router in routers for r in router.routes if isinstance(r, APIRoute)}
    seen -= set(public)
    missing, unknown = sorted(seen - RULES.keys()), sorted(RULES.keys() - seen)
    if missing or unknown:
        raise RuntimeError(f"api/access.py RULES: routes without a rule {missing}; rules without a route {unknown}")


def rule_of(request: Request) -> tuple[str, Rule]:
    route = request.scope.get("route")
    name = route_id(route.endpoint) if isinstance(route, APIRoute) else "?"
    rule = RULES.get(name)
    if rule is None:  # check_every_route_has_a_rule makes this unreachable for served routes
        raise HTTPException(status_code=403, detail=f"No access rule for {name}")
    return name, rule


def namespace_of(request: Request) -> str | None:
    return next((str(request.path_params[p]) for p in NAMESPACE_PARAMS if p in request.path_params), None)


def _roles_text(roles: frozenset[str]) -> str:
    names = [role for role in ROLE_ORDER if role in roles]
    return " or ".join(names)


def refusal(principal: Principal, rule: Rule, name: str, namespace: str | None) -> str | None:
    """Why `principal` may not call the route, or None when it may."""
    who = f"key {principal.name} ({principal.key_id})"
    action = rule.audit or name.rsplit(".", 1)[-1].replace("_", "-")
    if principal.role not in rule.roles:
        return f"{action} needs the {_roles_text(rule.roles)} role; {who} has the {principal.role} role"
    if principal.namespace is None or rule.across_namespaces:
        return None
    if namespace is None:
        limited = f"{who} is limited to namespace {principal.namespace!r}"
        return f"{action} is not about one namespace and needs a key for every namespace; {limited}"
    if namespace != principal.namespace:
        return f"{who} is limited to namespace {principal.namespace!r}, not {namespace!r}"
    return None


@dataclass(frozen=True)
class PendingAudit:
    """What the audit trail records if the call succeeds (`audit_trail.py`)."""

    principal: Principal
    action: str
    namespace: str | None
    target: str


AUDIT_SCOPE_KEY = "exosphere.audit"


def authorize(request: Request, principal: Principal) -> None:
    """403 unless `principal` may call this route; notes the call for the audit log when it is audited."""
    name, rule = rule_of(request)
    namespace = namespace_of(request)
    reason = refusal(principal, rule, name, namespace)
    if reason is not None:
        raise HTTPException(status_code=403, detail=reason)
    request.state.principal = principal
    if rule.audit and principal.role in OPERATE:
        target = ", ".join(f"{p} {request.path_params[p]}" for p in TARGET_PARAMS if p in request.path_params)
        request.scope[AUDIT_SCOPE_KEY] = PendingAudit(principal, rule.audit, namespace, target)


def principal_of_request(request: Request) -> Principal:
    """The caller, once `authorize` let it through."""
    principal: Principal = request.state.principal
    return principal
