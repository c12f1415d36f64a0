"""The catalogue in a real browser: Playwright driving Debian's Chromium, headless, against
a real server that follows registry aliases and serves a chat model.

Each page loads with no console error and no failed request; search filters; the
lineage graph of a compressed version shows its parents; try-it and the chat box get
the model's answers; an alias move as admin changes which version answers, and is
refused without the token; axe-core finds no serious or critical violation. Every
page's screenshot is kept under test-artifacts/catalogue/.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from catalogue_fixtures import ADDS, TOKEN, digits_family
from traffic import infer, wait_for

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "test-artifacts" / "catalogue"
#: Quiet and offline: nothing but the server under test is contacted.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PAGES = {
    "list": "/ui",
    "model": "/ui/models/digits",
    "version": "/ui/models/digits/versions/1",
    "compressed-version": "/ui/models/digits-int8/versions/1",
    "chat-version": "/ui/models/chat/versions/1",
}
TIMEOUT_MS = 30_000


def _require(path: Path, hint: str) -> None:
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(hint)
        pytest.skip(hint)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    _require(CHROMIUM, "Chromium is missing: apt-get install -y chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(module_tmp, module_server):
    made = digits_family(module_tmp / "registry", with_chat=True)
    repo = module_tmp / "repo"
    repo.mkdir()
    served = ["models:/digits@production", "models:/digits-int8/1", "models:/chat@production"]
    return module_server(
        repo, *made.flags(module_tmp / "cache"), *[f"--model={uri}" for uri in served],
        "--admin-token", TOKEN, "--grpc-port", "0",
    )  # fmt: skip


class Watched:
    """A page with every console error, uncaught exception and failed request noted."""

    def __init__(self, page) -> None:
        self.page = page
        self.problems: list[str] = []
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        page.on("response", self._response)

    def _console(self, message) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text}")

    def _response(self, response) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.url}")


@pytest.fixture
def context(browser, server):
    opened = browser.new_context(base_url=server.url, viewport={"width": 1200, "height": 900})
    yield opened
    opened.close()


@pytest.fixture
def page(context) -> Watched:
    return Watched(context.new_page())


def _screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _answer(url: str, model: str = "digits") -> tuple[int, float]:
    with httpx.Client(base_url=url, timeout=30) as client:
        response = infer(client, model, np.zeros((1, 4), np.float32))
    body = response.json()
    return int(body["model_version"]), body["outputs"][0]["data"][0]


def test_every_page_loads_with_no_console_error_and_no_failed_request(page):
    for name, path in PAGES.items():
        page.page.goto(path)
        page.page.wait_for_load_state("networkidle")
        assert page.page.locator("h1").count() == 1, name
        _screenshot(page.page, name)
    assert page.problems == []


def test_no_page_has_a_serious_or_critical_accessibility_violation(browser, server):
    _require(AXE, "axe-core is missing: `make setup` installs it (npm ci)")
    # Playwright injects axe inline: only this scan's context lets the page's CSP pass it.
    context = browser.new_context(base_url=server.url, bypass_csp=True)
    try:
        tab = context.new_page()
        found = {}
        for name, path in PAGES.items():
            tab.goto(path)
            tab.add_script_tag(path=str(AXE))
            violations = tab.evaluate(
                """async () => (await axe.run(document, {resultTypes: ["violations"]}))
                     .violations.map(v => ({id: v.id, impact: v.impact,
                       nodes: v.nodes.map(n => n.html).slice(0, 3)}))"""
            )
            serious = [v for v in violations if v["impact"] in ("serious", "critical")]
            if serious:
                found[name] = serious
        assert found == {}
    finally:
        context.close()


def test_the_keyboard_reaches_the_content_and_the_search_box_first(page):
    page.page.goto("/ui")
    page.page.keyboard.press("Tab")
    assert page.page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.page.keyboard.press("Enter")
    assert page.page.evaluate("document.activeElement.id") == "main"
    page.page.keyboard.press("Tab")
    assert page.page.evaluate("document.activeElement.id") == "q"


def _search(page, text: str) -> list[str]:
    page.fill("#q", text)
    page.press("#q", "Enter")
    page.wait_for_load_state("load")
    return page.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.model)")


def test_search_filters_by_name_tag_and_metric(page):
    page.page.goto("/ui")
    everything = page.page.locator("tbody tr").count()
    assert everything == 4
    assert _search(page.page, "int8") == ["digits-int8"]
    assert _search(page.page, "task=chat") == ["chat"]
    assert _search(page.page, "accuracy>0.97") == ["digits"]
    assert _search(page.page, "digits accuracy>=0.969 task=classification") == [
        "digits",
        "digits-pruned",
    ]
    _screenshot(page.page, "list-searched")
    assert page.problems == []


def test_the_lineage_graph_of_a_compressed_version_shows_its_parents(page):
    page.page.goto("/ui/models/digits-int8/versions/1")
    nodes = page.page.locator("svg.lineage [data-node]")
    drawn = nodes.evaluate_all("nodes => nodes.map(n => n.dataset.node)")
    assert drawn == ["digits/2", "digits-pruned/1", "digits-int8/1"]  # left to right
    parent = page.page.locator('svg.lineage a[data-node="digits-pruned/1"]')
    assert "digits-pruned v1" in parent.text_content()
    tradeoffs = page.page.locator('table.tradeoffs[data-parent="digits-pruned/1"]')
    assert "accuracy" in tradeoffs.text_content()
    assert "-0.004" in tradeoffs.text_content()  # 0.965 against 0.969
    parent.focus()
    page.page.keyboard.press("Enter")
    page.page.wait_for_url("**/ui/models/digits-pruned/versions/1")
    drawn = nodes.evaluate_all("nodes => nodes.map(n => n.dataset.node)")
    assert drawn == ["digits/2", "digits-pruned/1", "digits-int8/1"]  # now as a descendant
    assert page.problems == []


@pytest.mark.parametrize(("model", "version"), [("digits", 1), ("digits-int8", 1)])
def test_try_it_returns_the_models_answer_and_the_live_state_counts_it(page, model, version):
    from playwright.sync_api import expect

    page.page.goto(f"/ui/models/{model}/versions/{version}")
    requests = page.page.locator("#live-requests")
    before = int(requests.text_content())
    page.page.fill("#shape-1", "[1, 4]")
    page.page.fill("#data-1", "[[1, 2, 3, 4]]")
    page.page.get_by_role("button", name="Send V2 request").click()
    answer = page.page.locator('#try-it-answer[data-status="200"]')
    answer.wait_for()
    body = json.loads(answer.text_content())
    added = ADDS[(model, version)]
    assert body["model_version"] == str(version)
    assert body["outputs"][0]["data"] == [1 + added, 2 + added, 3 + added, 4 + added]
    # The state section refreshes itself: the request shows up without a reload.
    expect(requests).to_have_text(str(before + 1), timeout=TIMEOUT_MS)
    assert "ms" in page.page.locator("#live-p50").text_content()
    assert page.problems == []


def test_the_chat_box_streams_the_models_reply(page, server):
    from openai import OpenAI

    page.page.goto("/ui/models/chat/versions/1")
    page.page.fill("#chat-max-tokens", "12")
    page.page.fill("#chat-temperature", "0")
    page.page.get_by_label("Message").fill("The capital of France is")
    page.page.get_by_role("button", name="Send").click()
    reply = page.page.locator('#chat-log li.assistant .text[data-done="true"]')
    reply.wait_for()
    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    expected = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "The capital of France is"}],
        max_tokens=12,
        temperature=0,
    )
    text = expected.choices[0].message.content
    assert text
    assert reply.text_content() == text
    assert int(reply.get_attribute("data-chunks")) > 1  # it arrived in pieces
    _screenshot(page.page, "chat-replied")
    assert page.problems == []


def test_an_alias_move_as_admin_changes_the_answering_version_and_needs_the_token(page, server):
    assert _answer(server.url) == (1, ADDS[("digits", 1)])
    tab = page.page
    tab.goto("/ui/models/digits/versions/2")
    admin = tab.locator("section.admin")
    assert admin.is_hidden()
    refused = tab.evaluate(
        """async () => (await fetch("/ui/api/models/digits/aliases", {method: "POST",
             headers: {"Content-Type": "application/json"},
             body: JSON.stringify({alias: "production", version: 2})})).status"""
    )
    assert refused == 401
    page.problems.clear()  # the refusal above is the point, not a page fault
    tab.fill("#admin-token", "not-the-token")
    tab.get_by_role("button", name="Sign in").click()
    tab.locator("#admin-message", has_text="Token refused").wait_for()
    assert admin.is_hidden()
    page.problems.clear()
    assert _answer(server.url) == (1, ADDS[("digits", 1)])

    tab.fill("#admin-token", TOKEN)
    tab.get_by_role("button", name="Sign in").click()
    admin.wait_for(state="visible")
    assert TOKEN not in tab.content()  # the field is emptied; nothing shows the token
    tab.fill("#alias-here", "production")
    with tab.expect_navigation():  # the page reloads to show the moved alias
        tab.get_by_role("button", name="Move alias to v2").click()
    wait_for(lambda: _answer(server.url) == (2, ADDS[("digits", 2)]))
    assert "production" in tab.locator("main dl.facts").first.text_content()
    admin.wait_for(state="visible")  # still signed in after the reload: once per session
    _screenshot(tab, "version-admin")
    assert page.problems == []
