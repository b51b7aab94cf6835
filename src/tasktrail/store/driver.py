"""The store's writes handed to the driver (``sqlite3``, psycopg) instead of SQLAlchemy's
execution.

Running a compiled statement through SQLAlchemy's ``Connection.execute`` costs more than
the driver's own call: about three times what SQLite spends on a progress report, and a
quarter to a third of a PostgreSQL worker's CPU per task. On SQLite that time is spent
inside the file's one write lock, which every writer in every process waits for; on
PostgreSQL it is spent on the two cores the server needs too. Either way it, not the
database, set how fast workers drained a queue.

These statements are still built and compiled by SQLAlchemy, once each, and their values
converted both ways by SQLAlchemy's own type processors; only the call is the driver's.
An engine whose statements someone watches (``echo``, or listeners of statement events,
such as a tracer's), whose statements SQLAlchemy rewrites at each execution (a
``schema_translate_map``), or whose driver is another (``aiosqlite``, psycopg's async
connection under an async engine, psycopg2), gets SQLAlchemy's execution instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ReturnsRows

Convert = Callable[[Any], Any]
Parameters = tuple[Any, ...] | dict[str, Any]

#: The SQLAlchemy drivers whose connections take a statement directly.
_DIRECT_DRIVERS = frozenset({"pysqlite", "psycopg"})


@dataclass(frozen=True)
class DriverStatement:
    """A statement compiled for a driver: its text; per parameter, its name, the key of
    its value and SQLAlchemy's conversion of it; the names and types of the columns it
    returns."""

    text: str
    #: The parameters' names in the text, in its order.
    names: tuple[str, ...]
    #: The key of each parameter's value among those given to ``parameters``.
    keys: tuple[str, ...]
    processors: tuple[Convert | None, ...]
    #: The values of the parameters that the statement carries itself (its literals).
    fixed: Mapping[str, Any]
    #: Whether the driver takes the parameters by name (psycopg), not by position.
    named: bool
    columns: tuple[str, ...]
    _types: tuple[sa.types.TypeEngine[Any], ...] = ()
    # The conversion of each column, chosen at the first rows (see ``rows``).
    _loaders: list[tuple[Convert | None, ...]] = field(default_factory=list, compare=False)

    def parameters(self, values: Mapping[str, Any]) -> Parameters:
        """The driver's parameters for ``values`` (a value per parameter name, but for the
        statement's own), converted as SQLAlchemy would."""
        fixed = self.fixed
        given = (fixed[key] if key in fixed else values[key] for key in self.keys)
        converted = (
            value if process is None else process(value)
            for process, value in zip(self.processors, given, strict=True)
        )
        return dict(zip(self.names, converted, strict=True)) if self.named else tuple(converted)

    def rows(self, dialect: Dialect, cursor: Any) -> list[dict[str, Any]]:
        """The rows the driver's ``cursor`` holds after running this statement, by column
        name, converted as SQLAlchemy would."""
        if not self.columns:
            return []  # nothing to fetch (psycopg would raise)
        rows = cursor.fetchall()
        if rows and not self._loaders:
            # As SQLAlchemy does, by the types the driver says the columns have (a
            # PostgreSQL float's conversion depends on its type); once, since psycopg
            # builds its description anew at each look.
            codes = [column[1] for column in cursor.description]
            self._loaders.append(
                tuple(
                    type_.dialect_impl(dialect).result_processor(dialect, code)
                    for type_, code in zip(self._types, codes, strict=True)
                )
            )
        return [
            {
                name: value if load is None else load(value)
                for name, load, value in zip(self.columns, self._loaders[0], row, strict=True)
            }
            for row in rows
        ]


@lru_cache(maxsize=256)
def compiled_for_driver(statement: sa.Executable, dialect: Dialect) -> DriverStatement | None:
    """``statement`` (built once, as the store's statements are) compiled for ``dialect``'s
    driver; None when it needs SQLAlchemy at each execution (a parameter expanded or
    rendered then), and SQLAlchemy should run it."""
    assert isinstance(statement, sa.ClauseElement)
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    if compiled.post_compile_params or compiled.literal_execute_params:
        return None
    escaped = compiled.escaped_bind_names
    # Each parameter as the statement's text names it, with its value's key (the bind's own
    # name, for a value the caller gives) and its conversion; one entry per rendered name.
    binds = {name: bind for bind, name in compiled.bind_names.items()}
    names = tuple(compiled.positiontup) if compiled.positiontup else tuple(binds)
    returned: list[sa.ColumnElement[Any]] = (
        list(statement.exported_columns) if isinstance(statement, ReturnsRows) else []
    )
    return DriverStatement(
        text=compiled.string,
        names=tuple(escaped.get(name, name) for name in names),
        keys=tuple(binds[name].key for name in names),
        processors=tuple(
            binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
        ),
        fixed={
            binds[name].key: binds[name].effective_value
            for name in names
            if not binds[name].required
        },
        named=not compiled.positional,
        columns=tuple(str(column.key) for column in returned),
        _types=tuple(column.type for column in returned),
    )


def direct(conn: Connection) -> bool:
    """Whether ``conn``'s statements may go to its driver directly: the driver is
    ``sqlite3`` or psycopg's sync connection (not under an async engine), nothing looks at
    the statements (its engine's ``echo``, a listener of SQLAlchemy's statement events on
    the connection or its engine, or of its dialect's ``do_execute``), and SQLAlchemy does
    not rewrite them at each execution (a ``schema_translate_map`` puts the tables in the
    schema it names)."""
    dialect = conn.dialect
    if dialect.is_async or dialect.driver not in _DIRECT_DRIVERS:
        return False
    if conn.get_execution_options().get("schema_translate_map"):
        return False
    events = conn.dispatch
    watched = (
        conn.engine.echo
        or events.before_execute
        or events.after_execute
        or events.before_cursor_execute
        or events.after_cursor_execute
        or dialect.dispatch.do_execute
    )
    return not watched


def execute(
    conn: Connection, statement: DriverStatement, parameters: Parameters
) -> list[dict[str, Any]]:
    """Run ``statement`` on the driver connection under ``conn`` (in ``conn``'s transaction,
    or its own in autocommit mode) to its end: the rows it returned, converted as
    SQLAlchemy would. An error of the driver is raised as SQLAlchemy's, as
    ``conn.execute`` would raise it, and a connection it found lost is invalidated."""
    dialect = conn.dialect
    if not conn.in_transaction():
        # As SQLAlchemy's execution does (autobegin; nothing is sent in autocommit mode):
        # a connection lost under a transaction stays invalid until it is rolled back, so
        # its holder replaces it (see ``kept``), where one lost outside any would reconnect
        # by itself, to a server connection without the holder's autocommit.
        conn.begin()
    dbapi_connection = conn.connection.dbapi_connection
    assert dbapi_connection is not None
    cursor = None
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute(statement.text, parameters)
        return statement.rows(dialect, cursor)
    except dialect.loaded_dbapi.Error as error:
        lost = dialect.is_disconnect(error, dbapi_connection, cursor)
        if lost:
            conn.invalidate(error)  # as SQLAlchemy does: the pool replaces it
        raise sa.exc.DBAPIError.instance(
            statement.text,
            parameters,
            error,
            dialect.loaded_dbapi.Error,
            connection_invalidated=lost,
            dialect=dialect,
        ) from error
    finally:
        if cursor is not None:
            cursor.close()  # the statement is reset: none left in progress at COMMIT
