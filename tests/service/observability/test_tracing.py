"""OpenTelemetry traces of runs: a span per run, a child span per node run, links for the flow."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip(
    "opentelemetry.sdk", reason="needs the otel extra: pip install -e '.[otel]' (CI installs it)"
)

from fastapi.testclient import TestClient  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode  # noqa: E402

from service.app import create_app  # noqa: E402
from service.observability import observers_for  # noqa: E402
from service.observability.tracing import TracingObserver  # noqa: E402
from tests.conftest import make_settings  # noqa: E402

ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    yield memory
    memory.shutdown()


@pytest.fixture
def observer(exporter: InMemorySpanExporter) -> Iterator[TracingObserver]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = TracingObserver(provider.get_tracer("test"), provider=provider)
    yield tracing
    tracing.shutdown()


def run_graph(
    sqlite_url: str,
    observer: TracingObserver,
    exporter: InMemorySpanExporter,
    graph: str,
    body: dict[str, Any],
) -> tuple[dict[str, Any], list[ReadableSpan]]:
    """Run ``graph`` to its end; the run as GET /runs/{id} shows it, and the finished spans."""
    app = create_app(make_settings(sqlite_url), observers=[observer])
    with TestClient(app) as client:
        response = client.post(f"/graphs/{graph}/runs?wait=true", json=body)
        assert response.status_code == 200, response.text
        run: dict[str, Any] = client.get(f"/runs/{response.json()['id']}").json()
        # The runner tells observers of the end once it is stored, which may be just after the
        # waiting request returned: wait for the run's span.
        deadline = time.monotonic() + 10
        while not [s for s in exporter.get_finished_spans() if s.name.startswith("run ")]:
            assert time.monotonic() < deadline, "the run span never ended"
            time.sleep(0.01)
    return run, list(exporter.get_finished_spans())


def split(spans: list[ReadableSpan]) -> tuple[ReadableSpan, dict[str, ReadableSpan]]:
    """The one run span, and the node spans by activation id."""
    runs = [s for s in spans if s.name.startswith("run ")]
    assert len(runs) == 1, [s.name for s in spans]
    nodes = {
        str((s.attributes or {})["graphflow.node_run_id"]): s for s in spans if s is not runs[0]
    }
    assert len(nodes) == len(spans) - 1, "two node spans share an activation id"
    return runs[0], nodes


def by_node(nodes: dict[str, ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in nodes.values() if s.attributes and s.attributes["graphflow.node"] == name]


def linked_ids(span: ReadableSpan) -> set[int]:
    return {link.context.span_id for link in span.links}


def test_a_fan_out_fan_in_run_is_a_run_span_with_linked_node_spans(
    sqlite_url: str, observer: TracingObserver, exporter: InMemorySpanExporter
) -> None:
    body = {"input": {"work_items": ["w1", "w2", "w3", "w4", "w5"], "delay_scale": 0.02}}
    run, spans = run_graph(sqlite_url, observer, exporter, "basic_fanout", body)
    assert run["status"] == "succeeded"
    run_span, nodes = split(spans)

    # One span per node run, each a child of the run span, in the run span's trace.
    assert run_span.parent is None and run_span.context is not None
    assert sorted(nodes) == sorted(node["id"] for node in run["nodes"])
    for span in nodes.values():
        assert span.parent is not None and span.context is not None
        assert span.parent.span_id == run_span.context.span_id
        assert span.context.trace_id == run_span.context.trace_id
        assert span.attributes is not None
        assert span.attributes["graphflow.graph"] == "basic_fanout"
        assert span.attributes["graphflow.run_id"] == run["id"]
        assert span.attributes["graphflow.attempt"] == 1
        assert span.status.status_code is StatusCode.UNSET
    assert run_span.attributes is not None
    assert run_span.attributes["graphflow.run_id"] == run["id"]
    assert run_span.status.status_code is StatusCode.OK

    # Fan-out: each processor links to the start; fan-in: the combiner links to each processor.
    (start,) = by_node(nodes, "start")
    (combiner,) = by_node(nodes, "combiner")
    processors = [s for s in nodes.values() if s not in (start, combiner)]
    assert len(processors) == 4
    assert not start.links
    assert start.context is not None
    for span in processors:
        assert linked_ids(span) == {start.context.span_id}
    assert linked_ids(combiner) == {s.context.span_id for s in processors if s.context}

    # Times nest: every node span lies within the run span, and follows the spans it links to.
    assert run_span.start_time is not None and run_span.end_time is not None
    ends = {s.context.span_id: s.end_time for s in nodes.values() if s.context}
    for span in nodes.values():
        assert span.start_time is not None and span.end_time is not None
        assert run_span.start_time <= span.start_time <= span.end_time <= run_span.end_time
        for link in span.links:
            linked_end = ends[link.context.span_id]
            assert linked_end is not None and linked_end <= span.start_time

    # Nothing of the run is kept once it ended.
    assert observer.open_runs() == 0


def test_a_failed_run_has_an_error_span_and_the_failed_node_records_the_error(
    sqlite_url: str, observer: TracingObserver, exporter: InMemorySpanExporter
) -> None:
    run, spans = run_graph(sqlite_url, observer, exporter, "failing", {"input": {"x": 1}})
    assert run["status"] == "failed"
    run_span, nodes = split(spans)
    assert len(nodes) == len(run["nodes"]) == 2

    assert run_span.status.status_code is StatusCode.ERROR
    assert "boom: the node failed on purpose" in (run_span.status.description or "")
    (a,) = by_node(nodes, "a")
    (boom,) = by_node(nodes, "boom")
    assert a.status.status_code is StatusCode.UNSET
    assert boom.status.status_code is StatusCode.ERROR
    assert boom.status.description == "ValueError: boom: the node failed on purpose"
    (exception,) = [e for e in boom.events if e.name == "exception"]
    assert exception.attributes is not None
    assert exception.attributes["exception.type"] == "ValueError"
    assert exception.attributes["exception.message"] == "boom: the node failed on purpose"
    assert a.context is not None and linked_ids(boom) == {a.context.span_id}
    assert observer.open_runs() == 0


def test_without_the_endpoint_a_process_gets_no_tracing_observer(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENDPOINT, raising=False)
    observers = observers_for(make_settings(sqlite_url))
    assert not [o for o in observers if isinstance(o, TracingObserver)]


def test_with_the_endpoint_a_process_gets_one_tracing_observer_named_graphflow(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENDPOINT, "http://127.0.0.1:4318")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    observers = observers_for(make_settings(sqlite_url))
    tracing = [o for o in observers if isinstance(o, TracingObserver)]
    assert len(tracing) == 1
    try:
        provider = tracing[0]._provider
        assert provider.resource.attributes["service.name"] == "graphflow"
    finally:
        tracing[0].shutdown()  # nothing was traced: shutting down exports nothing


def test_with_the_endpoint_but_without_the_extra_a_warning_names_the_extra(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(ENDPOINT, "http://127.0.0.1:4318")
    # A None in sys.modules makes importing that module raise ImportError, as if not installed.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with caplog.at_level(logging.WARNING):
        observers = observers_for(make_settings(sqlite_url))
    assert not [o for o in observers if isinstance(o, TracingObserver)]
    assert "pip install 'graphflow[otel]'" in caplog.text
