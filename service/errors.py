"""Service errors. Each maps to an HTTP status; the body is always ``{"detail": ...}``."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base class of all errors the service reports to clients."""

    status_code = 500

    def __init__(self, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail if isinstance(detail, str) else repr(detail))
        self.detail = detail
        self.headers = headers or {}


class NotFoundError(ServiceError):
    status_code = 404


class GraphNotFoundError(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"graph {name!r} not found")


class RunNotFoundError(NotFoundError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} not found")


class NodeRunNotFoundError(NotFoundError):
    def __init__(self, run_id: str, node_run_id: str) -> None:
        super().__init__(
            f"run {run_id} has no node run {node_run_id!r}; GET /runs/{run_id} lists its node "
            "runs and their ids"
        )


class InvalidInputError(ServiceError):
    """The run input failed the graph's input model (detail: pydantic's error list)."""

    status_code = 422


class InvalidCursorError(ServiceError):
    status_code = 400

    def __init__(self) -> None:
        super().__init__("invalid cursor: pass the next_cursor value of a previous page unchanged")


class ConflictError(ServiceError):
    status_code = 409


class InvalidResumeError(ServiceError):
    """A resume, retry or fork names something the run does not have (a waiting interrupt,
    a node run)."""

    status_code = 422


class PayloadTooLargeError(ServiceError):
    status_code = 413

    @classmethod
    def for_limit(cls, limit: int) -> PayloadTooLargeError:
        return cls(f"request body exceeds the limit of {limit} bytes (GRAPHFLOW_MAX_BODY_BYTES)")


class BodyTooDeepError(ServiceError):
    """The JSON request body nests arrays/objects deeper than the configured maximum."""

    status_code = 400

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"request body nests JSON arrays/objects deeper than the limit of {limit} levels "
            "(GRAPHFLOW_MAX_JSON_DEPTH)"
        )


class InvalidJsonError(ServiceError):
    """The request body is JSON Python can parse but that cannot be stored or returned."""

    status_code = 400


class UnknownQueryParameterError(ServiceError):
    status_code = 400

    def __init__(self, unknown: list[str], allowed: list[str]) -> None:
        super().__init__(
            f"unknown query parameter(s) {', '.join(map(repr, unknown))}; "
            f"this operation takes {', '.join(map(repr, allowed)) or 'none'}"
        )


class InvalidQueryParameterError(ServiceError):
    """A query parameter this operation takes is malformed in a way its schema cannot say
    (``metadata.<key>`` with an empty or unusable key); carries the parameter's ``name``."""

    status_code = 400

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"query parameter {name!r}: {reason}")
        self.name = name


class UnauthorizedError(ServiceError):
    """Missing or wrong API key; answered with ``WWW-Authenticate: Bearer``."""

    status_code = 401

    def __init__(self, detail: str, *, invalid_token: bool = False) -> None:
        challenge = 'Bearer error="invalid_token"' if invalid_token else "Bearer"
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class CapacityError(ServiceError):
    """A configured cap is reached; the client should retry after ``Retry-After`` seconds."""

    status_code = 429

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class TooManyActiveRunsError(CapacityError):
    def __init__(self, limit: int, retry_after: int = 1) -> None:
        super().__init__(
            f"too many active runs: the limit of {limit} queued or running runs "
            "(GRAPHFLOW_MAX_ACTIVE_RUNS) is reached; retry later",
            retry_after,
        )


class TooManyStreamsError(CapacityError):
    status_code = 503

    def __init__(self, limit: int, retry_after: int = 5) -> None:
        super().__init__(
            f"too many open event streams: the limit of {limit} (GRAPHFLOW_MAX_STREAMS) "
            "is reached; retry later",
            retry_after,
        )


class LeaseLostError(ServiceError):
    """This process no longer owns the run: another process took it over, so we stop writing."""

    status_code = 409

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"run {run_id} is owned by another process now (our lease expired); "
            "this process stopped writing to it"
        )


class RunStorageError(ServiceError):
    """A value (node update, output) cannot be stored as JSON."""

    status_code = 500


class InvalidWebhookError(ServiceError):
    """A run's ``webhook`` URL is refused: not an http(s) URL we may send to, or its host is not a
    public address (``service.webhooks.urls``). Carries the URL's ``host`` and the ``reason``."""

    status_code = 422

    def __init__(self, host: str, reason: str) -> None:
        where = f" (host {host!r})" if host else ""
        super().__init__(f"webhook refused{where}: {reason}")
        self.host = host
        self.reason = reason


class DeadlineTooLongError(ServiceError):
    """A run asks for a deadline (``timeout_seconds``) beyond the service's cap."""

    status_code = 422

    def __init__(self, requested: float, cap: float) -> None:
        super().__init__(
            f"timeout_seconds={requested:g} exceeds the cap of {cap:g} s on every run "
            f"(GRAPHFLOW_MAX_RUN_SECONDS); ask for at most {cap:g}"
        )
        self.requested = requested
        self.cap = cap


class DatabaseUnavailableError(ServiceError):
    """The database cannot be written for now (a restart, a network fault, a SQLite file on a
    full disk): retry after a moment. ``reason`` says which, in words a client may read."""

    status_code = 503

    def __init__(self, reason: str = "the database is unavailable", retry_after: int = 5) -> None:
        super().__init__(
            f"{reason}; retry in a few seconds (with the same Idempotency-Key, a retried create "
            "makes one run)",
            {"Retry-After": str(retry_after)},
        )
        self.reason = reason
