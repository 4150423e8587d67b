"""The page in real headless Chromium (Debian's ``chromium``, driven by Playwright with
``executable_path``: no browser download). Where Chromium is missing these tests fail,
they do not skip. Screenshots go to test-artifacts/ (git-ignored)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from medfl.api import Settings, create_app
from tests.api.conftest import ROOT, TOKEN

pytestmark = pytest.mark.browser
SHOTS = ROOT / "test-artifacts" / "screenshots"
NUMERIC = ["age", "trestbps", "chol", "thalch", "oldpeak"]
CATEGORICAL = ["sex", "cp", "fbs", "restecg", "exang", "slope", "ca", "thal"]


def _chromium() -> str:
    found = os.environ.get("MEDFL_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail(
            "Debian's chromium is not installed (make install installs it: apt-get install "
            "chromium); the page's browser tests cannot run without it"
        )
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("page"), api_token=TOKEN)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", settings
    server.should_exit = True
    thread.join(15)


@pytest.fixture(scope="module")
def browser() -> Iterator:  # type: ignore[type-arg]
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True)
        yield chromium
        chromium.close()


def _seen_progress(page) -> None:  # type: ignore[no-untyped-def]
    """Records each text the live round counter shows, as the browser sees it change."""
    page.evaluate(
        """() => { window.seen = [];
        new MutationObserver(() => window.seen.push(document.querySelector('#run-progress')
          .textContent)).observe(document.querySelector('#run-progress'),
          {childList: true, characterData: true, subtree: true}); }"""
    )


def test_a_researcher_creates_and_runs_the_heart_disease_experiment_in_the_page(served, browser):
    base, settings = served
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1100, "height": 1400})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    page.on("pageerror", lambda e: console.append(str(e)))
    page.goto(f"{base}/#token={TOKEN}")
    page.wait_for_selector("#feature-age")
    assert page.evaluate("location.hash") == ""  # the token leaves the address bar
    for column in NUMERIC:
        page.select_option(f"#feature-{column}", "numeric")
    for column in CATEGORICAL:
        page.select_option(f"#feature-{column}", "categorical")

    page.fill("#f-name", "Heart Disease")  # the API's message shows next to the field
    page.click("#create")
    page.wait_for_selector("#f-name-error:not(:empty)")
    assert page.text_content("#f-name-error") == (
        "use lower-case letters, digits and '-', starting and ending with a letter or digit"
    )
    assert page.get_attribute("#f-name", "aria-invalid") == "true"
    page.screenshot(path=str(SHOTS / "1-inline-validation.png"), full_page=True)

    page.fill("#f-name", "heart-disease")
    page.click("#create")
    page.wait_for_selector("#created:not(:empty)", timeout=30_000)
    _seen_progress(page)
    page.focus("button[aria-label='Run heart-disease']")
    page.keyboard.press("Enter")
    page.wait_for_selector("#report:not([hidden])", timeout=60_000)
    page.screenshot(path=str(SHOTS / "2-finished-run.png"), full_page=True)

    seen = page.evaluate("window.seen")
    assert seen[-1] == "round 15 of 15"
    assert len(set(seen)) >= 3, seen  # rounds arrived one by one, not all at the end
    assert page.text_content("#run-status") == "succeeded"
    assert page.locator("#chart g[data-series='all sites'] circle").count() == 15
    run_id = page.evaluate("state.run")
    result = json.loads((settings.runs_dir / run_id / "result.json").read_text())
    accuracy = result["final"]["metrics"]["accuracy"]
    assert page.text_content("#final-accuracy") == f"{accuracy:.3f}"
    assert float(page.get_attribute("#final-accuracy", "data-value")) == accuracy
    labels = page.locator("#metrics-table tbody th").all_text_contents()
    assert labels == ["federated", "local baseline", "pooled baseline"]
    assert page.text_content("#privacy") == "No differential privacy in this run."
    assert page.locator("#plots img").count() == 1
    downloads = page.locator("#downloads button").all_text_contents()
    assert [d.split(" (")[0] for d in downloads][-2:] == [
        "Download report.md", "Download result.json",
    ]  # fmt: skip
    assert all(url.startswith((base, "data:", "blob:")) for url in requests), requests
    # the one message: the browser logging the API's 422 for the bad name
    assert console == [
        "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"
    ], console


CONTRAST = """() => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => { const [r, g, b] = rgb(c).map(v => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const background = (e) => { for (; e; e = e.parentElement) {
    const c = getComputedStyle(e).backgroundColor;
    if (c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') return c; } return 'rgb(255, 255, 255)'; };
  const worst = [];
  for (const e of document.querySelectorAll('body *')) {
    const text = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!e.offsetParent || !text) continue;
    if (e.closest('svg')) continue;
    const [a, b] = [lum(getComputedStyle(e).color), lum(background(e))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 7) worst.push([e.tagName, e.textContent.trim().slice(0, 30), ratio.toFixed(2)]);
  }
  return worst; }"""


def test_every_form_control_has_a_label_and_text_contrast_is_at_least_7(served, browser):
    base, _ = served
    page = browser.new_page()
    page.goto(f"{base}/#token={TOKEN}")
    page.wait_for_selector("#feature-age")
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, button')]
        .filter(e => !e.closest('[hidden]'))
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                     && !e.textContent.trim())
        .map(e => e.id || e.outerHTML)"""
    )
    assert unlabelled == []
    assert page.evaluate(CONTRAST) == []


def test_a_wrong_token_shows_the_sign_in_form_with_the_reason(served, browser):
    base, _ = served
    page = browser.new_page()
    page.goto(f"{base}/#token=not-the-token")
    page.wait_for_selector("#login:not([hidden])")
    assert page.text_content("#login-error") == "The token was refused; sign in again."
    page.fill("#token", TOKEN)
    page.keyboard.press("Enter")
    page.wait_for_selector("#app:not([hidden])")
    page.screenshot(path=str(SHOTS / "3-signed-in.png"))
    assert Path(SHOTS / "3-signed-in.png").stat().st_size > 0


def test_the_openapi_docs_render_offline(served, browser):
    base, _ = served
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{base}/docs")
    page.wait_for_selector(".opblock")
    assert page.locator(".opblock").count() == 22
    assert all(url.startswith(base) for url in requests), requests
