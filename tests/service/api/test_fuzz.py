"""Schemathesis fuzzes every operation of the OpenAPI schema in-process with every check it
has (what ``st run --checks all`` runs): positive data acceptance and negative data rejection
included.

Random graph names and run ids would only ever reach the 404 paths, so positive cases also get
real names (graphs without an input model, so any object is valid input) and real run ids.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, is_check_class, load_all_checks

from service.api.operations import cursor_for
from service.app import create_app
from tests.conftest import make_settings, wait_for_status

EXAMPLES_PER_OPERATION = 25

load_all_checks()
ALL_CHECKS = [check for check in CHECKS.get_all() if not is_check_class(check)]

# The list cursor is opaque ("format: cursor"): teach the fuzzer what a valid one looks like.
schemathesis.openapi.format(
    "cursor",
    st.builds(cursor_for, st.datetimes(timezones=st.just(UTC)), st.uuids().map(str)),
)


# Webhook URLs must point at a host the server may send to: an allowed literal address (no DNS,
# and nothing listens on the discard port, so deliveries just fail and are retried).
WEBHOOK_HOST = "127.0.0.1"
schemathesis.openapi.format(
    "uri",
    st.sampled_from([f"http://{WEBHOOK_HOST}:9/hook", f"https://{WEBHOOK_HOST}:9/h?run=1"]),
)


def _settings(database_url: str, **overrides: Any) -> Any:
    return make_settings(
        database_url,
        run_wait_timeout=0.2,
        webhook_secret="fuzz-secret",
        webhook_allow_hosts=[WEBHOOK_HOST],
        **overrides,
    )


def _seed(database_url: str) -> tuple[list[str], list[str]]:
    """Graph names that take any input, and ids of finished runs, from a first app instance."""
    with TestClient(create_app(_settings(database_url))) as client:
        graphs = client.get("/graphs").json()
        # slow_chain sleeps for the input's `delay`, which the fuzzer would make huge.
        names = [
            g["name"] for g in graphs if not g["has_input_schema"] and g["name"] != "slow_chain"
        ]
        run_ids = []
        for name in ("unstorable", "failing"):
            run_id = client.post(f"/graphs/{name}/runs", json={"input": {}}).json()["id"]
            wait_for_status(client, run_id)
            run_ids.append(run_id)
    return names, run_ids


def _known(case: Any, name: str, run_id: str) -> Any:
    params = case.path_parameters or {}
    if "name" in params:
        params["name"] = name
    if "run_id" in params:
        params["run_id"] = run_id
    return case


def _takes_list(parameter: Any) -> bool:
    """Whether a query parameter's schema is an array (perhaps or null): ``?tag=a&tag=b``."""
    schema = parameter.definition.get("schema", {})
    return any(s.get("type") == "array" for s in [schema, *schema.get("anyOf", [])])


def _fuzz(schema: Any, names: list[str], run_ids: list[str], **call: Any) -> list[str]:
    """Fuzz every operation of ``schema``; return the labels of those it fuzzed."""
    labels = []
    for result in schema.get_all_operations():
        operation = result.ok()
        positive = operation.as_strategy(GenerationMode.POSITIVE)
        strategy = st.one_of(
            st.builds(_known, positive, st.sampled_from(names), st.sampled_from(run_ids)),
            positive,
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def fuzz_operation(case: Any) -> None:
            # A query parameter whose value is an empty list is not sent at all, so a negative
            # case that relies on it is a valid request that the checks would call accepted.
            assume(not any(value == [] for value in (case.query or {}).values()))
            # Likewise a single value where a list is declared (``?tag=true`` for ``true``) is
            # sent as a list of its text, which may well be valid.
            query = case.query or {}
            lists = {p.name for p in case.operation.query if _takes_list(p) and p.name in query}
            assume(not any(not isinstance(query[name], list) for name in lists))
            case.call_and_validate(checks=ALL_CHECKS, **call)

        fuzz_operation()
        labels.append(operation.label)
    return labels


def test_every_check_of_schemathesis_runs() -> None:
    names = {check.__name__ for check in ALL_CHECKS}
    assert {"positive_data_acceptance", "negative_data_rejection", "not_a_server_error"} <= names
    assert {"status_code_conformance", "response_schema_conformance"} <= names
    assert len(ALL_CHECKS) == len(CHECKS.get_all())  # none left out as a class


def test_fuzzing_every_operation_finds_no_failures(database_url: str) -> None:
    names, run_ids = _seed(database_url)
    app = create_app(_settings(database_url))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    labels = _fuzz(schema, names, run_ids)
    assert {"POST /graphs/{name}/runs", "GET /runs/{run_id}/events"} <= set(labels)


def test_fuzzing_with_api_keys_set_finds_no_failures(sqlite_url: str) -> None:
    names, run_ids = _seed(sqlite_url)
    app = create_app(_settings(sqlite_url, api_keys=["fuzz-key"]))
    auth = {"Authorization": "Bearer fuzz-key"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=auth)
    labels = _fuzz(schema, names, run_ids, headers=auth)
    assert "POST /runs/{run_id}/cancel" in labels
