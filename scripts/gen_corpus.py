#!/usr/bin/env python
"""Deterministic test corpus for ingestd's parsers, search tests, benchmarks and the demo.

    python scripts/gen_corpus.py OUT_DIR [--sizes small,medium,large] [--malformed] [--seed N]
    python scripts/gen_corpus.py samples --demo      # the committed demo corpus in samples/
    python scripts/gen_corpus.py OUT_DIR --backlog 1000 --kb 5   # 1,000 Markdown docs of ~5 KB

Writes one document per supported format (pdf, docx, pptx, xlsx, html, md, txt, csv, json) and
size class -- small (< 100 KB), medium (100 KB - 1 MB), large (1 - 10 MB) -- each about its own
topic, with headings, lists and tables; with ``--malformed`` also a set of broken files. Everything
comes from a seeded random generator and fixed timestamps: the same seed gives the same bytes.

``OUT_DIR/manifest.json`` lists, for each document, its expected headings, a few table cells, a
few phrases and a distinctive topic phrase for search tests; for each malformed file, the error
code it must end with (``null`` when it must parse). Importable: ``generate(out_dir, sizes,
malformed) -> manifest``; the small set with the malformed files takes about a second.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import random
import re
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

FORMATS = ("pdf", "docx", "pptx", "xlsx", "html", "md", "txt", "csv", "json")
SIZES = ("small", "medium", "large")
SIZE_BOUNDS = {
    "small": (1, 100_000),
    "medium": (100_000, 1_000_000),
    "large": (1_000_000, 10_000_000),
}
DEFAULT_SEED = 20240611
DEMO_SEED = 7
FIXED_TIME = dt.datetime(2024, 6, 11, 12, 0, 0)
MEDIA_TYPES = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "html": "text/html",
    "md": "text/markdown",
    "txt": "text/plain",
    "csv": "text/csv",
    "json": "application/json",
}
# Sections per document and rows per table, by size class and format (calibrated to SIZE_BOUNDS).
_SCALE = {
    "small": {"*": (4, 5)},
    "medium": {
        "*": (80, 12),
        "pdf": (200, 12),
        "docx": (300, 12),
        "pptx": (90, 8),
        "xlsx": (60, 200),
        "csv": (60, 40),
        "json": (50, 12),
        "md": (90, 12),
    },
    "large": {
        "*": (1000, 12),
        "pdf": (2000, 12),
        "docx": (3500, 12),
        "pptx": (700, 8),
        "xlsx": (200, 1000),
        "csv": (500, 100),
        "json": (700, 12),
        "md": (1500, 12),
    },
}


# ---- topics: each document is about one, so search tests can tell documents apart -----------


@dataclass(frozen=True)
class Topic:
    phrase: str
    title: str
    headings: tuple[str, ...]
    nouns: tuple[str, ...]
    verbs: tuple[str, ...]
    adjectives: tuple[str, ...]
    columns: tuple[str, ...]
    labels: tuple[str, ...]
    facts: tuple[str, ...]


def _topic(block: str) -> Topic:
    fields = re.sub(r"\n {4}", " ", block.strip()).split("\n")
    lists = [tuple(item.strip() for item in f.split(";") if item.strip()) for f in fields[2:]]
    return Topic(fields[0].strip(), fields[1].strip(), *lists)


# One block per topic, one field per line (long fields continue on indented lines): phrase,
# title, headings, nouns, verbs, adjectives, table columns, first-column labels, fact sentences.
_TOPIC_BLOCKS = """
quarterly revenue
Quarterly Revenue Report
Regional Revenue Breakdown; Subscription Growth; Operating Margin; Outlook for Next Quarter;
    Currency Effects; Top Customers
revenue; margin; bookings; invoice; forecast; subscription; customer; ledger
grew; declined; exceeded; offset; lifted; tracked
recurring; fiscal; regional; gross; annual; quarterly
Region; Q1 revenue; Q2 revenue; Growth
North America; Europe; Asia Pacific; Latin America; Middle East
Quarterly revenue rose on the strength of enterprise subscriptions.; Deferred revenue grew
    faster than recognised revenue this quarter.; The finance team revised the quarterly revenue
    forecast upward.

employee onboarding
Employee Onboarding Handbook
First Day Checklist; Accounts and Equipment; Meeting Your Team; Benefits Enrollment;
    Training Plan; Probation Review
laptop; badge; mentor; benefits; payroll; orientation; manager; handbook
receives; completes; schedules; signs; reviews; joins
new; mandatory; optional; personal; secure; weekly
Task; Owner; Due day; Status
Laptop setup; Badge photo; Payroll form; Security training; Team lunch
Every new hire is paired with an onboarding buddy for the first month.; Employee onboarding
    starts with a welcome email a week before the first day.; Managers confirm that the benefits
    enrollment form is signed within thirty days.

