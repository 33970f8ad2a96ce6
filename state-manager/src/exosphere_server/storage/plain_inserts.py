"""INSERTs compiled once per set of columns, to run straight on the database driver's connection.

SQLAlchemy spends about 14 us of Python on each execution of even a compiled-and-cached statement
(execution context, parameter processing, result setup, events; on PostgreSQL also a greenlet hop into
its asyncio adaptation and back): more than the database takes to insert the row. The storages run
plain INSERTs given rows as dicts (a trigger's run, root state, audit entry, counts, idempotency key)
on the driver instead; the values still pass through the column types' own bind processors (JSON), and
driver errors are raised as SQLAlchemy's, so callers and the API's error table see no difference.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa


class PlainInsert:
    """An INSERT compiled for one dialect and one set of columns: its SQL, and each row as a tuple.

    Example::

        plain = plain_insert(INSERT_RUN, {"run_id": "r1", ...}, engine.dialect)
        plain.sql, plain.row({"run_id": "r1", ...})  # 'INSERT INTO runs (...) VALUES (...)', ('r1', ...)
    """

    def __init__(self, statement: Any, keys: list[str], dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=keys)
        self.sql: str = compiled.string
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        self.processors = [compiled.binds[name].type.bind_processor(dialect) for name in self.names]
        # Only plain inserts: RETURNING rows, or binds not named by a row, go through SQLAlchemy.
        self.usable = not compiled.effective_returning and set(self.names) <= set(keys)

    def row(self, parameters: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(
            value if process is None else process(value)
            for value, process in zip(map(parameters.__getitem__, self.names), self.processors, strict=True)
        )


# Per statement object (weakly: a statement built for one call goes with it), per dialect and columns.
_plain_inserts: weakref.WeakKeyDictionary[Any, dict[tuple[str, tuple[str, ...]], PlainInsert]] = (
    weakref.WeakKeyDictionary()
)


def plain_insert(statement: Any, parameters: Any, dialect: sa.Dialect) -> PlainInsert | None:
    """The plain path for `statement` with these parameters (a dict, or a list of dicts with the same
    keys), when it has one: None for anything but an INSERT without RETURNING given all its values."""
    if not isinstance(statement, sa.Insert) or not parameters:
        return None
    first = parameters[0] if isinstance(parameters, list) else parameters
    if not isinstance(first, dict):
        return None
    by_columns = _plain_inserts.setdefault(statement, {})
    key = (dialect.name, tuple(first))
    plain = by_columns.get(key)
    if plain is None:
        plain = by_columns[key] = PlainInsert(statement, list(key[1]), dialect)
    return plain if plain.usable else None
