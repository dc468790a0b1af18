"""Per-node policies: retry (attempts, retry_on, backoff) and timeout."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from graphflow_core import (
    EventKind,
    NodeError,
    NodeTimeoutError,
    RetryPolicy,
    StateGraph,
)


def _flaky(failures, exc_type=RuntimeError):
    """A node that raises `failures` times, then succeeds; it records call times."""
    calls = []

    def node(state):
        calls.append(time.monotonic())
        if len(calls) <= failures:
            raise exc_type(f"failure {len(calls)}")
        return {"ok": len(calls)}

    return node, calls


def _single(fn, **node_kwargs):
    return StateGraph().add_node("flaky", fn, **node_kwargs).set_entry_point("flaky").compile()


def test_node_that_fails_twice_then_succeeds_is_retried(collected_events):
    events, on_event = collected_events
    node, calls = _flaky(2)
    app = _single(node, retry=RetryPolicy(max_attempts=3, initial_delay=0.01))
    assert app.invoke({}, on_event=on_event) == {"ok": 3}
    assert len(calls) == 3
    failed = [ev for ev in events if ev.kind == EventKind.FAILED]
    assert [(ev.attempt, ev.retrying) for ev in failed] == [(1, True), (2, True)]
    assert all(isinstance(ev.error, RuntimeError) for ev in failed)
    (completed,) = [ev for ev in events if ev.kind == EventKind.COMPLETED]
    assert completed.attempt == 3
    assert completed.update == {"ok": 3}
    assert len({ev.run_id for ev in events}) == 1


def test_exhausted_attempts_raise_node_error_caused_by_the_last_exception(collected_events):
    events, on_event = collected_events
    node, calls = _flaky(10)
    app = _single(node, retry=RetryPolicy(max_attempts=3, initial_delay=0.01))
    with pytest.raises(NodeError) as info:
        app.invoke({}, on_event=on_event)
    assert len(calls) == 3
    assert info.value.node == "flaky"
    assert isinstance(info.value.__cause__, RuntimeError)
    assert str(info.value.__cause__) == "failure 3"
    failed = [ev for ev in events if ev.kind == EventKind.FAILED]
    assert [(ev.attempt, ev.retrying) for ev in failed] == [(1, True), (2, True), (3, False)]


def test_retry_on_limits_which_exceptions_are_retried():
    only_value_errors = RetryPolicy(max_attempts=3, initial_delay=0.01, retry_on=(ValueError,))
    node, calls = _flaky(1, exc_type=KeyError)
    app = _single(node, retry=only_value_errors)
    with pytest.raises(NodeError) as info:
        app.invoke({})
    assert len(calls) == 1
    assert isinstance(info.value.__cause__, KeyError)

    node, calls = _flaky(1, exc_type=ValueError)
    app = _single(node, retry=only_value_errors)
    assert app.invoke({}) == {"ok": 2}


def test_without_a_retry_policy_a_failing_node_runs_once():
    node, calls = _flaky(1)
    with pytest.raises(NodeError):
        _single(node).invoke({})
    assert len(calls) == 1


def test_retry_waits_with_exponential_backoff():
    node, calls = _flaky(2)
    policy = RetryPolicy(max_attempts=3, initial_delay=0.1, backoff=2.0, jitter=False)
    assert _single(node, retry=policy).invoke({}) == {"ok": 3}
    first_gap, second_gap = calls[1] - calls[0], calls[2] - calls[1]
    assert 0.09 <= first_gap < 0.3
    assert 0.19 <= second_gap < 0.45


def test_async_node_is_retried():
    attempts = []

    async def node(state):
        attempts.append(1)
        await asyncio.sleep(0)
        if len(attempts) < 2:
            raise ValueError("first try fails")
        return {"ok": True}

    app = _single(node, retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
    assert app.invoke({}) == {"ok": True}
    assert len(attempts) == 2


@pytest.fixture
def release():
    """An event that blocked node threads wait on; set at teardown so no thread lingers."""
    event = threading.Event()
    yield event
    event.set()


def test_timeout_on_a_blocking_sync_node_raises_well_before_it_would_finish(release):
    def stuck(state):
        release.wait(2.0)  # blocks like time.sleep(2), but lets teardown free the thread
        return {"late": True}

    app = _single(stuck, timeout=0.1)
    t0 = time.monotonic()
    with pytest.raises(NodeTimeoutError) as info:
        app.invoke({})
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, elapsed
    err = info.value
    assert isinstance(err, TimeoutError)
    assert isinstance(err, NodeError)
    assert err.node == "flaky"
    assert "flaky" in str(err)


def test_timeout_on_an_async_node_raises_well_before_it_would_finish():
    cancelled = []

    async def stuck(state):
        try:
            await asyncio.sleep(2.0)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return {"late": True}

    app = _single(stuck, timeout=0.1)
    t0 = time.monotonic()
    with pytest.raises(NodeTimeoutError) as info:
        app.invoke({})
    assert time.monotonic() - t0 < 1.0
    assert info.value.node == "flaky"


def test_node_within_its_timeout_succeeds():
    app = _single(lambda s: time.sleep(0.02) or {"ok": True}, timeout=1.0)
    assert app.invoke({}) == {"ok": True}


def test_timed_out_attempt_is_retried(release, collected_events):
    events, on_event = collected_events
    attempts = []

    def sometimes_stuck(state):
        attempts.append(1)
        if len(attempts) == 1:
            release.wait(2.0)
        return {"attempts": len(attempts)}

    app = _single(
        sometimes_stuck, timeout=0.1, retry=RetryPolicy(max_attempts=2, initial_delay=0.01)
    )
    t0 = time.monotonic()
    assert app.invoke({}, on_event=on_event) == {"attempts": 2}
    assert time.monotonic() - t0 < 1.0
    failed = [ev for ev in events if ev.kind == EventKind.FAILED]
    assert [(ev.attempt, ev.retrying) for ev in failed] == [(1, True)]
    assert isinstance(failed[0].error, TimeoutError)
    (completed,) = [ev for ev in events if ev.kind == EventKind.COMPLETED]
    assert completed.attempt == 2