coral reef restoration
Coral Reef Restoration Field Notes
Nursery Sites; Fragment Survival; Water Temperature; Bleaching Events; Diver Surveys;
    Community Partners
coral; reef; fragment; nursery; diver; lagoon; polyp; algae
recovered; bleached; settled; spawned; transplanted; monitored
tropical; shallow; healthy; branching; coastal; marine
Site; Fragments planted; Survival rate; Depth
Blue Lagoon; Turtle Bay; North Channel; Mangrove Edge; Outer Shoal
Coral reef restoration teams planted staghorn fragments on rope nurseries.; Survival of
    transplanted coral was highest in the sheltered lagoon.; Divers recorded new polyp growth on
    every restored reef plot.

data center cooling
Data Center Cooling Assessment
Chiller Performance; Hot Aisle Containment; Airflow Measurements; Power Usage Effectiveness;
    Free Cooling Hours; Maintenance Findings
chiller; rack; airflow; compressor; sensor; aisle; coolant; server
cooled; overheated; throttled; circulated; measured; dropped
thermal; redundant; liquid; ambient; efficient; raised
Hall; Inlet temperature; Cooling load; PUE
Hall A; Hall B; Hall C; Hall D; Annex
Data center cooling accounts for a third of the facility's electricity.; Hot aisle
    containment lowered the average rack inlet temperature.; The chiller plant switched to free
    cooling on most winter nights.

sourdough bread baking
Sourdough Bread Baking Guide
Feeding the Starter; Mixing and Autolyse; Bulk Fermentation; Shaping the Loaf; Scoring and
    Baking; Troubleshooting Dense Crumb
starter; dough; crust; crumb; flour; banneton; levain; oven
rises; ferments; proofs; bakes; folds; rests
sour; crusty; hydrated; wholegrain; golden; airy
Stage; Time; Temperature; Notes
Levain build; Autolyse; Bulk rise; Cold proof; Bake
Sourdough bread baking begins with a lively, bubbly starter.; A long cold proof gives the
    loaf a deeper sour flavour.; Steam in the first twenty minutes lets the crust expand fully.

urban bicycle infrastructure
Urban Bicycle Infrastructure Plan
Protected Bike Lanes; Intersection Design; Bike Parking; Ridership Counts; Safety Data;
    Funding Sources
bike lane; cyclist; intersection; curb; commuter; corridor; signal; rack
connects; separates; reduces; widens; protects; links
protected; painted; continuous; urban; safe; busy
Corridor; Length km; Daily riders; Crashes
Harbor Street; Mill Road; Station Avenue; River Path; Park Loop
Urban bicycle infrastructure works best as a connected network.; Protected bike lanes cut
    crashes on the busiest corridor by half.; Ridership counts doubled after the river path
    opened.

clinical trial enrollment
Clinical Trial Enrollment Update
Screening Results; Site Activation; Patient Retention; Inclusion Criteria; Adverse Events;
    Recruitment Plan
patient; site; investigator; protocol; consent; cohort; visit; dose
enrolled; screened; withdrew; randomised; consented; completed
eligible; blinded; randomised; adverse; clinical; interim
Site; Screened; Enrolled; Retention
Site 101; Site 102; Site 205; Site 310; Site 412
Clinical trial enrollment reached two thirds of the target cohort.; Every participant signed
    informed consent before randomisation.; Retention remained high because visits were moved
    closer to home.

solar panel maintenance
Solar Panel Maintenance Log
Panel Cleaning; Inverter Checks; Output Monitoring; Storm Damage; Wiring Inspection;
    Warranty Claims
panel; inverter; array; string; module; bracket; output; wiring
generated; degraded; cleaned; replaced; inspected; tripped
photovoltaic; rooftop; dusty; faulty; peak; sunny
Array; Output kWh; Soiling loss; Faults
Roof East; Roof West; Carport; Ground Mount; Barn
Solar panel maintenance restored output lost to dust and pollen.; An inverter fault tripped
    the east string twice in one week.; Cleaning the array in spring raised output by several
    percent.

medieval castle architecture
Medieval Castle Architecture
Curtain Walls; The Keep; Gatehouses and Drawbridges; Moats and Earthworks; Towers; Daily
    Life Inside
keep; rampart; moat; gatehouse; tower; battlement; bailey; portcullis
defended; surrounded; collapsed; fortified; guarded; rebuilt
stone; fortified; round; royal; medieval; defensive
Castle; Century; Wall height m; Towers
Harlech; Caernarfon; Bodiam; Dover; Conwy
Medieval castle architecture evolved from timber towers to stone keeps.; Concentric walls
    let defenders shoot over the inner rampart.; The gatehouse became the strongest point of the
    later castles.

customer churn analysis
Customer Churn Analysis
Churn by Plan; Cancellation Reasons; Cohort Retention; Support Tickets; Win-back Campaigns;
    Predictive Signals
