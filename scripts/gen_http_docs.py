#!/usr/bin/env python
"""Write docs/reference/http.md from the app's OpenAPI schema, so it can never go stale.

python scripts/gen_http_docs.py          # rewrite the file
python scripts/gen_http_docs.py --check  # exit 1 if the file is out of date (tests do this)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ingestd.api.app import create_app
from ingestd.config import ApiSettings, Settings

OUT = Path(__file__).resolve().parent.parent / "docs" / "reference" / "http.md"


def schema() -> dict[str, Any]:
    app = create_app(Settings(api=ApiSettings(docs_enabled=True)))
    return app.openapi()


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        return f"[{_ref_name(spec['$ref'])}](#{_ref_name(spec['$ref']).lower()})"
    if "anyOf" in spec:
        return " \\| ".join(_type(s) for s in spec["anyOf"])
    if spec.get("type") == "array":
        return f"array of {_type(spec.get('items', {}))}"
    return str(spec.get("format") or spec.get("type") or "any")


def _body(op: dict[str, Any]) -> list[str]:
    body = op.get("requestBody")
    if not body:
        return []
    lines = ["", "Body:"]
    for media, content in body.get("content", {}).items():
        lines.append(f"`{media}` — {_type(content.get('schema', {}))}")
        props = content.get("schema", {}).get("properties")
        for name, prop in (props or {}).items():
            lines.append(f"- `{name}`: {_type(prop)}. {prop.get('description', '')}".rstrip())
    return lines


def _params(op: dict[str, Any]) -> list[str]:
    params = op.get("parameters", [])
    if not params:
        return []
    lines = ["", "| parameter | in | type | required | meaning |", "|---|---|---|---|---|"]
    for p in params:
        lines.append(
            f"| `{p['name']}` | {p['in']} | {_type(p.get('schema', {}))} | "
            f"{'yes' if p.get('required') else ''} | {p.get('description', '')} |"
        )
    return lines


def _responses(op: dict[str, Any]) -> list[str]:
    lines = ["", "| status | meaning | body |", "|---|---|---|"]
    for status, answer in sorted(op.get("responses", {}).items()):
        content = answer.get("content", {})
        body = ", ".join(_type(c.get("schema", {})) for c in content.values()) or "—"
        lines.append(f"| {status} | {answer.get('description', '')} | {body} |")
    return lines


def _models(components: dict[str, Any]) -> list[str]:
    lines = ["## Models", ""]
    for name, model in sorted(components.get("schemas", {}).items()):
        if name in ("HTTPValidationError", "ValidationError"):
            continue
        lines += [f"### {name}", ""]
        if model.get("description"):
            lines += [model["description"].strip(), ""]
        lines += ["| field | type | required | meaning |", "|---|---|---|---|"]
        required = set(model.get("required", []))
        for field, spec in model.get("properties", {}).items():
            meaning = spec.get("description", "")
            if "examples" in spec:
                meaning += f" e.g. `{json.dumps(spec['examples'][0])}`"
            lines.append(
                f"| `{field}` | {_type(spec)} | {'yes' if field in required else ''} | "
                f"{meaning.strip()} |"
            )
        lines.append("")
    return lines


def render() -> str:
    spec = schema()
    lines = [
        "# HTTP API reference",
        "",
        "Generated from the OpenAPI schema by `scripts/gen_http_docs.py`; a test fails when it is",
        "stale. With `INGESTD_API__DOCS_ENABLED=true` the server also serves the schema",
        "(`/openapi.json`) and browsable pages (`/docs`, `/redoc`). How to use it from an",
        "application: docs/howto/application.md.",
        "",
        spec["info"].get("description", "").strip(),
        "",
    ]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            lines += [f"## `{method.upper()} {path}`", "", op.get("summary", "")]
            if op.get("description"):
                lines += ["", op["description"].strip()]
            lines += _params(op) + _body(op) + _responses(op) + [""]
    lines += _models(spec.get("components", {}))
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run python scripts/gen_http_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
