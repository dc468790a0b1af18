"""Service errors. Each maps to an HTTP status; the body is always ``{"detail": ...}``."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base class of all errors the service reports to clients."""

    status_code = 500

    def __init__(self, detail: Any) -> None:
        super().__init__(detail if isinstance(detail, str) else repr(detail))
        self.detail = detail


class NotFoundError(ServiceError):
    status_code = 404


class GraphNotFoundError(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"graph {name!r} not found")


class RunNotFoundError(NotFoundError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} not found")


class InvalidInputError(ServiceError):
    """The run input failed the graph's input model (detail: pydantic's error list)."""

    status_code = 422


class InvalidCursorError(ServiceError):
    status_code = 400

    def __init__(self) -> None:
        super().__init__("invalid cursor: pass the next_cursor value of a previous page unchanged")


class ConflictError(ServiceError):
    status_code = 409


class PayloadTooLargeError(ServiceError):
    status_code = 413


class RunStorageError(ServiceError):
    """A value (node update, output) cannot be stored as JSON."""

    status_code = 500
