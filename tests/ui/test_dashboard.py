"""The dashboard (/ui) and the offline Swagger UI (/docs) in a real browser.

Playwright drives Debian's chromium (``/usr/bin/chromium``, installed by ``.ci/run``); the
browsers Playwright downloads itself are never used. Each test starts a real server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, expect, sync_playwright

from tests.conftest import SAMPLE_WORKFLOWS, LiveServer
from tests.ui.ui_workflows import BOLD_NODE, HTML_NODE, HTML_OUTPUT, LOOP_ROUNDS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WORKFLOWS = f"{SAMPLE_WORKFLOWS},tests.ui.ui_workflows"
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(apt-get install -y chromium; .ci/run installs it)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, errors  # an uncaught script error fails the test


@pytest.fixture
def server(sqlite_url: str, start_server: Callable[..., LiveServer]) -> LiveServer:
    return start_server(sqlite_url, GRAPHFLOW_WORKFLOWS=WORKFLOWS)


def run_via_api(server: LiveServer, graph: str, body: dict[str, Any], key: str = "") -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    resp = httpx.post(
        f"{server.url}/graphs/{graph}/runs?wait=true", json=body, headers=headers, timeout=30
    )
    assert resp.status_code in (200, 202), resp.text
    return resp.json()


def node(page: Page, name: str) -> Any:
    """The graph picture's node ``name`` (matched on the attribute's value, not a selector)."""
    return page.locator("svg.graph g.node").filter(has=page.locator("title", has_text=name))


def run_id_from(page: Page) -> str:
    page.wait_for_url("**/ui/#/runs/*")
    return urlsplit(page.url).fragment.removeprefix("/runs/")


def test_form_starts_a_run_whose_nodes_go_from_running_to_succeeded(
    server: LiveServer, page: Page, tmp_path: Path
) -> None:
    page.goto(f"{server.url}/ui")
    page.get_by_role("link", name="basic_fanout").click()
    expect(page.locator("svg.graph g.node")).to_have_count(6)
    expect(page.locator("svg.graph path.edge.destination")).to_have_count(4)
    page.fill("#field-work_items", "a, b ,c,d")
    page.fill("#field-delay_scale", "2")  # processors sleep 0.4-1.0 s: long enough to watch
    page.get_by_role("button", name="Start run").click()
    run_id = run_id_from(page)

    expect(node(page, "processor_b")).to_have_attribute("data-status", "running")
    expect(page.locator(".run-summary .badge")).to_have_attribute(
        "data-status", "succeeded", timeout=30_000
    )
    for name in ["start", "processor_a", "processor_b", "processor_c", "processor_d", "combiner"]:
        expect(node(page, name)).to_have_attribute("data-status", "succeeded")
    run = httpx.get(f"{server.url}/runs/{run_id}").json()
    assert run["input"] == {"work_items": ["a", "b", "c", "d"], "delay_scale": 2}
    bars = page.locator(".timeline-bar")
    expect(bars).to_have_count(len(run["nodes"]))
    shown = {bars.nth(i).get_attribute("data-node-run") for i in range(bars.count())}
    assert shown == {n["id"] for n in run["nodes"]}
    expect(page.locator(".output-slot")).to_contain_text("Processed 4 items")
    page.screenshot(path=str(tmp_path / "run-page.png"), full_page=False)
    assert (tmp_path / "run-page.png").stat().st_size > 10_000


def test_a_node_that_ran_several_times_shows_its_count(server: LiveServer, page: Page) -> None:
    run = run_via_api(server, "loop", {"input": {}})

    page.goto(f"{server.url}/ui/#/runs/{run['id']}")

    expect(node(page, "work")).to_have_attribute("data-count", str(LOOP_ROUNDS))
    expect(node(page, "work").locator(".count-text")).to_have_text(f"×{LOOP_ROUNDS}")
    expect(node(page, "work").locator(".count")).to_have_attribute("visibility", "visible")
    expect(page.locator("svg.graph path.edge.back")).to_have_count(1)  # check -> work
    expect(page.locator(".timeline-bar")).to_have_count(2 * LOOP_ROUNDS)


def test_a_failed_run_shows_its_error(server: LiveServer, page: Page) -> None:
    run = run_via_api(server, "failing", {"input": {"x": 1}})
    assert run["status"] == "failed"

    page.goto(f"{server.url}/ui/#/runs/{run['id']}")

    expect(page.locator(".run-summary .badge")).to_have_attribute("data-status", "failed")
    expect(page.locator(".run-error")).to_contain_text("ValueError")
    expect(page.locator(".run-error")).to_contain_text("boom: the node failed on purpose")
    expect(node(page, "boom")).to_have_attribute("data-status", "failed")
    expect(page.locator(".node-error")).to_have_text(
        ["", "ValueError: boom: the node failed on purpose"]  # a, then boom
    )


def test_html_in_names_descriptions_and_outputs_is_shown_as_text(
    server: LiveServer, page: Page
) -> None:
    run = run_via_api(server, "html_names", {"input": {}})

    page.goto(f"{server.url}/ui/#/runs/{run['id']}")
    expect(page.locator(".run-summary .badge")).to_have_attribute("data-status", "succeeded")
    expect(page.locator("svg.graph g.node title")).to_have_text([HTML_NODE, BOLD_NODE])
    expect(page.locator(".node-name")).to_have_text([HTML_NODE, BOLD_NODE])
    expect(page.locator(".output-slot")).to_contain_text(json.dumps(HTML_OUTPUT)[1:-1])
    page.goto(f"{server.url}/ui/#/graphs/html_names")
    expect(page.locator(".description")).to_have_text(
        "<i>Node names</i> and outputs with HTML in them."
    )

    assert page.locator("main img, main b, main i, main script").count() == 0
    assert page.evaluate("window.__xss") is None


def test_runs_list_filters_and_shows_new_runs_without_a_reload(
    server: LiveServer, page: Page
) -> None:
    failed = run_via_api(server, "failing", {"input": {}})
    page.goto(f"{server.url}/ui/#/runs")
    expect(page.locator(f'tr[data-run="{failed["id"]}"]')).to_be_visible()

    later = run_via_api(server, "three_step", {"input": {"x": 1}})  # polled in, newest first
    expect(page.locator("tr[data-run]").first).to_have_attribute("data-run", later["id"])
    page.select_option("select[name=status]", "failed")
    expect(page.locator("tr[data-run]")).to_have_count(1)
    page.select_option("select[name=status]", "")
    page.select_option("select[name=graph]", "three_step")
    expect(page.locator("tr[data-run]")).to_have_count(1)
    expect(page.locator("tr[data-run]")).to_have_attribute("data-run", later["id"])
    page.locator("tr[data-run] a").click()
    expect(page.locator(".run-summary .badge")).to_have_attribute("data-status", "succeeded")


def test_runs_list_pages_with_the_cursor(server: LiveServer, page: Page) -> None:
    ids = [run_via_api(server, "three_step", {"input": {"x": i}})["id"] for i in range(21)]
    page.goto(f"{server.url}/ui/#/runs")
    expect(page.locator("tr[data-run]")).to_have_count(20)
    expect(page.locator("tr[data-run]").first).to_have_attribute("data-run", ids[-1])

    page.get_by_role("button", name="Older ›").click()

    expect(page.locator("tr[data-run]")).to_have_count(1)
    expect(page.locator("tr[data-run]")).to_have_attribute("data-run", ids[0])
    expect(page.get_by_role("button", name="Older ›")).to_be_disabled()


def test_with_api_keys_the_page_asks_for_a_key_and_never_puts_it_in_a_url(
    sqlite_url: str, start_server: Callable[..., LiveServer], page: Page
) -> None:
    server = start_server(sqlite_url, GRAPHFLOW_API_KEYS="k1", GRAPHFLOW_WORKFLOWS=WORKFLOWS)
    requests: list[Request] = []
    page.on("request", lambda r: requests.append(r))
    page.goto(f"{server.url}/ui")
    key_input = page.locator(".key-form input[name=api-key]")
    key_input.fill("wrong")
    page.get_by_role("button", name="Continue").click()
    expect(page.locator(".key-form")).to_contain_text("refused")

    page.locator(".key-form input[name=api-key]").fill("k1")
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("link", name="three_step").click()
    page.fill("#field-x", "2")
    page.get_by_role("button", name="Start run").click()
    run_id_from(page)

    expect(page.locator(".run-summary .badge")).to_have_attribute("data-status", "succeeded")
    expect(page.locator(".stream-state")).to_have_text("finished")
    assert page.evaluate("sessionStorage.getItem('graphflow.apiKey')") == "k1"
    assert all("k1" not in r.url for r in requests)
    api_calls = [r for r in requests if "/ui" not in r.url and r.method != "OPTIONS"]
    assert api_calls and all(r.headers.get("authorization") for r in api_calls[-3:])
    assert httpx.get(f"{server.url}/graphs").status_code == 401  # the API itself stays closed


def test_docs_work_offline(server: LiveServer, page: Page) -> None:
    html = httpx.get(f"{server.url}/docs").text
    assert "http" not in html, html  # no CDN (nor any absolute) URL
    hosts: list[str] = []
    page.on("request", lambda r: hosts.append(urlsplit(r.url).hostname or r.url))

    page.goto(f"{server.url}/docs")

    expect(page.locator(".opblock").first).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/graphs/{name}/runs")).to_be_visible()
    assert page.locator(".opblock").count() >= 7
    assert hosts and set(hosts) == {"127.0.0.1"}, hosts


def test_the_cancel_button_cancels_a_running_run(server: LiveServer, page: Page) -> None:
    resp = httpx.post(f"{server.url}/graphs/slow_chain/runs", json={"input": {"delay": 1.0}})
    run_id = resp.json()["id"]
    page.goto(f"{server.url}/ui/#/runs/{run_id}")
    # Whichever node runs when the page is up (a busy machine may load it late).
    expect(page.locator('svg.graph g.node[data-status="running"]')).to_have_count(1)

    page.get_by_role("button", name="Cancel run").click()

    expect(page.locator(".run-summary .badge")).to_have_attribute("data-status", "cancelled")
    expect(page.get_by_role("button", name="Cancel run")).to_be_disabled()
    expect(node(page, "s7")).to_have_attribute("data-status", "idle")  # never started
    assert httpx.get(f"{server.url}/runs/{run_id}").json()["status"] == "cancelled"


def test_an_interrupted_run_shows_what_it_waits_for_and_resumes_from_the_page(
    server: LiveServer, page: Page
) -> None:
    run = run_via_api(server, "approval", {"input": {"topic": "<b>graphs</b>"}})
    assert run["status"] == "interrupted"
    page.goto(f"{server.url}/ui/#/runs/{run['id']}")

    expect(page.locator(".run-summary .badge")).to_have_attribute("data-status", "interrupted")
    expect(node(page, "review")).to_have_attribute("data-status", "interrupted")
    waiting = page.locator(".waiting .interrupt")
    expect(waiting).to_have_count(1)
    expect(waiting).to_contain_text("A short note on <b>graphs</b>.")  # as text, not markup

    waiting.locator("textarea").fill("not json")
    page.get_by_role("button", name="Resume run").click()
    expect(page.locator(".resume-error")).to_contain_text("is not JSON")

    waiting.locator("textarea").fill('{"approved": true}')
    page.get_by_role("button", name="Resume run").click()

    expect(page.locator(".run-summary .badge")).to_have_attribute("data-status", "succeeded")
    expect(node(page, "publish")).to_have_attribute("data-status", "succeeded")
    expect(page.locator(".waiting")).to_have_count(0)
    stored = httpx.get(f"{server.url}/runs/{run['id']}").json()
    assert stored["status"] == "succeeded"
    assert stored["output"]["outcome"] == "published"


def test_the_retry_button_runs_a_failed_run_again(server: LiveServer, page: Page) -> None:
    run = run_via_api(server, "failing", {"input": {"x": 1}})
    page.goto(f"{server.url}/ui/#/runs/{run['id']}")
    expect(page.locator(".run-summary .badge")).to_have_attribute("data-status", "failed")

    page.get_by_role("button", name="Retry run").click()

    # The sample node fails every time: the retry ends failed again, on its second attempt.
    row = page.locator("tr[data-node-run]").filter(has=page.locator(".node-name", has_text="boom"))
    expect(row.locator("td").nth(3)).to_contain_text("2")
    expect(page.locator(".run-summary .badge")).to_have_attribute("data-status", "failed")
    nodes = httpx.get(f"{server.url}/runs/{run['id']}").json()["nodes"]
    assert {n["node"]: n["attempt"] for n in nodes} == {"a": 1, "boom": 2}
