#!/usr/bin/env python
"""Parse time and peak memory of pathological inputs: do the limits stop them early?

    python benchmarks/bench_hostile_inputs.py [--src DIR] [--out FILE.json] [--only NAME ...]

Generates each input into a temporary folder (nothing is kept in the repository), then parses it
with the default ``LocalParser`` in a fresh child process per input and reports the parse's wall
time, its outcome (document or error code) and the child's peak RSS (``VmHWM``) beside the
RSS just before parsing. ``--src`` points the children at another checkout's ``src`` (to measure
an older version: ``git archive 15c0bf8 src | tar -x -C /tmp/base``, then ``--src /tmp/base/src``).

Inputs (issue 7, finding 5):
- ``csv_field``: a 50 MB CSV whose second row is one quoted 50 M-character field;
- ``xlsx_cells``: an XLSX of 6 M cells whose sheet declares no ``<dimension>``;
- ``pdf_bomb``: a 1-page PDF whose ~195 KB content stream inflates to 200 MB;
- ``deep_json``: 4 KB of JSON nested 2,000 deep.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MEDIA_TYPES = {
    "csv_field": "text/csv",
    "xlsx_cells": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf_bomb": "application/pdf",
    "deep_json": "application/json",
}


def csv_field(path: Path, chars: int = 50_000_000) -> None:
    with open(path, "wb") as out:
        out.write(b"name,notes\nfirst,")
        out.write(b'"' + b"x" * chars + b'"\n')


def xlsx_cells(path: Path, rows: int = 100_000, cols: int = 60) -> None:
    """6 M numeric cells, random enough that the ZIP ratio looks like a real workbook's."""
    rng = random.Random(7)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as book:
        book.writestr("[Content_Types].xml", _CONTENT_TYPES)
        book.writestr("_rels/.rels", _RELS)
        book.writestr("xl/workbook.xml", _WORKBOOK)
        book.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        with book.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            sheet.write(_SHEET_HEAD)  # no <dimension>
            for row in range(1, rows + 1):
                cells = "".join(f"<c><v>{rng.randrange(10**6)}</v></c>" for _ in range(cols))
                sheet.write(f'<row r="{row}">{cells}</row>'.encode())
            sheet.write(b"</sheetData></worksheet>")


def pdf_bomb(path: Path, inflated: int = 200 * 1024 * 1024) -> None:
    content = b"BT /F1 24 Tf 72 720 Td (A small page with a very large content stream) Tj ET\n"
    compressor = zlib.compressobj(9)
    packed = compressor.compress(content)
    block = b" " * (1024 * 1024)
    for _ in range(inflated // len(block)):
        packed += compressor.compress(block)
    packed += compressor.flush()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed) + packed + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))


def deep_json(path: Path, depth: int = 2000) -> None:
    path.write_bytes(b"[" * depth + b"]" * depth)


GENERATORS: dict[str, Callable[[Path], None]] = {
    "csv_field": csv_field,
    "xlsx_cells": xlsx_cells,
    "pdf_bomb": pdf_bomb,
    "deep_json": deep_json,
}

# Runs in a fresh interpreter per input; prints one JSON line.
_CHILD = r"""
import json, sys, time
from ingestd.errors import IngestdError
from ingestd.parsers.local import LocalParser
from ingestd.parsers.isolation import _rss_bytes
from ingestd.parsers import local
for module in local.FORMAT_MODULES:
    __import__(module)
path, media_type = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
before = _rss_bytes()
started = time.perf_counter()
try:
    doc = LocalParser().parse(data, media_type, path)
    outcome = f"parsed, {len(doc.markdown):,} characters"
except IngestdError as exc:
    outcome = exc.code + (f" ({exc.details['limit']})" if "limit" in exc.details else "")
except BaseException as exc:
    outcome = f"raised {type(exc).__name__}"
seconds = time.perf_counter() - started
print(json.dumps({"seconds": round(seconds, 3), "outcome": outcome,
                  "rss_before_mb": round(before / 2**20),
                  "peak_rss_mb": round(_rss_bytes() / 2**20)}))
"""


def measure(name: str, path: Path, src: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), MEDIA_TYPES[name]],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        return {"outcome": f"child died (exit {done.returncode})", "stderr": done.stderr[-500:]}
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return {"file_kb": round(path.stat().st_size / 1024), **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--only", nargs="*", choices=sorted(GENERATORS))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="ingestd-hostile-") as tmp:
        for name in args.only or GENERATORS:
            path = Path(tmp) / f"{name}.{MEDIA_TYPES[name].rsplit('/', 1)[-1][-4:]}"
            GENERATORS[name](path)
            results[name] = measure(name, path, args.src)
            print(name, json.dumps(results[name]), flush=True)
            path.unlink()
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
_PKG = "http://schemas.openxmlformats.org/package/2006"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_SML = "application/vnd.openxmlformats-officedocument.spreadsheetml"
_CONTENT_TYPES = (
    f'{_XML}<Types xmlns="{_PKG}/content-types">'
    f'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
    f'<Override PartName="/xl/workbook.xml" ContentType="{_SML}.sheet.main+xml"/>'
    f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{_SML}.worksheet+xml"/>'
    "</Types>"
).encode()
_RELS = (
    f'{_XML}<Relationships xmlns="{_PKG}/relationships">'
    f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
).encode()
_WORKBOOK = (
    f'{_XML}<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    f'xmlns:r="{_REL}"><sheets><sheet name="Data" sheetId="1" r:id="rId1"/></sheets></workbook>'
).encode()
_WORKBOOK_RELS = (
    f'{_XML}<Relationships xmlns="{_PKG}/relationships">'
    f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
    "</Relationships>"
).encode()
_SHEET_HEAD = (
    f'{_XML}<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    "<sheetData>"
).encode()

if __name__ == "__main__":
    main()
