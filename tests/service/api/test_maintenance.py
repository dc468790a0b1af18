"""The bodies of a purge and a bulk cancel name exactly the statuses each acts on."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from service.api.maintenance import CANCELLABLE
from service.api.schemas import CancellableStatus, CancelRequest, FinishedStatus, PurgeRequest
from service.storage.records import TERMINAL, RunStatus


def test_a_purge_takes_the_finished_statuses_and_a_cancel_the_unfinished_ones() -> None:
    assert set(get_args(FinishedStatus)) == set(TERMINAL)
    assert set(get_args(CancellableStatus)) == set(CANCELLABLE)
    assert set(TERMINAL) | set(CANCELLABLE) == set(RunStatus)


@pytest.mark.parametrize(
    "body",
    [
        {"status": "running"},
        {"status": []},
        {"finished_before": "2030-01-01T00:00:00"},  # no time zone
        {"tags": [""]},
        {"graph": "a\x00b"},
        {"dry_run": False, "everything": True},
        {"dry_run": "false"},  # a boolean, not its text: no guessing what a purge means
        {"dry_run": 0},
    ],
)
def test_a_purge_refuses_what_it_cannot_mean(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PurgeRequest.model_validate(body)


def test_both_only_count_unless_told_otherwise() -> None:
    assert PurgeRequest().dry_run and CancelRequest().dry_run
    with pytest.raises(ValidationError):
        CancelRequest.model_validate({"status": "succeeded"})
    with pytest.raises(ValidationError):
        CancelRequest.model_validate({"finished_before": "2030-01-01T00:00:00Z"})
