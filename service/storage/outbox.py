"""The webhook outbox's SQL: deliveries are rows of ``webhook_deliveries``.

A delivery is written in the transaction that ends (or interrupts) its run
(``enqueue_deliveries``), so a run never ends without its webhook nor announces an end that
rolled back. ``service.webhooks.delivery`` works the rows off: it claims due ones
(``WebhookOutbox.claim_due``), sends them, and records each attempt (``record_outcome``).

A claim pushes ``next_attempt_at`` past the time it takes to send; a process that dies while
sending leaves rows whose claim lapses, and the next claimer sends them again. Deliveries are
therefore at least once: receivers dedupe by delivery id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, Integer, Table, bindparam, func, insert, literal, select, update
from sqlalchemy import cast as sql_cast

from service.storage.records import DeliveryStatus
from service.storage.tables import Run, RunEvent, StatusType, UTCDateTime, WebhookDelivery, utcnow

if TYPE_CHECKING:  # sql.py writes the outbox rows with this module: no import cycle
    from service.storage.sql import SqlRunStore

__all__ = ["DueDelivery", "WebhookOutbox", "enqueue_deliveries"]

_deliveries = cast(Table, WebhookDelivery.__table__)
_runs = cast(Table, Run.__table__)
_events = cast(Table, RunEvent.__table__)

_now = bindparam("now", type_=UTCDateTime())
_ENQUEUE = insert(_deliveries).from_select(
    ["run_id", "url", "event", "event_seq", "status", "attempts", "next_attempt_at", "created_at"],
    select(
        _runs.c.id,
        _runs.c.webhook_url,
        bindparam("event", type_=_deliveries.c.event.type),
        # Cast: Postgres cannot infer a parameter's type from a SELECT list.
        sql_cast(bindparam("event_seq"), Integer),
        literal(DeliveryStatus.PENDING, StatusType(DeliveryStatus)),
        literal(0, Integer),
        _now,  # due at once
        _now,
    ).where(_runs.c.id == bindparam("run_id"), _runs.c.webhook_url.is_not(None)),
)

_DUE = (
    select(
        _deliveries.c.id,
        _deliveries.c.run_id,
        _deliveries.c.url,
        _deliveries.c.event,
        _deliveries.c.attempts,
        _runs.c.graph,
        _runs.c.created_at,
        _runs.c.started_at,
        _runs.c.finished_at,
        _events.c.data,
    )
    .join(_runs, _runs.c.id == _deliveries.c.run_id)
    .outerjoin(
        _events,
        (_events.c.run_id == _deliveries.c.run_id) & (_events.c.seq == _deliveries.c.event_seq),
    )
    .where(
        _deliveries.c.status == DeliveryStatus.PENDING,
        _deliveries.c.next_attempt_at <= bindparam("now"),
    )
    .order_by(_deliveries.c.next_attempt_at, _deliveries.c.id)
    .limit(bindparam("limit"))
    # Postgres: claimers running at once take different rows and never wait for each other.
    .with_for_update(of=_deliveries, skip_locked=True)
)

_CLAIM = (
    update(_deliveries)
    .where(_deliveries.c.id.in_(bindparam("ids", expanding=True)))
    .values(next_attempt_at=bindparam("until"))
)

_LISTED = (
    "id",
    "event",
    "status",
    "attempts",
    "last_status_code",
    "last_error",
    "next_attempt_at",
    "delivered_at",
    "created_at",
)


def enqueue_deliveries(
    conn: Connection, ends: Sequence[tuple[str, str, int]], now: datetime
) -> None:
    """Queue a pending delivery, due ``now``, of each ``(run_id, event_type, event_seq)`` whose
    run has a ``webhook_url`` (the others are skipped), in the transaction of ``conn``."""
    if ends:
        params = [{"run_id": r, "event": e, "event_seq": s, "now": now} for r, e, s in ends]
        conn.execute(_ENQUEUE, params)


@dataclass(frozen=True)
class DueDelivery:
    """A claimed delivery, with what its payload needs: the run row's fields and the data of
    the event it reports (the run's state at that moment; ``{}`` if the event is gone)."""

    id: int
    run_id: str
    url: str
    event: str
    attempts: int  # made before this one
    graph: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    data: dict[str, Any]


class WebhookOutbox:
    """The deliveries of a ``SqlRunStore``: claim the due ones, record attempts, list them."""

    def __init__(self, store: SqlRunStore) -> None:
        self.store = store

    def claim_due(self, limit: int, now: datetime, claim_seconds: float) -> list[DueDelivery]:
        """Up to ``limit`` pending deliveries due at ``now``, longest due first, each claimed
        for ``claim_seconds``: no claimer takes them again before that (then one may: the
        claimer is presumed dead)."""
        with self.store.transaction() as conn:
            rows = conn.execute(_DUE, {"now": now, "limit": limit}).all()
            if rows:
                until = now + timedelta(seconds=claim_seconds)
                conn.execute(_CLAIM, {"ids": [row.id for row in rows], "until": until})
        return [
            DueDelivery(**{**row._asdict(), "data": row.data if row.data is not None else {}})
            for row in rows
        ]

    def record_outcome(
        self,
        delivery_id: int,
        *,
        delivered: bool,
        status_code: int | None,
        error: str | None,
        next_attempt_at: datetime | None,
        give_up: bool,
    ) -> bool:
        """Record one attempt: ``delivered``; else ``give_up`` (the delivery ``failed``), or
        try again at ``next_attempt_at``. False when the delivery was no longer pending
        (another process, whose claim we took over, recorded it first).

        Raises:
            ValueError: a failed attempt that does not give up has no ``next_attempt_at``.
        """
        values: dict[str, Any] = {
            "attempts": _deliveries.c.attempts + 1,
            "last_status_code": status_code,
            "last_error": error,
        }
        if delivered:
            values.update(status=DeliveryStatus.DELIVERED, delivered_at=utcnow())
        elif give_up:
            values.update(status=DeliveryStatus.FAILED)
        elif next_attempt_at is None:
            raise ValueError("a failed attempt needs next_attempt_at unless it gives up")
        else:
            values.update(next_attempt_at=next_attempt_at)
        stmt = (
            update(_deliveries)
            .where(_deliveries.c.id == delivery_id, _deliveries.c.status == DeliveryStatus.PENDING)
            .values(values)
        )
        with self.store.transaction() as conn:
            return conn.execute(stmt).rowcount == 1

    def deliveries_for(self, run_id: str) -> list[dict[str, Any]]:
        """The run's deliveries, oldest first, as ``GET /runs/{id}`` shows them;
        ``next_attempt_at`` is None once a delivery is delivered or failed."""
        stmt = (
            select(*(_deliveries.c[name] for name in _LISTED))
            .where(_deliveries.c.run_id == run_id)
            .order_by(_deliveries.c.id)
        )
        with self.store.read_engine.connect() as conn:
            rows = [dict(row._mapping) for row in conn.execute(stmt)]
        for row in rows:
            if row["status"] != DeliveryStatus.PENDING:
                row["next_attempt_at"] = None
        return rows

    def next_due(self, now: datetime) -> datetime | None:
        """When the next pending delivery is due (claimed ones: when their claim lapses);
        ``now`` if one is due already, None when none is pending."""
        stmt = select(func.min(_deliveries.c.next_attempt_at)).where(
            _deliveries.c.status == DeliveryStatus.PENDING
        )
        with self.store.read_engine.connect() as conn:
            due: datetime | None = conn.scalar(stmt)
        return None if due is None else max(due, now)
