"""Opaque page cursors: the sort key of the last row of a page, as URL-safe base64 JSON."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from ingestd.errors import PermanentError

MAX_PAGE = 500


def encode_cursor(values: dict[str, Any]) -> str:
    raw = json.dumps(values, default=str, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, fields: tuple[str, ...]) -> dict[str, Any]:
    """The cursor's values (all None without a cursor); ``request.bad_cursor`` if it is not
    one of ours."""
    if not cursor:
        return dict.fromkeys(fields)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise PermanentError("request.bad_cursor", "the cursor is not valid") from exc
    if not isinstance(values, dict) or set(values) != set(fields):
        raise PermanentError("request.bad_cursor", "the cursor is not valid")
    return values


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise PermanentError("request.bad_limit", f"limit must be between 1 and {MAX_PAGE}")
    return limit
