"""Log lines for people (``text``, the default) or for log pipelines (``json``).

With ``GRAPHFLOW_LOG_FORMAT=json`` every line is one JSON object: ``time`` (UTC, ISO 8601),
``level``, ``logger``, ``message``, then ``run_id`` and ``node`` when the call passed them in
``extra`` (the runner does for every line about one run), and ``exc_info`` with the traceback.
``graphflow serve``/``api`` hand ``uvicorn_log_config`` to uvicorn, so its own lines (access
lines included) are JSON too; ``graphflow worker`` calls ``configure_logging``.
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

# Attributes a log call may set through ``extra`` that a JSON line carries as fields.
CONTEXT_FIELDS = ("run_id", "node")
TEXT_FORMAT = "%(levelname)s: %(name)s: %(message)s"
_JSON_FORMATTER = "service.observability.logs.JsonFormatter"


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (newlines in a traceback are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                line[field] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        # default=str: a message argument or an extra that JSON cannot hold still logs.
        return json.dumps(line, default=str, ensure_ascii=False)


def json_log_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` of JSON lines on stderr for every logger."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": _JSON_FORMATTER}},
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["json"], "level": level.upper()},
    }


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """``json_log_config`` with uvicorn's loggers routed to the same JSON handler.

    Uvicorn's own config gives its loggers handlers of their own (``propagate: False``); here
    they propagate to the root's JSON handler instead, so no line is written twice or as text.
    """
    config = json_log_config(level)
    config["loggers"] = {
        name: {"handlers": [], "level": level.upper(), "propagate": True}
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
    }
    return config


def configure_logging(log_format: LogFormat, level: str) -> None:
    """Set up the root logger for a process that is not uvicorn's (``graphflow worker``)."""
    if log_format == "json":
        logging.config.dictConfig(json_log_config(level))
    else:
        logging.basicConfig(level=level.upper(), format=TEXT_FORMAT)
