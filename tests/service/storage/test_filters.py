"""``RunFilter`` and the search rows of tags and metadata, on both databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, select, update

from service.storage import queries as q
from service.storage.filters import MAX_SEARCHABLE_BYTES, RunFilter
from service.storage.records import JournalBatch, RunStatus
from service.storage.sql import SqlRunStore
from service.storage.tables import Run, RunMetadata, RunTag, new_run_values
from tests.searching import Corpus, seed

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _run(
    store: SqlRunStore,
    *,
    graph: str = "g",
    tags: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    created_at: datetime | None = None,
    status: RunStatus | None = None,
    finished_at: datetime | None = None,
) -> str:
    """A run made by ``create_run`` (search rows included), then moved in time or status."""
    run, _ = store.create_run(
        run_id=str(uuid.uuid4()),
        graph=graph,
        input={},
        max_concurrent=None,
        idempotency_key=None,
        owner_id="me",
        lease_seconds=30,
        run_metadata=metadata,
        tags=tags,
    )
    changes: dict[str, Any] = {}
    if created_at is not None:
        changes["created_at"] = created_at
    if status is not None:
        changes["status"] = status
    if finished_at is not None:
        changes["finished_at"] = finished_at
    if changes:
        with store.transaction() as conn:
            conn.execute(update(Run).where(Run.id == run.id).values(**changes))
    return run.id


def _ids(store: SqlRunStore, where: RunFilter, limit: int = 100) -> set[str]:
    return {run.id for run in store.list_runs(where, limit=limit)}


def _search_rows(store: SqlRunStore, run_id: str) -> tuple[list[str], dict[str, str]]:
    with store.read_engine.connect() as conn:
        tags = conn.scalars(select(RunTag.tag).where(RunTag.run_id == run_id)).all()
        metadata = conn.execute(
            select(RunMetadata.key, RunMetadata.value).where(RunMetadata.run_id == run_id)
        ).all()
    return sorted(tags), {str(k): str(v) for k, v in metadata}


def test_a_created_run_keeps_its_tags_and_metadata_and_their_search_rows(
    store: SqlRunStore,
) -> None:
    metadata = {"customer": "acme", "n": 5, "ok": True, "nested": {"b": [1], "a": None}}
    rid = _run(store, tags=["prod", "eu", "prod"], metadata=metadata)
    run = store.get_run(rid)
    assert run is not None and run.run_metadata == metadata and run.tags == ["prod", "eu", "prod"]
    assert _search_rows(store, rid) == (
        ["eu", "prod"],
        {"customer": "acme", "n": "5", "ok": "true", "nested": '{"a": null, "b": [1]}'},
    )
    assert _search_rows(store, _run(store)) == ([], {})


@contextmanager
def _statements(store: SqlRunStore) -> Iterator[list[str]]:
    """The SQL of every statement the store's writes send while the block runs."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(store.write_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(store.write_engine, "before_cursor_execute", record)


def _create(store: SqlRunStore, *creates: dict[str, Any]) -> set[str]:
    batch = JournalBatch(heads={}, events=[], ends={}, creates=list(creates))
    return set(store.write_journal(batch).created)


def _values(**extra: Any) -> dict[str, Any]:
    return new_run_values(
        run_id=str(uuid.uuid4()),
        graph="g",
        input={},
        max_concurrent=None,
        lease_seconds=30,
        owner_id=None,
        **extra,
    )


def test_the_journal_stores_search_rows_of_the_runs_it_creates_in_one_statement_a_table(
    store: SqlRunStore,
) -> None:
    key_taken = _values(idempotency_key="k", tags=["first"])
    assert _create(store, key_taken) == {key_taken["id"]}
    plain = _values(idempotency_key=None)
    tagged = _values(idempotency_key=None, tags=["a", "b"], run_metadata={"x": 1})
    refused = _values(idempotency_key="k", tags=["second"], run_metadata={"y": 2})
    with _statements(store) as seen:
        created = _create(store, plain, tagged, refused)
    assert created == {plain["id"], tagged["id"]}  # the key's run was made before
    assert [s.split("(")[0].strip() for s in seen if "run_tags" in s or "run_metadata_v" in s] == [
        "INSERT INTO run_tags",
        "INSERT INTO run_metadata_values",
    ]
    assert _search_rows(store, tagged["id"]) == (["a", "b"], {"x": "1"})
    assert _search_rows(store, key_taken["id"]) == (["first"], {})
    assert _search_rows(store, refused["id"]) == ([], {})


