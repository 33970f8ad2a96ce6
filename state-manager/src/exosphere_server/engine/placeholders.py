"""Input placeholders: ``${{ node.outputs.field }}`` and ``${{ store.key }}`` (PROTOCOL §6.1).

Parsing is separate from rendering so that graph validation can inspect every reference of a
template once, at upsert, and child creation can later fill the same parsed template in.

Example::

    template = parse_template("s3://bucket/${{ store.prefix }}/${{ load.outputs.name }}.json")
    template.refs  # (StoreRef(key='prefix'), OutputRef(identifier='load', field='name'))
    render(template, lambda ref: "x")  # 's3://bucket/x/x.json'
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

OPENER = "${{"
CLOSER = "}}"


class PlaceholderError(ValueError):
    """An input value is not valid placeholder syntax; the message quotes the offending text."""


@dataclass(frozen=True)
class OutputRef:
    """``${{ identifier.outputs.field }}``: an output field of an ancestor node's state."""

    identifier: str
    field: str

    def __str__(self) -> str:
        return f"{self.identifier}.outputs.{self.field}"


@dataclass(frozen=True)
class StoreRef:
    """``${{ store.key }}``: a value of the run's store (or the graph's default for that key)."""

    key: str

    def __str__(self) -> str:
        return f"store.{self.key}"


Ref = OutputRef | StoreRef


@dataclass(frozen=True)
class Template:
    """A parsed input value: literal ``head``, then for each placeholder its reference and the literal tail after it."""

    head: str
    parts: tuple[tuple[Ref, str], ...] = ()

    @property
    def refs(self) -> tuple[Ref, ...]:
        """Every reference, in order of appearance (duplicates kept)."""
        return tuple(ref for ref, _ in self.parts)


@functools.lru_cache(maxsize=4096)
def parse_template(value: str) -> Template:
    """Parse one input value; raise :class:`PlaceholderError` when a placeholder is unclosed or malformed.

    There is no escape for a literal ``${{``; a literal ``}}`` outside placeholders is kept. Parsed once per
    distinct text (a fan-out fills the same templates for thousands of children; a `Template` is frozen).
    """
    head, *pieces = value.split(OPENER)
    parts: list[tuple[Ref, str]] = []
    for piece in pieces:
        end = piece.find(CLOSER)
        if end < 0:
            raise PlaceholderError(f"Placeholder '{OPENER}{piece}' in {value!r} is not closed")
        parts.append((_parse_body(piece[:end], value), piece[end + len(CLOSER) :]))
    return Template(head=head, parts=tuple(parts))


def _parse_body(body: str, value: str) -> Ref:
    names = [name.strip() for name in body.split(".")]
    if all(names):
        # The store check comes first: "store" is a reserved identifier, and upstream reads
        # ``store.outputs.x`` as store key ``x`` (PROTOCOL §6.1).
        if names[0] == "store" and len(names) == 2:
            return StoreRef(key=names[1])
        if names[0] == "store" and len(names) == 3 and names[1] == "outputs":
            return StoreRef(key=names[2])
        if len(names) == 3 and names[1] == "outputs":
            return OutputRef(identifier=names[0], field=names[2])
    raise PlaceholderError(
        f"Invalid syntax string placeholder '{OPENER}{body}{CLOSER}' in {value!r}: "
        f"expected '{OPENER} <node>.outputs.<field> {CLOSER}' or '{OPENER} store.<key> {CLOSER}'"
    )


def render(template: Template, resolve: Callable[[Ref], str]) -> str:
    """Fill every placeholder with ``resolve(ref)``; the resolver raises when a value is missing.

    A non-string value is refused here because node inputs are strings on the wire.
    """
    pieces = [template.head]
    for ref, tail in template.parts:
        value = resolve(ref)
        if not isinstance(value, str):
            raise PlaceholderError(f"Value of '{ref}' is a {type(value).__name__}, not a string")
        pieces.append(value)
        pieces.append(tail)
    return "".join(pieces)
