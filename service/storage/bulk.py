"""Many rows of one statement, sent straight to the driver's ``executemany``.

The journal stores two rows per node run: its event and its ``node_runs`` row. Through
``Connection.execute`` SQLAlchemy builds a parameter dict per row and runs each value
through its type's processors, about half the cost of storing a node run. Here the statement is
compiled by SQLAlchemy once, and each row becomes a tuple (or dict) of driver values in one
pass, converted as the column types convert them (``encoder``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Connection, Dialect, Table
from sqlalchemy.sql.dml import Insert

from service.storage.records import json_serializer
from service.storage.tables import StatusType, UTCDateTime

Encoder = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


def _status(value: StrEnum | str | None) -> str | None:
    return None if value is None else str(value)


def _sqlite_datetime(value: datetime | None) -> str | None:
    """As ``UTCDateTime`` then SQLite's DATETIME would store it: naive UTC text, always with
    microseconds (``2026-05-01 10:00:00.000000``)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = (value if value.tzinfo is UTC else value.astimezone(UTC)).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def _aware_datetime(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def encoder(column_type: Any, dialect: Dialect) -> Encoder:
    """The conversion of a value for a column of ``column_type``, as its bind processing
    does, for the types the journal's rows hold."""
    if isinstance(column_type, UTCDateTime):
        return _sqlite_datetime if dialect.name == "sqlite" else _aware_datetime
    if isinstance(column_type, JSON):
        return json_serializer  # None too: SQLAlchemy's JSON stores it as JSON null
    if isinstance(column_type, StatusType):
        return _status
    return _identity


class BulkInsert:
    """``statement`` (an insert into ``table``, perhaps an upsert) compiled once for ``dialect``
    with ``columns`` bound, in that order; ``execute`` stores rows of those columns."""

    def __init__(
        self, statement: Insert, table: Table, columns: Sequence[str], dialect: Dialect
    ) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(columns))
        self.sql = str(compiled)
        self._positional = compiled.positional
        names = list(compiled.positiontup or []) if compiled.positional else list(compiled.binds)
        unknown = set(names) - set(columns)
        if unknown:  # a bind the rows do not supply: a programming error in the caller
            raise ValueError(f"{statement} binds {sorted(unknown)}, not among {list(columns)}")
        self._fields = [(name, encoder(table.c[name].type, dialect)) for name in names]

    def execute(self, conn: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        """``executemany`` of ``rows`` (mappings with every column), in the transaction of
        ``conn``."""
        fields = self._fields
        params: list[Any]
        if self._positional:
            params = [tuple(encode(row[name]) for name, encode in fields) for row in rows]
        else:
            params = [{name: encode(row[name]) for name, encode in fields} for row in rows]
        if params:
            conn.exec_driver_sql(self.sql, params)
