"""Prometheus metrics of one app: runs, node runs, the journal writer, streams and HTTP.

``AppMetrics`` owns a ``CollectorRegistry`` of its own (never the process-wide default), so
several apps in one process keep separate counts. Its ``observer`` sees the runs of the app's
runner; ``HttpMetricsMiddleware`` (``service.observability.http``) counts requests; what the
database and the stream slots know is read at scrape time. Label values are bounded (graph and
node names, statuses, route templates): never a run id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from graphflow_core import EventKind, NodeEvent
from service.runtime.observers import RunObserver
from service.settings import Settings
from service.storage.records import ACTIVE, RunStatus

log = logging.getLogger("graphflow.service.metrics")

UNKNOWN_GRAPH = "unknown"  # run_finished without its graph at hand

# Nodes and queue waits range from milliseconds (pure functions) to minutes (model calls).
_SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_COMMIT_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_BATCH_OPERATIONS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)
_HTTP_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class RunMetrics(RunObserver):
    """The counters and histograms fed by a runner's ``RunObserver`` callbacks."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs_created = Counter(
            "graphflow_runs_created",
            "Runs stored as queued by this process.",
            ["graph"],
            registry=registry,
        )
        self.runs_finished = Counter(
            "graphflow_runs_finished",
            "Runs whose end this process stored, by final status.",
            ["graph", "status"],
            registry=registry,
        )
        self.queue_wait = Histogram(
            "graphflow_run_queue_wait_seconds",
            "Time from a run's creation to its start (resumed runs excluded).",
            ["graph"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.node_runs = Counter(
            "graphflow_node_runs",
            "Node runs (attempts) that ended: succeeded, failed, or failed and retrying.",
            ["graph", "node", "status"],
            registry=registry,
        )
        self.node_duration = Histogram(
            "graphflow_node_run_duration_seconds",
            "Duration of node runs (attempts) that ended, by status.",
            ["graph", "node", "status"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.batch_operations = Histogram(
            "graphflow_journal_batch_operations",
            "Operations per journal writer commit.",
            buckets=_BATCH_OPERATIONS,
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "graphflow_journal_commit_seconds",
            "Latency of journal writer commits.",
            buckets=_COMMIT_SECONDS,
            registry=registry,
        )
        # ``labels()`` takes a lock and builds a key on every call: a node run ending is hot
        # (thousands per second), so each label set's children are looked up once.
        self._node_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def run_created(self, run_id: str, graph: str) -> None:
        self.runs_created.labels(graph).inc()

    def run_started(
        self, run_id: str, graph: str, created_at: datetime, started_at: datetime, resumed: bool
    ) -> None:
        if resumed:  # its wait was behind another process, and partly spent running there
            return
        wait = (started_at - created_at).total_seconds()
        self.queue_wait.labels(graph).observe(max(wait, 0.0))

    def node_event(self, run_id: str, graph: str, event: NodeEvent) -> None:
        if event.kind is EventKind.STARTED:
            return
        if event.kind is EventKind.COMPLETED:
            status = "succeeded"
        else:
            status = "retrying" if event.retrying else "failed"
        key = (graph, event.node, status)
        children = self._node_children.get(key)
        if children is None:
            children = (self.node_runs.labels(*key), self.node_duration.labels(*key))
            self._node_children[key] = children
        count, duration = children
        count.inc()
        if event.ended_at is not None:
            duration.observe(max(event.ended_at - event.started_at, 0.0))

    def run_finished(self, run_id: str, graph: str | None, status: RunStatus) -> None:
        self.runs_finished.labels(graph or UNKNOWN_GRAPH, status.value).inc()

    def batch_stored(self, operations: int, seconds: float) -> None:
        self.batch_operations.observe(operations)
        self.commit_seconds.observe(seconds)


class ScrapeTimeCollector(Collector):
    """Gauges read when Prometheus scrapes: runs queued and running across all processes (one
    GROUP BY through the store) and this process's open event streams.

    ``state`` is the app's ``state``: ``store`` appears there in the lifespan, so before it
    (and when the database does not answer) the run gauge is left out rather than failing the
    whole scrape.
    """

    def __init__(self, state: Any) -> None:
        self._state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        store = getattr(self._state, "store", None)
        if store is not None:
            try:
                counts = store.count_runs_by_status()
            except Exception:
                log.warning("metrics: could not count the active runs", exc_info=True)
            else:
                runs = GaugeMetricFamily(
                    "graphflow_runs_active",
                    "Runs queued or running now, across all processes (from the database).",
                    labels=["status"],
                )
                for status in ACTIVE:
                    runs.add_metric([status.value], counts.get(status, 0))
                yield runs
        slots = getattr(self._state, "stream_slots", None)
        if slots is not None:
            yield GaugeMetricFamily(
                "graphflow_sse_streams_open",
                "Event streams (SSE) open on this process.",
                value=slots.open,
            )

    def describe(self) -> list[GaugeMetricFamily]:
        # Registering must not call ``collect``: that would query the database at start-up.
        return []


class AppMetrics:
    """All metrics of one app, in their own registry; ``render`` is the /metrics body."""

    def __init__(self, state: Any) -> None:
        self.registry = CollectorRegistry()
        self.observer = RunMetrics(self.registry)
        self.registry.register(ScrapeTimeCollector(state))
        self.http_requests = Counter(
            "graphflow_http_requests",
            "HTTP requests, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "graphflow_http_request_duration_seconds",
            "HTTP request latency (for event streams: how long they stayed open).",
            ["method", "route"],
            buckets=_HTTP_SECONDS,
            registry=self.registry,
        )
        self._http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one HTTP request answered with ``status`` after ``seconds``."""
        key = (method, route, status)
        children = self._http_children.get(key)
        if children is None:  # see ``RunMetrics._node_children``
            children = (
                self.http_requests.labels(method, route, str(status)),
                self.http_duration.labels(method, route),
            )
            self._http_children[key] = children
        count, duration = children
        count.inc()
        duration.observe(seconds)

    def render(self) -> bytes:
        """The registry in the Prometheus text format (queries the database: call off the
        event loop)."""
        return generate_latest(self.registry)


def serve_worker_metrics(settings: Settings) -> RunMetrics:
    """Serve a worker's run, node and journal metrics at ``/metrics`` on
    ``worker_metrics_host:worker_metrics_port`` (prometheus-client's own HTTP server, in a
    daemon thread: a worker has no API); the observer that feeds them."""
    registry = CollectorRegistry()
    observer = RunMetrics(registry)
    assert settings.worker_metrics_port is not None
    start_http_server(
        settings.worker_metrics_port, addr=settings.worker_metrics_host, registry=registry
    )
    return observer
