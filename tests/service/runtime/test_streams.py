"""Notifier and the event stream: replay from the store, then live events from memory."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from service.runtime.streams import Notifier, run_event_stream, wait_until_finished
from service.storage.migrations import upgrade
from service.storage.records import NodeEventWrite, NodeRunStatus
from service.storage.sql import SqlRunStore
from service.storage.tables import utcnow
from tests.seeding import create_run


@pytest.fixture
def store(sqlite_url: str) -> Iterator[SqlRunStore]:
    s = SqlRunStore(sqlite_url, pool_size=4)
    upgrade(s.write_engine)
    yield s
    s.close()


def _run(store: SqlRunStore) -> str:
    return create_run(store).id


def test_notify_from_another_thread_wakes_the_subscriber() -> None:
    async def main() -> bool:
        notifier = Notifier()
        notifier.bind(asyncio.get_running_loop())
        with notifier.subscribe("r") as subscription:
            threading.Thread(target=notifier.notify, args=("r",)).start()
            await asyncio.wait_for(subscription.wake.wait(), 5)
        return notifier.subscriber_count() == 0

    assert asyncio.run(main())


def test_stream_sends_stored_then_live_events_and_stops_at_terminal(
    store: SqlRunStore,
) -> None:
    rid = _run(store)
    store.claim_run(rid, "me", 30)

    async def main() -> list[tuple[str, str]]:
        notifier = Notifier()
        notifier.bind(asyncio.get_running_loop())
        got: list[tuple[str, str]] = []

        def finish_later() -> None:
            store.finish_run(rid, "succeeded", output={}, error=None)
            notifier.notify(rid)

        async for item in run_event_stream(store, notifier, rid, 0, poll_seconds=30):
            got.append((item["id"], item["event"]))
            if len(got) == 1:
                asyncio.get_running_loop().call_later(0.05, finish_later)
        assert notifier.subscriber_count() == 0
        return got

    assert asyncio.run(main()) == [("1", "run_started"), ("2", "run_succeeded")]


def test_disconnected_stream_leaves_no_subscription(store: SqlRunStore) -> None:
    rid = _run(store)
    store.claim_run(rid, "me", 30)

    async def main() -> int:
        notifier = Notifier()
        notifier.bind(asyncio.get_running_loop())
        gen = run_event_stream(store, notifier, rid, 0, poll_seconds=30)
        assert (await gen.__anext__())["event"] == "run_started"
        task = asyncio.ensure_future(gen.__anext__())  # now waiting for live events
        await asyncio.sleep(0.05)
        assert notifier.subscriber_count(rid) == 1
        task.cancel()  # what the server does when the client goes away
        with pytest.raises(asyncio.CancelledError):
            await task
        await gen.aclose()
        return notifier.subscriber_count()

    assert asyncio.run(main()) == 0


def test_wait_until_finished_times_out_then_sees_the_end(store: SqlRunStore) -> None:
    rid = _run(store)

    async def main() -> tuple[bool, bool]:
        notifier = Notifier()
        notifier.bind(asyncio.get_running_loop())
        early = await wait_until_finished(store, notifier, rid, 0.05)
        store.cancel_queued(rid)
        late = await wait_until_finished(store, notifier, rid, 1)
        return early, late

    assert asyncio.run(main()) == (False, True)


def _stream_after_start(
    store: SqlRunStore,
    deliver: list[tuple[int, str, dict[str, object]]],
    stored: NodeEventWrite | None = None,
) -> list[tuple[str, str]]:
    """Stream a started run from seq 1; ``stored`` is written to the store unannounced, and
    then the journal's commit hands the stream ``deliver``."""
    rid = _run(store)
    store.claim_run(rid, "me", 30)

    async def main() -> list[tuple[str, str]]:
        notifier = Notifier()
        notifier.bind(asyncio.get_running_loop())
        gen = run_event_stream(store, notifier, rid, 1, poll_seconds=30)
        task = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(0.05)  # the replay found nothing after seq 1: now it waits
        if stored is not None:
            store.record_node_event(rid, stored)
        notifier.notify_many([rid], (), {rid: deliver})
        got = [await task]
        got += [item async for item in gen]
        return [(item["id"], item["event"]) for item in got]

    return asyncio.run(main())


def test_live_events_are_sent_from_memory_without_reading_the_store(
    store: SqlRunStore,
) -> None:
    # Neither event is in the store: they can only have come from the notifier.
    events = [(2, "node_started", {"node": "a"}), (3, "run_succeeded", {"status": "succeeded"})]
    assert _stream_after_start(store, events) == [("2", "node_started"), ("3", "run_succeeded")]


def test_a_gap_before_the_live_events_is_filled_from_the_store(store: SqlRunStore) -> None:
    now = utcnow()
    started = NodeEventWrite(
        type="node_started",
        activation_id="0",
        node="a",
        status=NodeRunStatus.RUNNING,
        attempt=1,
        parents=[],
        started_at=now,
        finished_at=None,
        duration_ms=None,
        update=None,
        goto=None,
        error=None,
        data={"node": "a"},
    )
    # Seq 2 is only in the store; seq 3 only in memory.
    got = _stream_after_start(store, [(3, "run_succeeded", {})], stored=started)
    assert got == [("2", "node_started"), ("3", "run_succeeded")]
