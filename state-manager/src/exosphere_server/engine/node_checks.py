"""Checks of a graph against the nodes its runtimes registered (PROTOCOL §4.2.1, DESIGN §8).

A graph may be upserted before any runtime has registered its nodes, so a missing registration is
a *warning* (the graph stays usable; states of that node wait), while a registered schema that
contradicts the graph is an *error*. The same function runs at upsert and whenever a node
registers, so the graph's status always reflects the schemas currently known.

Example::

    report = check_registrations(shape, {("Split", "demo"): split_node}, secret_names={"api_key"})
    report.errors    # ["Input 'text' of node 'split' (Split in namespace demo) is not a string ..."]
    report.warnings  # ["Node Sum in namespace demo is not registered yet; ..."]
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from exospherehost.models import GraphNodeModel

from .graph_shape import GraphShape
from .placeholders import OutputRef, PlaceholderError, parse_template

# Keywords that make a property more than a plain string (a union, a reference, a combination);
# the engine hands every input over as a plain string, so such fields cannot be fed.
_NOT_PLAIN = ("anyOf", "oneOf", "allOf", "$ref", "not")


@dataclass
class RegisteredNode:
    """A node class as a runtime registered it: JSON schemas of its inputs and outputs, and its secrets."""

    name: str
    namespace: str
    inputs_schema: dict[str, Any]
    outputs_schema: dict[str, Any]
    secrets: list[str] = field(default_factory=list)


@dataclass
class RegistrationReport:
    """``errors`` make the graph INVALID; ``warnings`` list registrations still awaited."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_registrations(
    shape: GraphShape,
    registered: Mapping[tuple[str, str], RegisteredNode],
    secret_names: Collection[str],
) -> RegistrationReport:
    """Compare every graph node with its registration, keyed by ``(node_name, namespace)``."""
    report = RegistrationReport()
    warned: set[str] = set()  # a set beside the list: one membership test per node stays O(1)
    for ident, node in shape.nodes.items():
        report.errors.extend(_output_reference_errors(ident, node, shape, registered))
        if node.graph_name is not None:
            continue  # it runs a graph, no registered node (`child_graph_checks`)
        registration = registered.get((node.node_name, node.namespace))
        if registration is None:
            warning = (
                f"Node {node.node_name} in namespace {node.namespace} is not registered yet; "
                "its states wait until a runtime registers it"
            )
            if warning not in warned:
                warned.add(warning)
                report.warnings.append(warning)
        else:
            label = f"node '{ident}' ({node.node_name} in namespace {node.namespace})"
            report.errors.extend(_input_schema_errors(node, registration, label))
            report.errors.extend(
                f"Secret '{secret}' needed by {label} is not defined in the graph template"
                for secret in registration.secrets
                if secret not in secret_names
            )
    return report


def _input_schema_errors(node: GraphNodeModel, registration: RegisteredNode, label: str) -> list[str]:
    errors: list[str] = []
    properties: dict[str, Any] = registration.inputs_schema.get("properties", {})
    required = registration.inputs_schema.get("required")
    for name, schema in properties.items():
        if not is_plain_string(schema):
            errors.append(f"Input '{name}' of {label} is not a string in the registered inputs schema")
        elif name not in node.inputs and not _may_be_omitted(name, schema, required):
            errors.append(f"Input '{name}' of {label} is required by the registered node but missing from the graph")
    return errors


def _may_be_omitted(name: str, schema: Mapping[str, Any], required: object) -> bool:
    # A schema without a "required" list is read conservatively (every field needed): pydantic
    # always lists required fields, and only its defaulted fields are optional.
    return "default" in schema or (isinstance(required, list) and name not in required)


def _output_reference_errors(
    ident: str, node: GraphNodeModel, shape: GraphShape, registered: Mapping[tuple[str, str], RegisteredNode]
) -> list[str]:
    errors: list[str] = []
    for input_name, value in node.inputs.items():
        try:
            refs = parse_template(value).refs
        except PlaceholderError:
            continue  # already reported by the structural analysis
        for ref in dict.fromkeys(refs):
            if not isinstance(ref, OutputRef) or ref.identifier not in shape.nodes:
                continue
            source = shape.nodes[ref.identifier]
            if source.graph_name is not None:
                continue  # a child graph's outputs are whatever its run ends with
            registration = registered.get((source.node_name, source.namespace))
            if registration is None:
                continue  # checked again when that node registers
            outputs: dict[str, Any] = registration.outputs_schema.get("properties", {})
            where = f"Input '{input_name}' of node '{ident}' reads '{ref}' but"
            owner = f"{source.node_name} in namespace {source.namespace}"
            if ref.field not in outputs:
                errors.append(f"{where} {owner} has no output field '{ref.field}'")
            elif not is_plain_string(outputs[ref.field]):
                errors.append(f"{where} output field '{ref.field}' of {owner} is not a string")
    return errors


def is_plain_string(schema: object) -> bool:
    """True for a JSON schema property that is exactly a string (``{"type": "string", ...}``), not a union."""
    return (
        isinstance(schema, Mapping)
        and schema.get("type") == "string"
        and not any(keyword in schema for keyword in _NOT_PLAIN)
    )
