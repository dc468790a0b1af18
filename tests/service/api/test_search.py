"""The query parameters of ``GET /runs`` as a ``RunFilter``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from service.api.search import metadata_filters, run_filter, utc
from service.errors import InvalidQueryParameterError
from service.storage.records import RunStatus


def test_metadata_parameters_are_read_by_key_and_others_are_left_alone() -> None:
    params = [("tag", "a"), ("metadata.customer", "acme"), ("metadata.a.b", ""), ("graph", "g")]
    assert metadata_filters(params) == {"customer": "acme", "a.b": ""}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("metadata.", "name a metadata key"),
        ("metadata." + "k" * 257, "at most 256 characters"),
        ("metadata.a\x00b", "no control characters"),
    ],
)
def test_a_metadata_key_no_run_can_have_is_a_400_naming_the_parameter(
    name: str, reason: str
) -> None:
    with pytest.raises(InvalidQueryParameterError) as caught:
        metadata_filters([(name, "v")])
    assert caught.value.status_code == 400 and caught.value.name == name
    assert reason in str(caught.value.detail)


def test_a_metadata_key_given_twice_is_a_400() -> None:
    with pytest.raises(InvalidQueryParameterError, match="more than once"):
        metadata_filters([("metadata.k", "a"), ("metadata.k", "a")])


def test_times_are_compared_in_utc_and_those_utc_cannot_hold_are_clamped() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert utc(datetime(2026, 5, 1, 14, 0, tzinfo=plus_two)) == datetime(
        2026, 5, 1, 12, 0, tzinfo=UTC
    )
    assert utc(
        datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    ) == datetime.min.replace(tzinfo=UTC)
    assert utc(datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5)))) == (
        datetime.max.replace(tzinfo=UTC)
    )


def test_the_filter_holds_every_parameter_given() -> None:
    after = datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    where = run_filter(
        graph="g",
        status=RunStatus.FAILED,
        tags=["a", "b"],
        params=[("metadata.n", "5")],
        created_after=after,
        created_before=None,
    )
    assert (where.graph, list(where.statuses), list(where.tags)) == ("g", ["failed"], ["a", "b"])
    assert dict(where.metadata) == {"n": "5"}
    assert where.created_after == datetime(2026, 1, 1, tzinfo=UTC) and where.created_before is None
    empty = run_filter(
        graph=None, status=None, tags=(), params=[], created_after=None, created_before=None
    )
    assert (list(empty.statuses), dict(empty.metadata)) == ([], {})
