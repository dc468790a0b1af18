"""Notices between processes: payloads within Postgres' limit, and a real LISTEN connection."""

from __future__ import annotations

import queue
import uuid

import pytest

from service.storage import notices
from service.storage.notices import Listener
from service.storage.sql import SqlRunStore


def test_changed_payloads_round_trip_and_stay_under_the_limit() -> None:
    changed = [str(uuid.uuid4()) for _ in range(500)]
    ended = changed[:3]
    payloads = notices.changed_payloads("host:1:abc", changed, ended)
    assert len(payloads) > 1
    assert all(len(p.encode()) < notices.MAX_PAYLOAD for p in payloads)
    seen_changed: list[str] = []
    seen_ended: list[str] = []
    for payload in payloads:
        origin, c, e = notices.parse_changed(payload)
        assert origin == "host:1:abc"
        seen_changed += c
        seen_ended += e
    assert seen_ended == ended
    assert seen_changed == changed[3:]


def test_nothing_changed_sends_no_payload() -> None:
    assert notices.changed_payloads("me", [], []) == []


@pytest.mark.postgres
def test_a_listener_gets_what_a_committed_transaction_sent(pg_store: SqlRunStore) -> None:
    store = pg_store
    got: queue.Queue[tuple[str, str]] = queue.Queue()
    listener = Listener(store.url, lambda channel, payload: got.put((channel, payload)))
    assert listener.start()
    try:
        with store.write_engine.connect() as conn:
            notices.send(conn, notices.CANCEL, "run-1")
            conn.rollback()  # never committed: never delivered
            notices.send(conn, notices.CANCEL, "run-2")
            conn.commit()
        assert got.get(timeout=5) == (notices.CANCEL, "run-2")
        assert got.empty()
    finally:
        listener.stop()
