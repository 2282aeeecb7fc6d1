"""JSON as readable Markdown: records become a table, objects become headings and lists.

A top-level list of flat objects (records) is rendered as a table, like a CSV. Otherwise keys of
the top-level object that hold containers become ``##`` headings, and nested values become an
indented list of ``key: value`` lines. The walk uses an explicit stack (no recursion), and values
nested deeper than ``_MAX_LIST_DEPTH`` are shown as compact JSON, so deep documents stay readable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ingestd.errors import PermanentError
from ingestd.parsers.encoding import decode_text
from ingestd.parsers.markdown import MarkdownBuilder, finish_document
from ingestd.ports import ParsedDocument

_MAX_LIST_DEPTH = 8
_MAX_TABLE_COLUMNS = 50
_TITLE_KEYS = ("title", "name", "headline", "subject")


def parse_json(data: bytes) -> ParsedDocument:
    """A JSON document as Markdown."""
    text, encoding = decode_text(data)
    value = _load(text)
    del text
    builder = MarkdownBuilder()
    if _is_records(value):
        builder.table(_record_rows(value))
    elif isinstance(value, dict):
        _render_object(builder, value)
    else:
        _render_nested(builder, value, depth=0)
    title = _title_of(value)
    del value
    return finish_document(
        builder, title=title, paged=False, metadata={"format": "json", "encoding": encoding}
    )


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PermanentError(
            "parse.corrupt",
            f"this JSON file is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
        ) from exc
    except RecursionError as exc:
        raise PermanentError(
            "parse.too_large",
            "this JSON file is nested too deeply to read; flatten its structure",
            limit="json_depth",
        ) from exc


def _is_records(value: Any) -> bool:
    if not isinstance(value, list) or not value:
        return False
    if not all(isinstance(item, dict) for item in value):
        return False
    nested = sum(1 for item in value[:200] for v in item.values() if isinstance(v, dict | list))
    return nested == 0


def _record_rows(records: list[dict[str, Any]]) -> Iterator[list[str]]:
    columns: dict[str, None] = {}
    for record in records[:1000]:
        for key in record:
            if len(columns) < _MAX_TABLE_COLUMNS:
                columns.setdefault(str(key), None)
    names = list(columns)
    yield names
    for record in records:
        yield [_scalar(record.get(name)) for name in names]


def _render_object(builder: MarkdownBuilder, value: dict[str, Any]) -> None:
    scalars = [(key, item) for key, item in value.items() if not isinstance(item, dict | list)]
    for key, item in scalars:
        builder.list_item(f"{key}: {_scalar(item)}")
    for key, item in value.items():
        if isinstance(item, dict | list):
            builder.heading(str(key), 2)
            if isinstance(item, list) and _is_records(item):
                builder.table(_record_rows(item))
            else:
                _render_nested(builder, item, depth=0)


def _render_nested(builder: MarkdownBuilder, value: Any, *, depth: int) -> None:
    """Indented ``key: value`` list items, walked with an explicit stack."""
    stack: list[tuple[str | None, Any, int]] = [(None, value, depth)]
    while stack:
        label, item, level = stack.pop()
        if not isinstance(item, dict | list) or level >= _MAX_LIST_DEPTH:
            text = _scalar(item) if not isinstance(item, dict | list) else _compact(item)
            builder.list_item(f"{label}: {text}" if label else text, depth=level)
            continue
        if label:
            builder.list_item(f"{label}:", depth=level)
        child_level = level + 1 if label else level
        stack.extend(reversed([(k, v, child_level) for k, v in _children(item)]))


def _children(value: dict[str, Any] | list[Any]) -> Iterator[tuple[str | None, Any]]:
    """Key and value of each child; containers inside lists are numbered to keep them apart."""
    if isinstance(value, dict):
        yield from ((str(key), item) for key, item in value.items())
        return
    for index, item in enumerate(value):
        yield (f"[{index + 1}]" if isinstance(item, dict | list) else None), item


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _compact(value: Any) -> str:
    try:
        return "`" + json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "`"
    except RecursionError:
        return "`…`"


def _title_of(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in _TITLE_KEYS:
            if isinstance(value.get(key), str):
                return str(value[key])
    return None