subscriber; plan; cancellation; cohort; renewal; discount; ticket; account
churned; renewed; downgraded; cancelled; returned; upgraded
monthly; annual; loyal; inactive; premium; at-risk
Plan; Subscribers; Churn rate; Renewals
Basic; Standard; Premium; Family; Student
Customer churn analysis shows most cancellations happen in the second month.; Annual plans
    churn far less than monthly plans.; A win-back discount brought a fifth of lapsed
    subscribers back.

warehouse inventory logistics
Warehouse Inventory and Logistics Review
Stock Levels; Picking Accuracy; Inbound Shipments; Dock Scheduling; Cycle Counts; Carrier
    Performance
pallet; shipment; carrier; forklift; dock; order; stock; bin
shipped; stocked; picked; delayed; counted; received
inbound; outbound; seasonal; backordered; bulk; fragile
Warehouse; Pallets; Orders shipped; On-time %
Dock North; Dock South; Cold Store; Overflow; Returns Bay
Warehouse inventory logistics improved once cycle counts became weekly.; Carriers delivered
    nine in ten inbound shipments on time.; Picking accuracy rose after bins were relabelled.

cybersecurity incident response
Cybersecurity Incident Response Playbook
Detection and Triage; Containment; Eradication; Recovery; Forensics; Lessons Learned
alert; endpoint; credential; firewall; phishing; malware; analyst; log
detected; contained; isolated; patched; escalated; restored
malicious; compromised; critical; suspicious; encrypted; internal
Incident; Severity; Hours to contain; Systems
INC-101; INC-102; INC-103; INC-104; INC-105
Cybersecurity incident response starts with triage of the first alert.; The compromised
    endpoint was isolated from the network within an hour.; Analysts rotated every exposed
    credential after containment.

beekeeping honey production
Beekeeping and Honey Production Journal
Hive Inspections; Queen Health; Varroa Mites; Honey Harvest; Swarm Control; Winter Feeding
hive; queen; colony; frame; nectar; comb; brood; apiary
foraged; swarmed; capped; harvested; overwintered; requeened
busy; healthy; wild; golden; strong; calm
Hive; Frames of brood; Honey kg; Mite count
Hive Alder; Hive Birch; Hive Cedar; Hive Damson; Hive Elm
Beekeeping and honey production depend on a strong spring colony.; The queen in the cedar
    hive laid eggs across eight frames.; Honey was harvested only from fully capped comb.

railway timetable punctuality
Railway Timetable Punctuality Report
On-time Performance; Signal Failures; Rolling Stock; Timetable Changes; Passenger Numbers;
    Engineering Works
train; platform; signal; timetable; carriage; junction; driver; route
departed; arrived; delayed; cancelled; overtook; terminated
punctual; late; peak; regional; express; rush-hour
Route; Services; On-time %; Cancellations
Coast Line; Valley Line; Airport Express; Northern Loop; City Shuttle
Railway timetable punctuality improved after the new signalling went live.; Most delays
    started at the busy junction outside the main station.; Express services ran on time more
    often than regional trains.

database migration runbook
Database Migration Runbook
Pre-migration Checks; Schema Changes; Data Copy; Cutover Window; Rollback Plan;
    Post-migration Validation
replica; schema; index; table; backup; query; connection; snapshot
migrated; replicated; indexed; restored; validated; rolled back
primary; read-only; consistent; online; logical; nightly
Table; Rows; Copy minutes; Checksums
orders; customers; invoices; events; sessions
The database migration runbook lists every step of the cutover window.; A fresh backup is
    taken and restored before any schema change.; Row counts and checksums are compared after
    the data copy.

volcanic soil vineyards
Volcanic Soil Vineyards Survey
Soil Composition; Grape Varieties; Harvest Dates; Irrigation; Wine Character; Climate Trends
vine; grape; soil; slope; cellar; harvest; terroir; vintage
ripened; pruned; fermented; irrigated; harvested; aged
volcanic; mineral; steep; dry; black; ancient
Parcel; Hectares; Yield t/ha; Harvest week
Etna North; Santorini Ridge; Lanzarote Pits; Azores Coast; Canary Terrace
Volcanic soil vineyards give wines a distinctive mineral edge.; Vines on the black slopes
    ripened a week earlier than the valley floor.; Growers dug pits in the ash to shelter each
    vine from the wind.
