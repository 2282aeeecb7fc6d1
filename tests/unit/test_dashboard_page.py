"""``GET /``'s page: one response with its stylesheet and script inlined, and the initial summary
as a JSON data block that no value can break out of."""

from __future__ import annotations

import json
import re

from ingestd.api.dashboard import INITIAL_ID, STATIC, render_page


def test_the_page_inlines_its_stylesheet_and_script() -> None:
    page = render_page(None)
    assert "/static/dashboard.js" not in page and "/static/dashboard.css" not in page
    assert STATIC.joinpath("dashboard.css").read_text() in page
    assert STATIC.joinpath("dashboard.js").read_text() in page
    assert INITIAL_ID not in page.split("<script>")[0]  # no data without a session


def test_the_initial_summary_cannot_end_its_script_block() -> None:
    hostile = "</script><script>alert(1)</script><!--"
    summary = {"latest_failures": [{"filename": hostile, "message": "a & b < c"}]}
    page = render_page(summary)
    match = re.search(
        rf'<script id="{INITIAL_ID}" type="application/json">(.*?)</script>', page, re.S
    )
    assert match is not None
    assert "<" not in match.group(1)
    assert json.loads(match.group(1)) == summary
    assert page.count("alert(1)") == 1
