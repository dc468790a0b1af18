"""Webhook deliveries from a real outbox (SQLite and Postgres) to a real HTTP receiver."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from service.storage.outbox import WebhookOutbox, enqueue_deliveries
from service.storage.records import DeliveryStatus
from service.storage.sql import SqlRunStore
from service.storage.tables import utcnow
from service.webhooks import Resolver, WebhookDeliverer, system_resolve
from service.webhooks.delivery import backoff_seconds
from tests.conftest import free_port, make_settings
from tests.service.webhooks.conftest import FAST, OUTPUT, Receiver, ended_run, settled


@pytest.fixture
def deliverer(store: SqlRunStore) -> Iterator[Callable[..., WebhookDeliverer]]:
    """Factory of started deliverers on ``store`` with fast test settings; stopped at teardown."""
    started: list[WebhookDeliverer] = []

    def start(resolve: Resolver = system_resolve, **overrides: Any) -> WebhookDeliverer:
        settings = make_settings(store.url, **{**FAST, **overrides})
        d = WebhookDeliverer(store, settings, resolve=resolve)
        d.start()
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


def test_a_delivery_is_posted_once_signed_with_the_run_summary(
    store: SqlRunStore, receiver: Callable[..., Receiver], deliverer: Any
) -> None:
    hooks = receiver(200)
    run_id = ended_run(store, f"{hooks.url}/hook?team=7")
    deliverer()
    [row] = settled(store, run_id)
    assert row["status"] == DeliveryStatus.DELIVERED
    assert (row["attempts"], row["last_status_code"], row["last_error"]) == (1, 200, None)
    assert row["delivered_at"] is not None and row["next_attempt_at"] is None
    time.sleep(0.2)  # a few more rounds: nothing is sent again
    assert hooks.bad_signatures == []
    [(headers, body)] = hooks.requests
    run = store.get_run(run_id)
    assert run is not None and run.started_at is not None
    assert body == {
        "event": "run_succeeded",
        "delivery_id": row["id"],
        "run": {
            "id": run_id,
            "graph": "adder",
            "status": "succeeded",
            "created_at": run.created_at.isoformat(),
            "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "duration_ms": 1000.0,
            "error": None,
            "output": OUTPUT,
            "interrupts": None,
        },
    }
    assert headers["Host"] == hooks.url.removeprefix("http://")
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "graphflow-webhooks"
    assert headers["GraphFlow-Delivery"] == str(row["id"])
    assert headers["GraphFlow-Event"] == "run_succeeded"


def test_the_checked_address_is_connected_to_with_the_urls_own_host(
    store: SqlRunStore, receiver: Callable[..., Receiver], deliverer: Any
) -> None:
    hooks = receiver(200)
    port = hooks.url.rsplit(":", 1)[1]
    # A name the system cannot resolve (.test is reserved): only the pinned address reaches it.
    run_id = ended_run(store, f"http://Hooks.Receiver.test:{port}/hook")
    deliverer(
        resolve=lambda host, _port: ["127.0.0.1"] if host == "hooks.receiver.test" else [],
        webhook_allow_hosts=["hooks.receiver.test"],
    )
    [row] = settled(store, run_id)
    assert row["status"] == DeliveryStatus.DELIVERED
    [(headers, _)] = hooks.requests
    assert headers["Host"] == f"hooks.receiver.test:{port}"


def test_only_runs_with_a_webhook_url_get_deliveries(store: SqlRunStore) -> None:
    without = ended_run(store, None)
    with store.transaction() as conn:
        enqueue_deliveries(conn, [], utcnow())  # nothing to do, no statement
    assert WebhookOutbox(store).deliveries_for(without) == []
    assert WebhookOutbox(store).next_due(utcnow()) is None


def test_errors_are_retried_with_backoff_until_delivered(
    store: SqlRunStore, receiver: Callable[..., Receiver], deliverer: Any
) -> None:
    hooks = receiver(500, 500, 200)
    run_id = ended_run(store, f"{hooks.url}/hook")
    deliverer()
    [row] = settled(store, run_id)
    assert row["status"] == DeliveryStatus.DELIVERED
    assert (row["attempts"], row["last_status_code"], row["last_error"]) == (3, 200, None)
    ids = {headers["GraphFlow-Delivery"] for headers, _ in hooks.requests}
    assert len(hooks.requests) == 3 and ids == {str(row["id"])}


def test_a_receiver_that_keeps_failing_fails_the_delivery_after_max_attempts(
    store: SqlRunStore, receiver: Callable[..., Receiver], deliverer: Any
) -> None:
    hooks = receiver(500)
    run_id = ended_run(store, f"{hooks.url}/hook")
    deliverer(webhook_max_attempts=3)
    [row] = settled(store, run_id)
    assert row["status"] == DeliveryStatus.FAILED
    assert (row["attempts"], row["last_status_code"], row["last_error"]) == (3, 500, "HTTP 500")
    assert row["next_attempt_at"] is None and row["delivered_at"] is None
    assert len(hooks.requests) == 3


def test_redirects_are_not_followed(
    store: SqlRunStore, receiver: Callable[..., Receiver], deliverer: Any
) -> None:
    hooks = receiver(307, 200)
    run_id = ended_run(store, f"{hooks.url}/hook")
    deliverer(webhook_max_attempts=1)
    [row] = settled(store, run_id)
    assert (row["status"], row["last_status_code"]) == (DeliveryStatus.FAILED, 307)
    assert [body["delivery_id"] for _, body in hooks.requests] == [row["id"]]


def test_a_receiver_that_is_down_records_the_connection_error(
    store: SqlRunStore, deliverer: Any
) -> None:
    run_id = ended_run(store, f"http://127.0.0.1:{free_port()}/hook")
    deliverer(webhook_max_attempts=2)
    [row] = settled(store, run_id)
    assert (row["status"], row["attempts"]) == (DeliveryStatus.FAILED, 2)
    assert row["last_status_code"] is None
    assert row["last_error"].startswith("ConnectError")


def test_a_private_address_at_delivery_time_is_refused_and_never_sent(
    store: SqlRunStore, receiver: Callable[..., Receiver], deliverer: Any
) -> None:
    hooks = receiver(200)
    run_id = ended_run(store, f"{hooks.url}/hook")
    deliverer(webhook_allow_hosts=[], webhook_max_attempts=1)
    [row] = settled(store, run_id)
    assert (row["status"], row["last_status_code"]) == (DeliveryStatus.FAILED, None)
    assert row["last_error"].startswith("refused:") and "loopback" in row["last_error"]
    assert hooks.requests == []


def test_a_delivery_claimed_by_a_dead_process_is_sent_once_its_claim_lapses(
    store: SqlRunStore, receiver: Callable[..., Receiver], deliverer: Any
) -> None:
    hooks = receiver(200)
    run_id = ended_run(store, f"{hooks.url}/hook")
    outbox = WebhookOutbox(store)
    claimed_at = utcnow()
    [claimed] = outbox.claim_due(10, claimed_at, claim_seconds=0.3)  # then the process dies
    assert claimed.run_id == run_id and claimed.data["output"] == OUTPUT
    assert outbox.claim_due(10, utcnow(), claim_seconds=0.3) == []  # the claim holds
    deliverer()  # the next process
    [row] = settled(store, run_id)
    assert row["status"] == DeliveryStatus.DELIVERED and row["attempts"] == 1
    assert row["delivered_at"] >= claimed_at + timedelta(seconds=0.3)
    assert len(hooks.requests) == 1


def test_two_deliverers_send_each_delivery_once(
    store: SqlRunStore, receiver: Callable[..., Receiver], deliverer: Any
) -> None:
    hooks = receiver(200)
    run_ids = [ended_run(store, f"{hooks.url}/hook") for _ in range(12)]
    deliverer()
    deliverer()
    rows = [row for run_id in run_ids for row in settled(store, run_id)]
    assert {row["status"] for row in rows} == {DeliveryStatus.DELIVERED}
    sent = sorted(body["delivery_id"] for _, body in hooks.requests)
    assert sent == sorted(row["id"] for row in rows)


@pytest.mark.postgres
def test_postgres_claimers_skip_deliveries_another_claimer_holds(pg_store: SqlRunStore) -> None:
    held, free = (ended_run(pg_store, "https://hooks.example.com/") for _ in range(2))
    outbox = WebhookOutbox(pg_store)
    claimed: list[list[str]] = []
    with pg_store.write_engine.connect() as other:  # a claimer in the middle of its transaction
        other.execute(
            text("SELECT id FROM webhook_deliveries WHERE run_id = :id FOR UPDATE"), {"id": held}
        )
        claimer = threading.Thread(
            target=lambda: claimed.append(
                [d.run_id for d in outbox.claim_due(10, utcnow(), claim_seconds=30)]
            )
        )
        claimer.start()
        claimer.join(5)  # waiting for the lock would hang here
        assert claimed == [[free]]
        other.rollback()


def test_a_database_error_is_logged_and_the_thread_goes_on(
    store: SqlRunStore,
    receiver: Callable[..., Receiver],
    deliverer: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hooks = receiver(200)
    with store.transaction() as conn:
        conn.execute(text("ALTER TABLE webhook_deliveries RENAME TO webhook_deliveries_away"))
    caplog.set_level(logging.ERROR, logger="graphflow.service.webhooks")
    deliverer()
    deadline = time.monotonic() + 5
    while not caplog.records and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "webhook deliveries failed" in caplog.records[0].getMessage()
    with store.transaction() as conn:
        conn.execute(text("ALTER TABLE webhook_deliveries_away RENAME TO webhook_deliveries"))
    run_id = ended_run(store, f"{hooks.url}/hook")
    [row] = settled(store, run_id)
    assert row["status"] == DeliveryStatus.DELIVERED


@pytest.mark.parametrize("attempts", range(1, 12))
def test_backoff_doubles_from_the_base_up_to_the_cap_with_jitter(attempts: int) -> None:
    ceiling = min(600.0, 2.0 * 2 ** (attempts - 1))
    for _ in range(50):
        assert ceiling / 2 <= backoff_seconds(attempts, 2.0, 600.0) <= ceiling
