"""A 405 lists in ``Allow`` every method its path takes, across routers."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from service.api.methods import allowed_methods


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        (f"/runs/{uuid.uuid4()}", "DELETE, GET"),  # GET and DELETE come from two routers
        ("/runs/purge", "POST"),  # not GET: /runs/{run_id} matches it only as a parameter
        ("/runs/cancel", "POST"),
        ("/graphs", "GET"),
    ],
)
def test_a_405_allows_every_method_of_its_path(path: str, allowed: str, client: Any) -> None:
    resp = client.request("PUT", path)
    assert resp.status_code == 405
    assert resp.headers["Allow"] == allowed
    assert resp.json() == {"detail": "Method Not Allowed"}


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_literal_path_refuses_other_methods_before_a_parameter_route_takes_them(
    method: str, client: Any
) -> None:
    # /runs/{run_id} takes GET and DELETE, but "purge" is a path of its own, not a run id.
    for path in ("/runs/purge", "/runs/cancel"):
        resp = client.request(method, path)
        assert (resp.status_code, resp.headers["Allow"]) == (405, "POST"), resp.text


def test_other_http_errors_keep_their_answer(client: Any) -> None:
    resp = client.get("/no/such/path")
    assert resp.status_code == 404 and resp.json() == {"detail": "Not Found"}


def test_paths_matching_exactly_win_over_those_matching_through_a_parameter() -> None:
    paths = {
        "/items/{item_id}": {"get": {}, "delete": {}, "parameters": []},
        "/items/search": {"post": {}},
        "/items/{item_id}/tags/{tag}": {"put": {}},
    }
    assert allowed_methods(paths, "/items/7") == ["DELETE", "GET"]
    assert allowed_methods(paths, "/items/search") == ["POST"]
    assert allowed_methods(paths, "/items/7/tags/x") == ["PUT"]
    assert allowed_methods(paths, "/items/7/8") == []
    assert allowed_methods(paths, "/elsewhere") == []
