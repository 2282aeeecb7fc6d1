"""Keyset paging for every list: opaque cursors (the sort key of a page's last row, as URL-safe
base64 JSON), the limit's bounds, and cutting a page from the ``limit + 1`` rows fetched."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
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


def fetch_limit(limit: int) -> int:
    """How many rows to fetch for a page of ``limit``: one more tells whether a next page exists."""
    return check_limit(limit) + 1


def cut_page(
    rows: list[dict[str, Any]], limit: int, sort_key: Callable[[dict[str, Any]], dict[str, Any]]
) -> tuple[list[dict[str, Any]], str | None]:
    """The page (the first ``limit`` of the ``fetch_limit(limit)`` rows fetched) and the cursor
    of the next page, from ``sort_key`` of the page's last row; None at the end."""
    if len(rows) <= limit:
        return rows, None
    page = rows[:limit]
    return page, encode_cursor(sort_key(page[-1]))


def newest_first_key(row: dict[str, Any]) -> dict[str, Any]:
    """The sort key of lists ordered by ``(created_at, id)`` descending."""
    return {"created_at": row["created_at"].isoformat(), "id": row["id"]}


def newest_first_after(cursor: str | None) -> dict[str, Any]:
    """The ``before_created`` / ``before_id`` query parameters of a newest-first cursor."""
    after = decode_cursor(cursor, ("created_at", "id"))
    return {"before_created": after["created_at"], "before_id": after["id"]}


def query_params(names: tuple[str, ...], owner: str | None, **given: Any) -> dict[str, Any]:
    """Every parameter of a filtered list query: None (no filter) unless given, the owner scope,
    and one row unless a limit is given (a lookup by id)."""
    return {**dict.fromkeys(names), "owner": owner, "limit": 1, **given}
