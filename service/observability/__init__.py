"""What a process tells the outside about its work: metrics, traces and logs.

``observers_for`` gives the ``RunObserver``s that the settings ask for; the app and the worker
hand them to their ``RunManager``.
"""

from __future__ import annotations

import logging
import os

from service.runtime.observers import RunObserver
from service.settings import Settings


def observers_for(settings: Settings) -> list[RunObserver]:
    """The observers of runs this process should have."""
    observers: list[RunObserver] = []
    tracing = _tracing_observer()
    if tracing is not None:
        observers.append(tracing)
    return observers


def _tracing_observer() -> RunObserver | None:
    """An OTLP ``TracingObserver`` if ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, else None."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    try:
        from service.observability.tracing import otlp_tracing_observer

        return otlp_tracing_observer()
    except ImportError as exc:
        # Asking for traces without the extra must not stop the service, but must be heard.
        logging.getLogger("graphflow.service.observability").warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed (%s); "
            "runs are not traced. Install it with: pip install 'graphflow[otel]'",
            exc,
        )
        return None
