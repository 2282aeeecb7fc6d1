"""The dashboard in a real browser: Debian's Chromium driven by Playwright (the system browser,
no browser download), against ``ingestd serve`` as a subprocess, while a worker drains jobs.

It signs in with an admin key, sees the counts change without a reload, filters the jobs table,
opens a job's timeline, passes an axe-core accessibility check (axe vendored under
tests/e2e/assets/), and saves a screenshot under the folder it prints.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright

from ingestd.app import App
from ingestd.config import Settings
from ingestd.ingest import ingest_files
from ingestd.service.keys import create_key
from tests.e2e.procs import ServeProcess
from tests.factories import write_corpus

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
AXE = Path(__file__).parent / "assets" / "axe.min.js"
ARTIFACTS = Path(os.environ.get("INGESTD_TEST_ARTIFACTS", ROOT / ".test-artifacts"))


def chromium() -> str:
    """The system Chromium, installed from Debian's packages when missing (`make test` installs
    it before the tests start; this is for a bare `pytest`)."""
    found = shutil.which("chromium")
    if found is None:
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=600", "chromium"],
            check=True,
            capture_output=True,
        )
        found = shutil.which("chromium")
    assert found, "chromium is not installed and could not be installed"
    return found


async def count(page: Page, state: str) -> str:
    return await page.inner_text(f"#count-{state} strong")


async def axe_violations(page: Page) -> list[dict[str, object]]:
    await page.add_script_tag(path=str(AXE))
    return await page.evaluate(  # type: ignore[no-any-return]
        "async () => (await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa']})).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => ({id: v.id, help: v.help, nodes: v.nodes.map(n => n.target.join(' '))}))"
    )


async def test_dashboard_live_in_chromium(app: App, settings: Settings, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_corpus(docs, 8, paragraphs=1)
    (docs / "empty.txt").write_bytes(b"")
    await ingest_files(app.db, app.blobs, [docs], owner="team-a")
    key = (await create_key(app.db, owner="ops", name="dashboard", admin=True)).token
    serve = ServeProcess(settings, tmp_path / "logs")
    shots = ARTIFACTS / "dashboard"
    shots.mkdir(parents=True, exist_ok=True)
    print(f"\ndashboard screenshots: {shots}")
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
            page = await browser.new_page(viewport={"width": 1280, "height": 1400})
            await page.goto(serve.url)
            # Signed out: a labelled key field, and nothing else to see.
            assert await axe_violations(page) == []
            await page.get_by_label("Admin API key", exact=True).fill(
                "ingestd_0000000000000000_" + "x" * 43
            )
            await page.get_by_role("button", name="Sign in").click()
            await page.get_by_role("alert").filter(has_text="not").wait_for()
            await page.get_by_label("Admin API key", exact=True).fill(key)
            await page.get_by_role("button", name="Sign in").click()
            await page.wait_for_selector("#count-uploaded")
            assert await count(page, "uploaded") == "9"
            await page.wait_for_function(
                "document.getElementById('connection').textContent === 'live'"
            )
            await page.evaluate("window.stillTheSamePage = true")

            # A run while the page is open: the counts follow without a reload.
            assert await app.worker(burst=True).run() == 0
            await page.wait_for_function(
                "document.querySelector('#count-complete strong').textContent === '8'"
            )
            assert await count(page, "uploaded") == "0"
            assert await page.evaluate("window.stillTheSamePage") is True
            await page.get_by_text("empty.txt").first.wait_for()  # latest failures

            # The jobs table: filter by state, then by file name.
            await page.get_by_label("State", exact=True).select_option("failed_parse")
            await page.get_by_role("button", name="Filter").click()
            rows = page.locator("#jobs tbody tr")
            await page.wait_for_function("document.querySelectorAll('#jobs tbody tr').length === 1")
            assert "parse.empty" in await rows.first.inner_text()
            await page.get_by_role("button", name="Clear").click()
            await page.get_by_label("File name contains", exact=True).fill("doc-00003")
            await page.get_by_role("button", name="Filter").click()
            await page.wait_for_function(
                "[...document.querySelectorAll('#jobs tbody tr')].length === 1"
            )
            assert await page.get_by_label("State", exact=True).input_value() == ""
            assert "doc-00003.md" in await rows.first.inner_text()

            # Overview passes the accessibility check, and is kept as a picture.
            assert await axe_violations(page) == []
            await page.screenshot(path=str(shots / "overview.png"), full_page=True)

            # One click to a job's timeline.
            await page.goto(serve.url + "/#")
            await page.wait_for_selector("#failures a")
            await page.locator("#failures a", has_text="empty.txt").click()
            await page.wait_for_selector("#timeline li")
            assert "Job empty.txt" in await page.inner_text("#job-title")
            timeline = await page.locator("#timeline li").all_inner_texts()
            assert any("failed_parse" in line for line in timeline)
            assert "parse.empty" in await page.inner_text("#job-error")
            assert await axe_violations(page) == []
            await page.screenshot(path=str(shots / "job.png"), full_page=True)
            await browser.close()
    finally:
        serve.stop()
