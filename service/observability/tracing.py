"""OpenTelemetry traces of runs: one span per run, one child span per node run.

A node run's span is a child of its run's span and carries a link to the span of each node run
that led to it (``NodeEvent.parents``), so a fan-out shows as several spans linking to one and a
fan-in as one span linking to several. This module needs the ``otel`` extra
(``pip install 'graphflow[otel]'``); ``service.observability.observers_for`` imports it only when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, Status, StatusCode

from graphflow_core import EventKind, NodeEvent
from service.runtime.observers import RunObserver
from service.storage.records import RunStatus

__all__ = ["TracingObserver", "otlp_tracing_observer"]

SERVICE_NAME = "graphflow"
TRACER_NAME = "graphflow.service"

# Runs whose end this process never sees (taken over by another process, interrupted by a
# shutdown) would otherwise keep their state forever; past this many open runs the oldest is
# closed as abandoned.
DEFAULT_MAX_OPEN_RUNS = 10_000


@dataclass
class _RunTrace:
    """What the observer keeps of one run between its start and its end."""

    span: Span
    context: Any  # the opentelemetry Context whose current span is ``span``
    start_ns: int
    # Wall-clock ns minus monotonic ns, taken once at the run's start: node spans then keep the
    # exact monotonic durations and order of the engine's times, whatever the wall clock does.
    offset_ns: int
    end_ns: int = 0  # the latest end of a node span, so that the run span ends after it
    nodes: dict[str, SpanContext] = field(default_factory=dict)  # by activation id
    open: dict[str, Span] = field(default_factory=dict)  # started, not ended, by activation id
    error: str | None = None  # the last node failure that was not retried


class TracingObserver(RunObserver):
    """Turns the runtime's run and node events into OpenTelemetry spans of ``tracer``.

    Thread-safe: node events come from the engine's worker threads concurrently.
    """

    def __init__(
        self,
        tracer: trace.Tracer,
        *,
        provider: Any = None,
        max_open_runs: int = DEFAULT_MAX_OPEN_RUNS,
    ) -> None:
        """``provider``: the SDK ``TracerProvider`` of ``tracer``, if ``shutdown`` should end it."""
        self._tracer = tracer
        self._provider = provider
        self._max_open_runs = max_open_runs
        self._lock = threading.Lock()
        self._runs: dict[str, _RunTrace] = {}

    def shutdown(self) -> None:
        """Export the spans still buffered and stop the provider given at construction."""
        if self._provider is not None:
            self._provider.shutdown()

    def open_runs(self) -> int:
        """How many runs have a span open (started here and not yet finished)."""
        with self._lock:
            return len(self._runs)

    def run_started(
        self, run_id: str, graph: str, created_at: datetime, started_at: datetime, resumed: bool
    ) -> None:
        """Open the run's span, starting at the run's start."""
        start_ns = _ns(started_at)
        span = self._tracer.start_span(
            f"run {graph}",
            start_time=start_ns,
            attributes={
                "graphflow.graph": graph,
                "graphflow.run_id": run_id,
                "graphflow.resumed": resumed,
                "graphflow.queued_ms": max(0.0, (started_at - created_at).total_seconds() * 1000),
            },
        )
        run = _RunTrace(
            span=span,
            context=trace.set_span_in_context(span),
            start_ns=start_ns,
            offset_ns=time.time_ns() - time.monotonic_ns(),
        )
        with self._lock:
            stale = [self._runs.pop(run_id)] if run_id in self._runs else []
            while len(self._runs) >= self._max_open_runs:
                stale.append(self._runs.pop(next(iter(self._runs))))
            self._runs[run_id] = run
        for old in stale:
            _abandon(old)

    def node_event(self, run_id: str, graph: str, event: NodeEvent) -> None:
        """Open a node run's span at STARTED; close it at COMPLETED or FAILED."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:  # the run's start was not seen here (or it already ended)
                return
            start_ns = max(run.start_ns, run.offset_ns + _mono_ns(event.started_at))
            if event.kind is EventKind.STARTED:
                span = self._start_node_span(run, graph, run_id, event, start_ns)
                run.open[event.run_id] = span
                run.nodes[event.run_id] = span.get_span_context()
                return
            span_or_none = run.open.pop(event.run_id, None)
            if span_or_none is None:  # its STARTED was not seen: the span still shows its time
                span_or_none = self._start_node_span(run, graph, run_id, event, start_ns)
                run.nodes[event.run_id] = span_or_none.get_span_context()
            span = span_or_none
            ended = event.ended_at if event.ended_at is not None else event.started_at
            end_ns = max(start_ns, run.offset_ns + _mono_ns(ended))
            run.end_ns = max(run.end_ns, end_ns)
            if event.kind is EventKind.FAILED and not event.retrying:
                run.error = _describe(event.error)
        if event.kind is EventKind.FAILED:
            error = event.error or RuntimeError("unknown error")
            span.set_attribute("graphflow.retrying", event.retrying)
            span.record_exception(error, timestamp=end_ns)
            span.set_status(Status(StatusCode.ERROR, _describe(error)))
        span.end(end_time=end_ns)

    def run_finished(self, run_id: str, graph: str | None, status: RunStatus) -> None:
        """Close the run's span with a status by the run's, and forget the run."""
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is None:  # not started here, e.g. a queued run that was cancelled
            return
        end_ns = max(time.time_ns(), run.end_ns)
        for span in run.open.values():  # node runs the end cut short (a cancel, a timeout)
            span.set_attribute("graphflow.unfinished", True)
            span.end(end_time=end_ns)
        run.span.set_attribute("graphflow.status", status.value)
        if status is RunStatus.SUCCEEDED:
            run.span.set_status(Status(StatusCode.OK))
        elif status in (RunStatus.FAILED, RunStatus.TIMED_OUT):
            run.span.set_status(Status(StatusCode.ERROR, run.error or f"run {status.value}"))
        run.span.end(end_time=end_ns)

    def _start_node_span(
        self, run: _RunTrace, graph: str, run_id: str, event: NodeEvent, start_ns: int
    ) -> Span:
        links = [
            Link(run.nodes[parent], {"graphflow.node_run_id": parent})
            for parent in event.parents
            if parent in run.nodes
        ]
        # A retry links to the attempt before it, whose context ``nodes`` still holds.
        previous = run.nodes.get(event.run_id)
        if previous is not None:
            links.append(Link(previous, {"graphflow.retry_of": event.run_id}))
        return self._tracer.start_span(
            f"node {event.node}",
            context=run.context,
            links=links,
            start_time=start_ns,
            attributes={
                "graphflow.graph": graph,
                "graphflow.run_id": run_id,
                "graphflow.node": event.node,
                "graphflow.node_run_id": event.run_id,
                "graphflow.attempt": event.attempt,
                "graphflow.parents": list(event.parents),
            },
        )


