"""Cursor encoding and event resume positions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from service.api.operations import decode_cursor, encode_cursor, event_start
from service.errors import InvalidCursorError
from service.storage.tables import Run


def test_cursor_round_trips_and_is_opaque() -> None:
    run = Run(id=str(uuid.uuid4()), created_at=datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC))
    cursor = encode_cursor(run)
    assert run.id not in cursor
    assert decode_cursor(cursor) == (run.created_at, run.id)


@pytest.mark.parametrize("cursor", ["", "!!!", "bnVsbA", "WzEsMl0", "WyIyMDI0LTAxLTAxIiwieCJd"])
def test_bad_cursors_are_rejected(cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        decode_cursor(cursor)


def test_after_param_wins_over_last_event_id() -> None:
    assert event_start("4", None) == 4
    assert event_start("4", 7) == 7
    assert event_start("junk", None) == 0
    assert event_start(None, None) == 0