def test_creating_runs_without_tags_or_metadata_sends_no_search_statement(
    store: SqlRunStore,
) -> None:
    with _statements(store) as seen:
        _create(store, _values(idempotency_key=None), _values(idempotency_key=None))
        _run(store)
    assert [s for s in seen if "run_tags" in s or "run_metadata_values" in s] == []


def test_each_condition_alone_selects_the_runs_that_match_it(store: SqlRunStore) -> None:
    old = _run(
        store,
        graph="etl",
        tags=["a"],
        created_at=T0,
        status=RunStatus.SUCCEEDED,
        finished_at=T0 + timedelta(minutes=1),
    )
    middle = _run(store, metadata={"customer": "acme"}, created_at=T0 + timedelta(hours=1))
    new = _run(store, graph="etl", status=RunStatus.FAILED, created_at=T0 + timedelta(hours=2))
    everything = {old, middle, new}
    assert _ids(store, RunFilter()) == everything
    assert _ids(store, RunFilter(graph="etl")) == {old, new}
    assert _ids(store, RunFilter(statuses=[RunStatus.FAILED])) == {new}
    assert _ids(store, RunFilter(statuses=[RunStatus.FAILED, RunStatus.QUEUED])) == {new, middle}
    assert _ids(store, RunFilter(tags=["a"])) == {old}
    assert _ids(store, RunFilter(metadata={"customer": "acme"})) == {middle}
    assert _ids(store, RunFilter(metadata={"customer": "other"})) == set()
    assert _ids(store, RunFilter(created_after=T0)) == {middle, new}  # after: strictly
    assert _ids(store, RunFilter(created_before=T0 + timedelta(hours=2))) == {old, middle}
    assert _ids(store, RunFilter(finished_before=T0 + timedelta(hours=1))) == {old}


def test_conditions_combine_so_a_run_must_match_every_one(store: SqlRunStore) -> None:
    hit = _run(store, graph="etl", tags=["a"], metadata={"c": "x"}, created_at=T0)
    _run(store, graph="other", tags=["a"], metadata={"c": "x"}, created_at=T0)
    _run(store, graph="etl", tags=["b"], metadata={"c": "x"}, created_at=T0)
    _run(store, graph="etl", tags=["a"], metadata={"c": "y"}, created_at=T0)
    _run(store, graph="etl", tags=["a"], metadata={"c": "x"}, created_at=T0 + timedelta(days=2))
    where = RunFilter(
        graph="etl",
        statuses=[RunStatus.QUEUED],
        tags=["a"],
        metadata={"c": "x"},
        created_after=T0 - timedelta(days=1),
        created_before=T0 + timedelta(days=1),
    )
    assert _ids(store, where) == {hit}
    assert _ids(store, RunFilter(graph="etl", statuses=[RunStatus.SUCCEEDED], tags=["a"])) == set()


def test_a_run_must_have_every_tag_asked_for(store: SqlRunStore) -> None:
    both = _run(store, tags=["prod", "eu"])
    prod = _run(store, tags=["prod"])
    _run(store, tags=["eu", "us"])
    assert _ids(store, RunFilter(tags=["prod"])) == {both, prod}
    assert _ids(store, RunFilter(tags=["prod", "eu"])) == {both}
    assert _ids(store, RunFilter(tags=["eu", "prod", "eu"])) == {both}  # repeats change nothing
    assert _ids(store, RunFilter(tags=["prod", "missing"])) == set()
    assert _ids(store, RunFilter(tags=["Prod"])) == set()  # exact, case included