def otlp_tracing_observer() -> TracingObserver:
    """A ``TracingObserver`` exporting with OTLP over HTTP, configured by the environment.

    The exporter reads ``OTEL_EXPORTER_OTLP_ENDPOINT`` (and the other ``OTEL_EXPORTER_OTLP_*``
    variables); the service name is ``OTEL_SERVICE_NAME`` if set, else ``graphflow``.

    Raises:
        ImportError: the ``otel`` extra is not installed.
    """
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()
    # Resource.create fills in "unknown_service" when neither OTEL_SERVICE_NAME nor
    # OTEL_RESOURCE_ATTRIBUTES names the service; ours is a better default.
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    # The provider is this observer's own, not the global one, so that it neither replaces nor
    # depends on what the embedding application configured; it flushes at interpreter exit.
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return TracingObserver(provider.get_tracer(TRACER_NAME), provider=provider)


def _abandon(run: _RunTrace) -> None:
    for span in run.open.values():
        span.set_attribute("graphflow.unfinished", True)
        span.end()
    run.span.set_attribute("graphflow.abandoned", True)
    run.span.end()


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    return f"{type(error).__name__}: {error}"


def _mono_ns(monotonic_ts: float) -> int:
    return round(monotonic_ts * 1e9)


def _ns(moment: datetime) -> int:
    # SQLite gives back naive datetimes; the service stores UTC.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1e9)
