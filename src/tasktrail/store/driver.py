"""SQLite: the writes a run makes most, handed to the driver inside the write lock.

A write transaction on a SQLite file holds the file's one write lock from ``BEGIN
IMMEDIATE`` to ``COMMIT``, and every other writer, in every process, waits for it. Running a
compiled statement through SQLAlchemy costs about three times what SQLite spends on it, all
of it inside that lock, so the lock, not the two cores, set how fast workers drained a
queue. These statements are still built and compiled by SQLAlchemy, once, and their
parameters converted by SQLAlchemy's own type processors; only the call is the driver's.

An engine whose statements someone watches (``echo``, or listeners of statement events,
such as a tracer's), or whose driver is not ``sqlite3``, gets SQLAlchemy's execution
instead.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase

Convert = Callable[[Any], Any]


@dataclass(frozen=True)
class DriverStatement:
    """A statement compiled for SQLite's driver: its text; per positional parameter, its
    name and SQLAlchemy's conversion of its value; per column it returns, its name and
    SQLAlchemy's conversion of what the driver gives (None: taken as it is)."""

    text: str
    names: tuple[str, ...]
    processors: tuple[Convert | None, ...]
    columns: tuple[str, ...]
    loaders: tuple[Convert | None, ...]
    #: The values of the parameters that the statement carries itself (its literals).
    fixed: Mapping[str, Any]

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The driver's parameters for ``values`` (a value per parameter name, but for the
        statement's own), converted as SQLAlchemy would."""
        fixed = self.fixed
        given = (fixed[name] if name in fixed else values[name] for name in self.names)
        return tuple(
            value if process is None else process(value)
            for process, value in zip(self.processors, given, strict=True)
        )

    def row(self, values: Sequence[Any]) -> dict[str, Any]:
        """A row the driver returned, by column name, converted as SQLAlchemy would."""
        return {
            name: value if load is None else load(value)
            for name, load, value in zip(self.columns, self.loaders, values, strict=True)
        }


@cache
def compiled_for_driver(statement: sa.Executable, dialect: Dialect) -> DriverStatement:
    """``statement`` (built once, as the store's statements are) compiled for ``dialect``'s
    driver, whose parameter style must be positional (SQLite's ``?``)."""
    assert isinstance(statement, sa.ClauseElement)
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    names = tuple(compiled.positiontup or ())
    binds = [compiled.binds[name] for name in names]
    fixed = {n: b.effective_value for n, b in zip(names, binds, strict=True) if not b.required}
    returned: list[sa.ColumnElement[Any]] = (
        list(statement.exported_columns) if isinstance(statement, UpdateBase) else []
    )
    return DriverStatement(
        compiled.string,
        names,
        tuple(bind.type.dialect_impl(dialect).bind_processor(dialect) for bind in binds),
        tuple(str(column.key) for column in returned),
        tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in returned),
        fixed,
    )


def direct(conn: Connection) -> bool:
    """Whether ``conn``'s statements may go to its driver directly: the driver is the
    ``sqlite3`` module (not, say, ``aiosqlite`` under an async engine), and nothing looks at
    the statements (its engine's ``echo``, a listener of SQLAlchemy's statement events on
    the connection or its engine)."""
    if conn.dialect.driver != "pysqlite":
        return False
    events = conn.dispatch
    watched = (
        conn.engine.echo
        or events.before_execute
        or events.after_execute
        or events.before_cursor_execute
        or events.after_cursor_execute
    )
    return not watched


def execute(
    conn: Connection, statement: DriverStatement, parameters: tuple[Any, ...]
) -> tuple[Any, ...] | None:
    """Run ``statement`` on the driver connection under ``conn`` (in ``conn``'s
    transaction) to its end; the first row it returned, as the driver gives it. An error of
    the driver is raised as SQLAlchemy's, as ``conn.execute`` would raise it."""
    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        cursor = driver.execute(statement.text, parameters)
        try:
            row: tuple[Any, ...] | None = cursor.fetchone()
        finally:
            cursor.close()  # the statement is reset, none left in progress at COMMIT
    except sqlite3.Error as error:
        raise sa.exc.DBAPIError.instance(
            statement.text, parameters, error, sqlite3.Error, dialect=conn.dialect
        ) from error
    return row