def test_metadata_matches_a_value_by_its_text_strings_as_they_are_others_as_json(
    store: SqlRunStore,
) -> None:
    number = _run(store, metadata={"n": 5, "ratio": 0.5, "flag": False})
    text = _run(store, metadata={"n": "5", "obj": {"b": 1, "a": [2]}, "none": None})
    assert _ids(store, RunFilter(metadata={"n": "5"})) == {number, text}
    assert _ids(store, RunFilter(metadata={"n": "5.0"})) == set()
    assert _ids(store, RunFilter(metadata={"ratio": "0.5"})) == {number}
    assert _ids(store, RunFilter(metadata={"flag": "false"})) == {number}
    assert _ids(store, RunFilter(metadata={"obj": '{"a": [2], "b": 1}'})) == {text}
    assert _ids(store, RunFilter(metadata={"none": "null"})) == {text}
    assert _ids(store, RunFilter(metadata={"n": "5", "flag": "false"})) == {number}
    # Top-level keys only: a nested key is not a key of the run's metadata.
    assert _ids(store, RunFilter(metadata={"a": "[2]"})) == set()


def test_a_metadata_value_too_long_to_index_is_kept_but_not_found(store: SqlRunStore) -> None:
    long = "é" * (MAX_SEARCHABLE_BYTES // 2 + 1)  # two bytes each: just over the limit
    fits = "é" * (MAX_SEARCHABLE_BYTES // 2)
    kept = _run(store, metadata={"note": long, "nul": "a\x00b", "short": fits})
    run = store.get_run(kept)
    assert run is not None and run.run_metadata == {"note": long, "nul": "a\x00b", "short": fits}
    assert _ids(store, RunFilter(metadata={"short": fits})) == {kept}
    assert _ids(store, RunFilter(metadata={"note": long})) == set()
    # Postgres text cannot hold NUL: such a value is neither stored nor sent in a query.
    assert _ids(store, RunFilter(metadata={"nul": "a\x00b"})) == set()
    assert _ids(store, RunFilter(metadata={"k\x00": "v"})) == set()


def _expected(corpus: Corpus, keep: Any) -> list[str]:
    """The ids of the corpus's runs that ``keep`` accepts, newest first."""
    kept = [i for i in range(corpus.count) if keep(i)]
    kept.sort(key=lambda i: (corpus.created_at(i), corpus.run_id(i)), reverse=True)
    return [corpus.run_id(i) for i in kept]


def _pages(store: SqlRunStore, where: RunFilter, limit: int) -> list[str]:
    """Every run of ``where``, page by page through the keyset position."""
    ids: list[str] = []
    before = None
    while True:
        page = store.list_runs(where, limit=limit, before=before)
        ids += [run.id for run in page]
        if len(page) < limit:
            return ids
        before = (page[-1].created_at, page[-1].id)


def test_filtered_pages_are_newest_first_and_complete_however_the_list_is_read(
    store: SqlRunStore,
) -> None:
    """Runs come two a second, so pages split runs created at the same time. On SQLite,
    ``common`` (1,500 runs) is listed by probing the runs newest first and ``rare`` from its
    search rows: both read the same runs as every other plan."""
    corpus = Corpus(3000, tagged_every=2, rare_every=40, customers=3)
    seed(store, corpus)
    cases = [
        (RunFilter(tags=["common"]), lambda i: i % 2 == 0),
        (RunFilter(tags=["rare"]), lambda i: i % 40 == 0),
        (RunFilter(tags=["rare", "common"]), lambda i: i % 40 == 0),
        (RunFilter(metadata={"customer": "c1"}), lambda i: i % 2 == 0 and (i // 2) % 3 == 1),
        (RunFilter(graph="graph-4", tags=["common"]), lambda i: i % 10 == 4),
        (RunFilter(statuses=[RunStatus.QUEUED]), lambda i: i % 50 == 0),
        (
            RunFilter(created_after=corpus.created_at(999), created_before=corpus.created_at(2001)),
            lambda i: corpus.created_at(999) < corpus.created_at(i) < corpus.created_at(2001),
        ),
    ]
    for where, keep in cases:
        expected = _expected(corpus, keep)
        assert _pages(store, where, 97) == expected, where
        with store.read_engine.connect() as conn:
            for driving in [None, *range(len(where.search_run_ids()))]:
                stmt = q.list_runs(where, limit=len(expected) + 1, before=None, driving=driving)
                assert [row.id for row in conn.execute(stmt)] == expected, driving
