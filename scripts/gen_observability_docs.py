#!/usr/bin/env python
"""Write the metrics reference and the Prometheus alert rules from the code, so neither can go
stale: docs/reference/metrics.md (every metric a worker or `ingestd serve` exports) and
deploy/prometheus/alerts.yml (ingestd.observability.alerts.RULES, as Prometheus rules).

python scripts/gen_observability_docs.py          # rewrite both files
python scripts/gen_observability_docs.py --check  # exit 1 if either is out of date (tests do this)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from ingestd.observability import metrics
from ingestd.observability.alerts import RULES
from ingestd.observability.fleet import FleetSnapshot, fleet_families

ROOT = Path(__file__).resolve().parent.parent
METRICS_DOC = ROOT / "docs" / "reference" / "metrics.md"
ALERTS_FILE = ROOT / "deploy" / "prometheus" / "alerts.yml"
# Relative to the repository; point it at your own docs host when you deploy the rules.
RUNBOOK_BASE = ""


def _process_rows() -> list[str]:
    rows = []
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        family = value.describe()[0]
        suffix = "_total" if isinstance(value, Counter) else ""
        kind = {Counter: "counter", Gauge: "gauge", Histogram: "histogram"}[type(value)]
        labels = ", ".join(f"`{n}`" for n in value._labelnames) or "—"
        rows.append(f"| `{family.name}{suffix}` | {kind} | {labels} | {family.documentation} |")
    return sorted(rows)


def _fleet_rows() -> list[str]:
    rows = []
    for family in fleet_families(
        FleetSnapshot(
            {"complete": 0}, failures=[("f", "c", 0)], usage={"tokens": 0}, alerts={"a": False}
        )
    ):
        labels = sorted({k for s in family.samples for k in s.labels})
        names = ", ".join(f"`{n}`" for n in labels) or "—"
        rows.append(f"| `{family.name}` | gauge | {names} | {family.documentation} |")
    return rows


def render_metrics() -> str:
    head = "| metric | type | labels | meaning |\n|---|---|---|---|"
    return "\n".join(
        [
            "# Metrics reference",
            "",
            "Generated from `ingestd/observability/` by `scripts/gen_observability_docs.py`;",
            "a test fails when it is stale. Scraping them:",
            "[observability](../howto/observability.md).",
            "",
            "## Per process: `ingestd worker --metrics-port PORT`",
            "",
            "Each worker process counts what it did. Scrape every worker and sum across them",
            "(`sum(rate(ingestd_transitions_total[5m]))`). Histograms also export `_bucket`,",
            "`_sum` and `_count`. The standard `process_*` and `python_*` metrics come along.",
            "",
            head,
            *_process_rows(),
            "",
            "## Fleet-wide: `ingestd serve`'s `/metrics`",
            "",
            "Read from the database when scraped, so they are the same whoever scrapes them and",
            "however many workers run. Scrape one `ingestd serve` (several give the same numbers).",
            "",
            head,
            *_fleet_rows(),
            "",
        ]
    )


def render_alerts() -> str:
    rules = [
        {
            "alert": rule.name,
            "expr": rule.promql,
            "for": rule.for_,
            "labels": {"severity": rule.severity, "service": "ingestd"},
            "annotations": {
                "summary": rule.title,
                "description": f"{rule.title}. `ingestd alerts` shows the figure; the runbook "
                "says how to confirm and fix it.",
                "runbook_url": RUNBOOK_BASE + rule.runbook,
            },
        }
        for rule in RULES
    ]
    header = (
        "# Generated from ingestd/observability/alerts.py by scripts/gen_observability_docs.py.\n"
        "# ingestd evaluates the same conditions itself (`ingestd alerts`, GET /v1/alerts);\n"
        "# thresholds here are the defaults of the INGESTD_OBSERVABILITY__* settings.\n"
    )
    body = {"groups": [{"name": "ingestd", "rules": rules}]}
    return header + yaml.safe_dump(body, sort_keys=False, width=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stale = []
    for path, text in ((METRICS_DOC, render_metrics()), (ALERTS_FILE, render_alerts())):
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    for path in stale:
        print(
            f"{path} is out of date: run python scripts/gen_observability_docs.py", file=sys.stderr
        )
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