"""

TOPICS = tuple(_topic(block) for block in _TOPIC_BLOCKS.strip().split("\n\n"))

_CLAUSES = (
    "during the review period",
    "across every site",
    "ahead of the planned date",
    "despite the difficult start",
    "according to the latest figures",
    "for the third time this year",
    "after the changes took effect",
    "in line with the agreed targets",
    "without extra cost",
    "compared with the previous period",
)


# ---- document content ----------------------------------------------------------------------


@dataclass
class Section:
    heading: str
    paragraphs: list[str]
    items: list[str]
    table: list[list[str]]


@dataclass
class DocSpec:
    topic: Topic
    title: str
    intro: str
    sections: list[Section] = field(default_factory=list)


def build_spec(topic: Topic, rng: random.Random, sections: int, rows: int) -> DocSpec:
    intro = f"{topic.facts[0]} {_sentence(topic, rng)} {topic.facts[1]}"
    spec = DocSpec(topic, topic.title, intro)
    for index in range(sections):
        base = topic.headings[index % len(topic.headings)]
        heading = (
            base
            if index < len(topic.headings)
            else f"{base} (part {index // len(topic.headings) + 1})"
        )
        paragraphs = [
            " ".join(_sentence(topic, rng) for _ in range(rng.randint(3, 5))) for _ in range(2)
        ]
        if index == 0:
            paragraphs[0] = f"{topic.facts[2]} {paragraphs[0]}"
        items = [
            f"{rng.choice(topic.adjectives).capitalize()} {rng.choice(topic.nouns)} "
            f"{rng.choice(_CLAUSES)}"
            for _ in range(4)
        ]
        spec.sections.append(Section(heading, paragraphs, items, _table(topic, rng, rows)))
    return spec


def _sentence(topic: Topic, rng: random.Random) -> str:
    adjective, noun, verb = (
        rng.choice(topic.adjectives),
        rng.choice(topic.nouns),
        rng.choice(topic.verbs),
    )
    other = rng.choice(topic.nouns)
    number = rng.randint(2, 980)
    clause = rng.choice(_CLAUSES)
    return f"The {adjective} {noun} {verb} the {other} {clause} with {number} recorded cases."


def _table(topic: Topic, rng: random.Random, rows: int) -> list[list[str]]:
    table = [list(topic.columns)]
    for index in range(rows):
        label = topic.labels[index % len(topic.labels)]
        if index >= len(topic.labels):
            label = f"{label} {index // len(topic.labels) + 1}"
        table.append(
            [
                label,
                str(rng.randint(100, 9999)),
                str(rng.randint(10, 999)),
                f"{rng.randint(1, 99)}.{rng.randint(0, 9)}%",
            ]
        )
    return table


def csv_rows(spec: DocSpec) -> list[list[str]]:
    """The single table a CSV holds: every section's rows, each with a note (facts first)."""
    sentences = list(spec.topic.facts) + [
        s + "." for sec in spec.sections for p in sec.paragraphs for s in p.split(". ") if s
    ]
    rows = [[*spec.topic.columns, "Notes"]]
    for index, row in enumerate(r for sec in spec.sections for r in sec.table[1:]):
        rows.append([*row, sentences[index % len(sentences)].rstrip(".") + "."])
    return rows


# ---- writers: one per format ---------------------------------------------------------------


def write_md(spec: DocSpec) -> bytes:
    out = [f"# {spec.title}", spec.intro]
    for section in spec.sections:
        out.append(f"## {section.heading}")
        out.extend(section.paragraphs)
        out.append("\n".join(f"- {item}" for item in section.items))
        out.append(_md_table(section.table))
    return ("\n\n".join(out) + "\n").encode()


def _md_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def write_txt(spec: DocSpec) -> bytes:
    out = [f"{spec.title}\n{'=' * len(spec.title)}", spec.intro]
    for section in spec.sections:
        out.append(f"{section.heading}\n{'-' * len(section.heading)}")
        out.extend(section.paragraphs)
        out.append("\n".join(f"* {item}" for item in section.items))
        out.append(
            "\n".join("  ".join(cell.ljust(16) for cell in row).rstrip() for row in section.table)
        )
    return ("\n\n".join(out) + "\n").encode()


def write_html(spec: DocSpec) -> bytes:
    out = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(spec.title)}</title>",
        "<style>body { font-family: sans-serif } .hidden-style-marker { color: red }</style>",
        "<script>var scriptMarker = 'SCRIPT_MARKER_MUST_NOT_APPEAR';</script>",
        '</head><body><nav><a href="/">Home</a></nav><main>',
        f"<h1>{escape(spec.title)}</h1><p>{escape(spec.intro)}</p>",
    ]
    for section in spec.sections:
        out.append(f"<section><h2>{escape(section.heading)}</h2>")
        out.extend(f"<p>{escape(paragraph)}</p>" for paragraph in section.paragraphs)
        out.append("<ul>" + "".join(f"<li>{escape(item)}</li>" for item in section.items) + "</ul>")
        head = "".join(f"<th>{escape(cell)}</th>" for cell in section.table[0])
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
            for row in section.table[1:]
        )
        out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>")
    out.append("</main><footer><p>Generated test document.</p></footer></body></html>\n")
    return "\n".join(out).encode()


def write_csv(spec: DocSpec) -> bytes:
    import csv

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(csv_rows(spec))
    return buffer.getvalue().encode()


