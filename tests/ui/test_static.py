"""The dashboard's and Swagger UI's files, served in-process (no browser)."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.ui.routes import STATIC_DIR
from tests.conftest import ROOT, make_settings

KEY = "k1"


@pytest.fixture
def keyed_client(sqlite_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(sqlite_url, api_keys=[KEY]))) as client:
        yield client


def test_ui_files_need_no_key_but_the_api_and_docs_do(keyed_client: TestClient) -> None:
    assert keyed_client.get("/ui", follow_redirects=False).status_code in (307, 308)
    page = keyed_client.get("/ui/")
    assert page.status_code == 200 and "GraphFlow" in page.text
    script = keyed_client.get("/ui/pages/run.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]

    for path in ["/graphs", "/runs", "/docs", "/openapi.json", "/docs/static/swagger-ui.css"]:
        assert keyed_client.get(path).status_code == 401, path
    assert keyed_client.get("/uix").status_code == 401  # only /ui and /ui/... are exempt
    auth = {"Authorization": f"Bearer {KEY}"}
    assert keyed_client.get("/docs/static/swagger-ui-bundle.js", headers=auth).status_code == 200


def test_docs_reference_only_local_files(sqlite_url: str) -> None:
    with TestClient(create_app(make_settings(sqlite_url))) as client:
        html = client.get("/docs").text
        assert "http" not in html
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert {"/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"} <= set(assets)
        for asset in assets:
            assert client.get(asset).status_code == 200, asset
        assert client.get("/redoc").status_code == 404


def test_pages_reference_only_local_files_and_never_set_inner_html() -> None:
    for path in STATIC_DIR.rglob("*"):
        if path.suffix in {".html", ".js", ".css"}:
            text = path.read_text()
            assert not re.search(r"(inner|outer)HTML\s*=|insertAdjacentHTML", text), path
            urls = re.findall(r"https?://[^\s\"')]+", text)
            assert urls == ["http://www.w3.org/2000/svg"] * len(urls), (path, urls)


def test_setuptools_packages_every_dashboard_file() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["service"]
    service = ROOT / "service"
    packaged = {path for pattern in patterns for path in service.glob(pattern)}  # as setuptools
    missing = {path for path in STATIC_DIR.rglob("*") if path.is_file()} - packaged
    assert not missing, sorted(str(path) for path in missing)
