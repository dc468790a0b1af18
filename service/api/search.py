"""The search of ``GET /runs``: its query parameters as a ``RunFilter``.

``graph``, ``status``, ``tag`` and the time window are declared parameters. The
``metadata.<key>`` names cannot be declared one by one: the route takes them by prefix
(``strict_route.QUERY_PREFIXES``) and ``metadata_filters`` reads them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from service.api.schemas import MAX_METADATA_KEY_LENGTH
from service.errors import InvalidQueryParameterError
from service.storage.filters import RunFilter
from service.storage.records import RunStatus

__all__ = ["METADATA_PREFIX", "metadata_filters", "run_filter", "utc"]

METADATA_PREFIX = "metadata."
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def metadata_filters(params: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The values of the ``metadata.<key>`` query parameters among ``params``, by key.

    Raises:
        InvalidQueryParameterError: a key is empty, longer than ``MAX_METADATA_KEY_LENGTH``
            characters or holds control characters (no run can have it), or is given twice.
    """
    found: dict[str, str] = {}
    for name, value in params:
        if not name.startswith(METADATA_PREFIX):
            continue
        key = name.removeprefix(METADATA_PREFIX)
        if not key:
            reason = "name a metadata key after 'metadata.', as in ?metadata.customer=acme"
        elif len(key) > MAX_METADATA_KEY_LENGTH:
            reason = f"metadata keys are at most {MAX_METADATA_KEY_LENGTH} characters"
        elif _CONTROL.search(key):
            reason = "metadata keys hold no control characters"
        elif key in found:
            reason = "given more than once (a metadata key has one value)"
        else:
            found[key] = value
            continue
        raise InvalidQueryParameterError(name, reason)
    return found


def utc(when: datetime) -> datetime:
    """``when`` (aware) in UTC. A time that UTC cannot hold (``0001-01-01T00:00+01:00``) is
    clamped to the first or last time ``datetime`` holds: as a bound, it means the same."""
    try:
        return when.astimezone(UTC)
    except OverflowError:
        bound = datetime.min if when.year == datetime.min.year else datetime.max
        return bound.replace(tzinfo=UTC)


def run_filter(
    *,
    graph: str | None,
    status: RunStatus | None,
    tags: Sequence[str],
    params: Iterable[tuple[str, str]],
    created_after: datetime | None,
    created_before: datetime | None,
) -> RunFilter:
    """The runs a ``GET /runs`` asks for (``params``: its query string, for ``metadata.*``).

    Raises:
        InvalidQueryParameterError: see ``metadata_filters``.
    """
    return RunFilter(
        graph=graph,
        statuses=() if status is None else (status,),
        tags=tags,
        metadata=metadata_filters(params),
        created_after=None if created_after is None else utc(created_after),
        created_before=None if created_before is None else utc(created_before),
    )
