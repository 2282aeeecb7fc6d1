"""The shipped alert rules and the metrics reference match the code, and every rule's runbook
exists (promtool is not installable offline here, so the rules file is checked by a parser)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from ingestd.observability.alerts import RULES

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "deploy" / "prometheus" / "alerts.yml"
DURATION = re.compile(r"^\d+[smhd]$")


def test_generated_files_are_current() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_observability_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _anchors(markdown: str) -> set[str]:
    return {
        re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
        for line in markdown.splitlines()
        if line.startswith("## ")
    }


def _balanced(expr: str) -> bool:
    depth = {"(": 0, "{": 0, "[": 0}
    closing = {")": "(", "}": "{", "]": "["}
    for ch in expr:
        if ch in depth:
            depth[ch] += 1
        elif ch in closing:
            depth[closing[ch]] -= 1
            if depth[closing[ch]] < 0:
                return False
    return not any(depth.values())


def test_rules_file_is_well_formed_prometheus_rules() -> None:
    doc = yaml.safe_load(RULES_FILE.read_text())
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    assert [r["alert"] for r in rules] == [r.name for r in RULES]
    exported = set(re.findall(r"`(ingestd_\w+)`", (ROOT / "docs/reference/metrics.md").read_text()))
    anchors = _anchors((ROOT / "docs/howto/runbooks.md").read_text())
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule
        assert DURATION.match(rule["for"]), rule
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert _balanced(rule["expr"]), rule["expr"]
        for name in re.findall(r"\bingestd_\w+", rule["expr"]):
            assert name in exported, f"{rule['alert']} uses {name}, which no code exports"
        url = rule["annotations"]["runbook_url"]
        assert url.split("#")[1] in anchors, f"no runbook section for {rule['alert']}"
        assert rule["annotations"]["summary"]


def test_grafana_dashboard_queries_only_exported_metrics() -> None:
    import json

    board = json.loads((ROOT / "deploy" / "grafana" / "ingestd.json").read_text())
    exported = set(re.findall(r"`(ingestd_\w+)`", (ROOT / "docs/reference/metrics.md").read_text()))
    histograms = {f"{name}_bucket" for name in exported}
    assert board["panels"], "no panels"
    for panel in board["panels"]:
        assert panel["title"] and panel["targets"], panel
        for target in panel["targets"]:
            assert _balanced(target["expr"]), target["expr"]
            for name in re.findall(r"\bingestd_\w+", target["expr"]):
                assert name in exported | histograms, f"{panel['title']}: {name} is not exported"