def write_json(spec: DocSpec) -> bytes:
    document = {
        "title": spec.title,
        "topic": spec.topic.phrase,
        "summary": spec.intro,
        "sections": [
            {
                "heading": s.heading,
                "paragraphs": s.paragraphs,
                "highlights": s.items,
                "table": [dict(zip(s.table[0], row, strict=True)) for row in s.table[1:]],
            }
            for s in spec.sections
        ],
    }
    return json.dumps(document, indent=2).encode()


def write_pdf(spec: DocSpec) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import (
        ListFlowable,
        ListItem,
        Paragraph,
        SimpleDocTemplate,
        Table,
        TableStyle,
    )

    styles = getSampleStyleSheet()
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer, pagesize=A4, title=spec.title, author="ingestd corpus", invariant=1
    )
    story: list[Any] = [
        Paragraph(escape(spec.title), styles["Heading1"]),
        Paragraph(escape(spec.intro), styles["BodyText"]),
    ]
    grid = TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.grey)])
    for section in spec.sections:
        story.append(Paragraph(escape(section.heading), styles["Heading2"]))
        story.extend(Paragraph(escape(p), styles["BodyText"]) for p in section.paragraphs)
        story.append(
            ListFlowable(
                [ListItem(Paragraph(escape(i), styles["BodyText"])) for i in section.items],
                bulletType="bullet",
            )
        )
        story.append(Table(section.table, style=grid, hAlign="LEFT"))
    document.build(story)
    return buffer.getvalue()


def write_docx(spec: DocSpec) -> bytes:
    import docx

    document = docx.Document()
    _fix_core_properties(document.core_properties, spec.title)
    document.add_heading(spec.title, 0)
    document.add_paragraph(spec.intro)
    for section in spec.sections:
        document.add_heading(section.heading, 1)
        for paragraph in section.paragraphs:
            document.add_paragraph(paragraph)
        for item in section.items:
            document.add_paragraph(item, style="List Bullet")
        table = document.add_table(rows=len(section.table), cols=len(section.table[0]))
        table.style = "Table Grid"
        for row, values in zip(table.rows, section.table, strict=True):
            for cell, value in zip(row.cells, values, strict=True):
                cell.text = value
    buffer = io.BytesIO()
    document.save(buffer)
    return normalize_zip(buffer.getvalue())


def write_pptx(spec: DocSpec) -> bytes:
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    _fix_core_properties(deck.core_properties, spec.title)
    cover = deck.slides.add_slide(deck.slide_layouts[0])
    cover.shapes.title.text = spec.title
    cover.placeholders[1].text = spec.intro
    for section in spec.sections:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = section.heading
        body = slide.placeholders[1].text_frame
        body.text = section.items[0]
        for item in section.items[1:]:
            body.add_paragraph().text = item
        box = slide.shapes.add_textbox(Inches(0.5), Inches(5.6), Inches(9), Inches(1.5)).text_frame
        box.text = section.paragraphs[0]
        slide.notes_slide.notes_text_frame.text = section.paragraphs[1]
        table_slide = deck.slides.add_slide(deck.slide_layouts[5])
        table_slide.shapes.title.text = f"{section.heading}: figures"
        rows, cols = len(section.table), len(section.table[0])
        shape = table_slide.shapes.add_table(
            rows, cols, Inches(0.5), Inches(1.5), Inches(9), Inches(0.3 * rows)
        )
        for r, values in enumerate(section.table):
            for c, value in enumerate(values):
                shape.table.cell(r, c).text = value
    buffer = io.BytesIO()
    deck.save(buffer)
    return normalize_zip(buffer.getvalue())


def xlsx_sheet_names(spec: DocSpec) -> list[str]:
    names = ["Summary"]
    for index, section in enumerate(spec.sections):
        base = re.sub(r"[\[\]:*?/\\]", " ", section.heading)[:24].strip()
        names.append(f"{index + 1:03d} {base}")
    return names


def write_xlsx(spec: DocSpec) -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook(write_only=True)
    workbook.properties.title = spec.title
    workbook.properties.created = workbook.properties.modified = FIXED_TIME
    names = xlsx_sheet_names(spec)
    summary = workbook.create_sheet(names[0])
    summary.append(["Topic", spec.title])
    summary.append(["Summary", spec.intro])
    for section in spec.sections:
        summary.append(["Section", section.heading])
        for paragraph in section.paragraphs:
            summary.append(["Note", paragraph])
    for name, section in zip(names[1:], spec.sections, strict=True):
        sheet = workbook.create_sheet(name)
        sheet.append(section.table[0])
        for row in section.table[1:]:
            sheet.append([row[0], int(row[1]), int(row[2]), row[3]])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return normalize_zip(buffer.getvalue())


WRITERS: dict[str, Callable[[DocSpec], bytes]] = {
    "pdf": write_pdf,
    "docx": write_docx,
    "pptx": write_pptx,
    "xlsx": write_xlsx,
    "html": write_html,
    "md": write_md,
    "txt": write_txt,
    "csv": write_csv,
    "json": write_json,
}


