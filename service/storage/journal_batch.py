"""One journal batch (``records.JournalBatch``, from ``service.runtime.journal``) stored in
one transaction (``write``): the runs it creates and claims, then its runs' events and ends.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.sql.expression import Executable

from service.storage import notices
from service.storage import queries as q
from service.storage.bulk import BulkInsert
from service.storage.claims import claim_queued, group_claims
from service.storage.outbox import enqueue_deliveries
from service.storage.records import TERMINAL, EventData, JournalBatch, JournalResult
from service.storage.run_events import announce, event_row, terminal_data
from service.storage.search import insert_search_rows
from service.storage.tables import Run, node_run_values

__all__ = ["write"]


def write(
    conn: Connection,
    batch: JournalBatch,
    now: datetime,
    *,
    insert_run: Executable,
    bulk_events: BulkInsert,
    bulk_nodes: BulkInsert,
    origin: str | None,
) -> JournalResult:
    """Store a batch in ``conn``'s transaction: new runs, claims, then run events and ends.

    A handful of statements whatever the batch's size. Each run with events is fenced
    once: the rows its owner still holds are selected and locked, and a run another
    process owns now has none of its operations stored and is reported lost.

    ``insert_run`` is the dialect's ``queries.insert_run_unless_key_used``; ``bulk_events``
    and ``bulk_nodes`` store ``run_events`` and ``node_runs`` rows; with ``origin``, other
    processes are told what the batch changed (``run_events.announce``).
    """
    events: list[dict[str, Any]] = []
    creates, refused = list(batch.creates), set()
    if creates and batch.max_active_runs is not None:
        # Counted in the write transaction, once for the batch: on SQLite no other
        # writer can start a run in between; on Postgres concurrent batches of other
        # processes may each see the same count (a soft cap across processes).
        active = int(conn.scalar(q.COUNT_ACTIVE_RUNS) or 0)
        room = max(0, batch.max_active_runs - active)
        creates, refused = creates[:room], {v["id"] for v in creates[room:]}
    created = {row.id for row in conn.execute(insert_run, creates)} if creates else set()
    if created:
        insert_search_rows(conn, (v for v in creates if v["id"] in created))
    claimed: dict[str, Run] = {}
    for (owner_id, lease_seconds), run_ids in group_claims(batch.claims).items():
        for run, event in claim_queued(conn, run_ids, owner_id, lease_seconds, now):
            claimed[run.id] = run
            events.append(event)
    owners: dict[str, list[str]] = {}
    for run_id, (owner_id, _) in batch.heads.items():
        owners.setdefault(owner_id, []).append(run_id)
    held: set[str] = set()
    for owner_id, run_ids in owners.items():
        params = {"run_ids": run_ids, "owner_id": owner_id}
        held.update(conn.scalars(q.OWNED_ACTIVE, params))
    lost = set(batch.heads) - held
    advances = []
    ends = []
    settled: list[tuple[str, str, int]] = []  # (run id, event type, seq): webhooks
    for run_id in held:
        seq = batch.heads[run_id][1]
        ending = batch.ends.get(run_id)
        if ending is None:
            advances.append({"run_id": run_id, "seq": seq})
            continue
        end_seq, end = ending
        error = None if end.error is None else end.error.to_dict()
        ends.append(
            {
                "run_id": run_id,
                "seq": seq,
                "status": end.status,
                "output": end.output,
                "error": error,
                # An interrupted run has not finished: it waits for a person.
                "finished_at": now if end.status in TERMINAL else None,
                "interrupts": end.interrupts,
            }
        )
        data = terminal_data(end.status, now, end.started_at, end.output, error, end.interrupts)
        type_ = f"run_{end.status}"
        events.append(event_row(run_id, end_seq, type_, data, now))
        if end.webhook:
            settled.append((run_id, type_, end_seq))
    if advances:
        conn.execute(q.SET_LAST_SEQ, advances)
    if ends:
        conn.execute(q.END_RUN, ends)
    enqueue_deliveries(conn, settled, now)
    stored = [(run_id, seq, w) for run_id, seq, w in batch.events if run_id in held]
    events.extend(event_row(r, seq, w.type, w.data, now) for r, seq, w in stored)
    bulk_events.execute(conn, events)
    bulk_nodes.execute(conn, (node_run_values(r, seq, w) for r, seq, w in stored))
    if origin is not None:
        ended_ids = {str(end["run_id"]) for end in ends}
        changed_ids = (held | set(claimed)) - ended_ids
        announce(conn, origin, changed_ids, ended_ids)
        if any(v["owner_id"] is None for v in creates if v["id"] in created):
            notices.send(conn, notices.QUEUED)
    stored_events: dict[str, list[tuple[int, str, EventData]]] = {}
    for row in sorted(events, key=lambda row: row["seq"]):
        stored_events.setdefault(row["run_id"], []).append((row["seq"], row["type"], row["data"]))
    return JournalResult(
        lost=lost,
        created=created,
        claimed=claimed,
        at=now,
        events=stored_events,
        refused=refused,
    )