def _fix_core_properties(properties: Any, title: str) -> None:
    properties.title = title
    properties.author = "ingestd corpus"
    properties.created = properties.modified = properties.last_printed = FIXED_TIME


def normalize_zip(data: bytes) -> bytes:
    """Rewrite a ZIP with fixed timestamps (core.xml dates included), so output is reproducible."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                stamp = FIXED_TIME.strftime("%Y-%m-%dT%H:%M:%SZ")
                content = re.sub(
                    rb"(<dcterms:(created|modified)[^>]*>)[^<]*",
                    rb"\g<1>" + stamp.encode(),
                    content,
                )
            target.writestr(
                zipfile.ZipInfo(info.filename, date_time=FIXED_TIME.timetuple()[:6]),
                content,
                compress_type=zipfile.ZIP_DEFLATED,
            )
    return out.getvalue()


# ---- expectations for the manifest ---------------------------------------------------------


def expectations(spec: DocSpec, fmt: str) -> dict[str, Any]:
    """What a correct parse of this document must contain (headings, cells, phrases)."""
    sections = spec.sections
    picked = [sections[0], sections[len(sections) // 2], sections[-1]]
    headings = [spec.title] + [s.heading for s in sections[:3]] + [sections[-1].heading]
    phrases = [
        spec.topic.facts[0],
        picked[1].paragraphs[0].split(". ")[0] + ".",
        picked[2].paragraphs[-1],
    ]
    cells = sections[0].table[0][:2] + sections[0].table[1][:2] + sections[-1].table[-1][:2]
    if fmt == "pptx":
        phrases = [spec.topic.facts[0], picked[1].paragraphs[0], picked[2].items[-1]]
    elif fmt == "xlsx":
        names = xlsx_sheet_names(spec)
        headings = [*names[:3], names[-1]]
    elif fmt == "csv":
        rows = csv_rows(spec)
        headings, cells = [], rows[0][:2] + rows[1][:2] + rows[-1][:2]
        phrases = [rows[1][-1], rows[len(rows) // 2][-1], rows[-1][-1]]
    elif fmt == "json":
        headings = []
    return {
        "headings": _unique(headings),
        "table_cells": _unique(cells),
        "phrases": _unique(phrases),
    }


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


# ---- malformed files -----------------------------------------------------------------------


def malformed_files(rng: random.Random) -> list[tuple[str, bytes, str | None, str, dict[str, Any]]]:
    """(name, content, expected error code or None, description, extra manifest fields)."""
    small_pdf = write_pdf(build_spec(TOPICS[0], random.Random(1), 6, 5))
    long_line, line_phrases = _long_line(rng)
    return [
        (
            "truncated.pdf",
            small_pdf[: len(small_pdf) * 6 // 10],
            "parse.corrupt",
            "a PDF cut off at 60 %",
            {},
        ),
        (
            "encrypted.pdf",
            _encrypted_pdf(small_pdf),
            "parse.encrypted",
            "a PDF with a user password",
            {},
        ),
        ("empty.txt", b"", "parse.empty", "a zero-byte file", {}),
        ("junk.pdf", rng.randbytes(64 * 1024), "parse.corrupt", "random bytes named .pdf", {}),
        (
            "zip-bomb.docx",
            _docx_zip_bomb(),
            "parse.too_large",
            "a DOCX whose document.xml unpacks to 1 GiB",
            {},
        ),
        (
            "long-line.txt",
            long_line,
            None,
            "one 5 MB line of words: parses (the chunker splits it)",
            {"phrases": line_phrases},
        ),
        (
            "invalid-utf8.txt",
            bytes(rng.randrange(0x80, 0x100) for _ in range(32 * 1024)),
            "parse.invalid_encoding",
            "bytes that are no valid UTF-8 nor coherent in any code page",
            {},
        ),
        (
            "nested.html",
            b"<html><body>"
            + b"<div>" * 100_000
            + b"deep"
            + b"</div>" * 100_000
            + b"</body></html>",
            "parse.too_large",
            "HTML nested 100,000 levels deep",
            {},
        ),
        (
            "no-text.pdf",
            _image_only_pdf(),
            "parse.empty",
            "a PDF with drawings but no text layer",
            {},
        ),
        (
            "archive.zip",
            _plain_zip(),
            "parse.unsupported_type",
            "a ZIP archive that is no Office file",
            {},
        ),
        (
            "legacy.doc",
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4096),
            "parse.unsupported_type",
            "a legacy binary Word file",
            {},
        ),
        (
            "encrypted.docx",
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
            + bytes(512)
            + "EncryptedPackage".encode("utf-16-le")
            + bytes(4096),
            "parse.encrypted",
            "a password-protected DOCX (an OLE2 container)",
            {},
        ),
        (
            "garbage.md",
            ("\ue000\ue001\ue002\ue003 " * 4000).encode(),
            "parse.garbage",
            "valid UTF-8 made of private-use characters (fails validation, not parsing)",
            {"stage": "validate"},
        ),
    ]


def _long_line(rng: random.Random) -> tuple[bytes, list[str]]:
    words = TOPICS[3].nouns + TOPICS[3].adjectives + ("the", "and", "of", "with")
    markers = [
        "Beginning marker phrase for the long line.",
        "Middle marker phrase for the long line.",
        "Final marker phrase for the long line.",
    ]
    filler = " ".join(rng.choice(words) for _ in range(720_000))
    half = len(filler) // 2
    text = f"{markers[0]} {filler[:half]} {markers[1]} {filler[half:]} {markers[2]}"
    return text.encode(), markers


def _encrypted_pdf(pdf: bytes) -> bytes:
    import pikepdf

    out = io.BytesIO()
    with pikepdf.open(io.BytesIO(pdf)) as document:
        encryption = pikepdf.Encryption(
            owner="corpus-owner", user="corpus-user", R=4, aes=False, metadata=False
        )
        document.save(out, encryption=encryption, static_id=True)
    return out.getvalue()


def _image_only_pdf() -> bytes:
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, invariant=1)
    page.rect(100, 400, 300, 200, fill=1)
    page.circle(300, 300, 50)
    page.save()
    return buffer.getvalue()


def _plain_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(
            zipfile.ZipInfo("readme.txt", date_time=FIXED_TIME.timetuple()[:6]), "just an archive"
        )
    return out.getvalue()


def _docx_zip_bomb(total: int = 1 << 30) -> bytes:
    """A DOCX-shaped ZIP whose word/document.xml inflates to ``total`` bytes from ~1.6 MB."""
    head = b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
    tail = b"</w:body></w:document>"
    block = b"<w:p/>" * 100_000
    repeats = (total - len(head) - len(tail)) // len(block)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    # After a full flush the compressor forgets its history, so every block compresses the same.
    repeated = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    last = compressor.compress(tail) + compressor.flush()
    crc = zlib.crc32(head)
    for _ in range(repeats):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(tail, crc)
    size = len(head) + len(block) * repeats + len(tail)
    document = (first + repeated * repeats + last, crc, size)
    parts = {
        "[Content_Types].xml": b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        b'<Default Extension="rels" '
        b'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        b'<Override PartName="/word/document.xml" ContentType="application/'
        b'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>',
        "_rels/.rels": b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        b'<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        b'relationships/officeDocument" Target="word/document.xml"/></Relationships>',
    }
    entries = [
        (name, _deflate(content), zlib.crc32(content), len(content))
        for name, content in parts.items()
    ]
    entries.append(("word/document.xml", *document))
    return _raw_zip(entries)


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def _raw_zip(entries: list[tuple[str, bytes, int, int]]) -> bytes:
    """A ZIP built by hand from already-deflated entries (zipfile cannot take those)."""
    out, directory = bytearray(), bytearray()
    dos_time, dos_date = 0, (2024 - 1980) << 9 | 6 << 5 | 11
    for name, compressed, crc, size in entries:
        encoded = name.encode()
        offset = len(out)
        out += struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            20,
            0,
            8,
            dos_time,
            dos_date,
            crc,
            len(compressed),
            size,
            len(encoded),
            0,
        )
        out += encoded + compressed
        directory += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            0,
            8,
            dos_time,
            dos_date,
            crc,
            len(compressed),
            size,
            len(encoded),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        directory += encoded
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(directory), len(out), 0
    )
    return bytes(out + directory + end)


# ---- the corpus ----------------------------------------------------------------------------

DEMO_FILES = (
    ("quarterly-revenue-report.pdf", 0),
    ("employee-onboarding-handbook.docx", 1),
    ("coral-reef-restoration.md", 2),
    ("data-center-cooling-assessment.pdf", 3),
    ("sourdough-bread-baking-guide.html", 4),
    ("urban-bicycle-infrastructure-plan.pptx", 5),
    ("clinical-trial-enrollment.xlsx", 6),
    ("solar-panel-maintenance-log.csv", 7),
    ("medieval-castle-architecture.html", 8),
    ("customer-churn-analysis.json", 9),
    ("warehouse-inventory-logistics.docx", 10),
    ("cybersecurity-incident-response.md", 11),
    ("beekeeping-honey-production.txt", 12),
    ("railway-timetable-punctuality.pdf", 13),
)


def generate(
    out_dir: str | Path,
    sizes: Sequence[str] = ("small",),
    malformed: bool = False,
    *,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Write the corpus under ``out_dir`` and return (and write) its manifest."""
    root = Path(out_dir)
    manifest: dict[str, Any] = {
        "generator": "scripts/gen_corpus.py",
        "seed": seed,
        "documents": [],
        "malformed": [],
    }
    for size_index, size in enumerate(sizes):
        for format_index, fmt in enumerate(FORMATS):
            topic = TOPICS[(format_index + size_index * len(FORMATS)) % len(TOPICS)]
            name = f"{size}/{topic.phrase.replace(' ', '-')}.{fmt}"
            manifest["documents"].append(_write_document(root, name, fmt, size, topic, seed))
    if malformed:
        rng = random.Random(f"{seed}:malformed")
        for name, content, code, description, extra in malformed_files(rng):
            _write(root / "malformed" / name, content)
            manifest["malformed"].append(
                {
                    "file": f"malformed/{name}",
                    "bytes": len(content),
                    "expected_error": code,
                    "stage": "parse",
                    "description": description,
                    **extra,
                }
            )
    _write(root / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def generate_demo(out_dir: str | Path, *, seed: int = DEMO_SEED) -> dict[str, Any]:
    """The small mixed-format demo corpus (committed as samples/), manifest in .manifest.json."""
    root = Path(out_dir)
    manifest: dict[str, Any] = {
        "generator": "scripts/gen_corpus.py --demo",
        "seed": seed,
        "documents": [],
    }
    for name, topic_index in DEMO_FILES:
        fmt = name.rsplit(".", 1)[1]
        manifest["documents"].append(
            _write_document(root, name, fmt, "small", TOPICS[topic_index], seed, sections=3)
        )
    _write(root / ".manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def _write_document(
    root: Path, name: str, fmt: str, size: str, topic: Topic, seed: int, sections: int | None = None
) -> dict[str, Any]:
    scale = _SCALE[size].get(fmt, _SCALE[size]["*"])
    rng = random.Random(f"{seed}:{name}")
    spec = build_spec(topic, rng, sections or scale[0], scale[1])
    content = WRITERS[fmt](spec)
    _write(root / name, content)
    return {
        "file": name,
        "format": fmt,
        "media_type": MEDIA_TYPES[fmt],
        "size_class": size,
        "bytes": len(content),
        "topic": topic.phrase,
        "title": spec.title,
        **expectations(spec, fmt),
    }


def generate_backlog(
    out_dir: str | Path, count: int, kb: float, *, seed: int = DEFAULT_SEED
) -> dict[str, Any]:
    """``count`` distinct Markdown documents of about ``kb`` KB each, topics in turn: a backlog for
    the drain benchmark (``OUT_DIR/backlog-<count>x<kb>kb/``, manifest in ``manifest.json``)."""
    root = Path(out_dir)
    manifest: dict[str, Any] = {
        "generator": f"scripts/gen_corpus.py --backlog {count} --kb {kb:g}",
        "seed": seed,
        "documents": [],
    }
    sections = _sections_for(kb * 1000, seed)
    for index in range(count):
        topic = TOPICS[index % len(TOPICS)]
        name = f"backlog-{count}x{kb:g}kb/{index:05d}-{topic.phrase.replace(' ', '-')}.md"
        manifest["documents"].append(
            _write_document(root, name, "md", "small", topic, seed, sections=sections)
        )
    _write(root / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def _sections_for(target_bytes: float, seed: int) -> int:
    """Sections a small-scale Markdown document needs to reach about ``target_bytes``."""
    topic, rng = TOPICS[0], random.Random(f"{seed}:calibrate")
    one = len(write_md(build_spec(topic, rng, 1, _SCALE["small"]["*"][1])))
    eleven = len(write_md(build_spec(topic, rng, 11, _SCALE["small"]["*"][1])))
    per_section = (eleven - one) / 10
    return max(1, round(1 + (target_bytes - one) / per_section))


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--sizes", default="small", help="comma-separated: small,medium,large")
    parser.add_argument("--malformed", action="store_true", help="also write the malformed set")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--demo", action="store_true", help="write the demo corpus (samples/) instead"
    )
    parser.add_argument(
        "--backlog", type=int, default=None, help="write N Markdown documents of --kb KB instead"
    )
    parser.add_argument("--kb", type=float, default=5.0, help="size of each backlog document")
    args = parser.parse_args(argv)
    if args.backlog is not None:
        manifest = generate_backlog(
            args.out_dir, args.backlog, args.kb, seed=args.seed or DEFAULT_SEED
        )
    elif args.demo:
        manifest = generate_demo(
            args.out_dir, seed=args.seed if args.seed is not None else DEMO_SEED
        )
    else:
        sizes = [size.strip() for size in args.sizes.split(",") if size.strip()]
        unknown = set(sizes) - set(SIZES)
        if unknown:
            parser.error(f"unknown size(s): {', '.join(sorted(unknown))}")
        manifest = generate(
            args.out_dir,
            sizes,
            args.malformed,
            seed=args.seed if args.seed is not None else DEFAULT_SEED,
        )
    for entry in manifest["documents"] + manifest.get("malformed", []):
        print(f"{entry['bytes']:>10,}  {entry['file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
