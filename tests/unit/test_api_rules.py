"""Pure pieces of the HTTP API: key format, cursors, request ids, body limits, put_file."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import get_args

import pytest

from ingestd.api.app import body_limit_for
from ingestd.api.middleware import new_request_id
from ingestd.api.schemas import RetryableState
from ingestd.config import ApiSettings
from ingestd.errors import PermanentError
from ingestd.service.keys import secret_hash, split_token
from ingestd.service.paging import (
    check_limit,
    cut_page,
    decode_cursor,
    encode_cursor,
    newest_first_after,
    query_params,
)
from ingestd.states import RETRY_FROM
from ingestd.storage import LocalBlobStore


@pytest.mark.parametrize(
    ("token", "parts"),
    [
        (
            "ingestd_0123456789abcdef_" + "a_b-" * 10 + "xyz",
            ("0123456789abcdef", "a_b-" * 10 + "xyz"),
        ),
        ("ingestd_0123456789abcdef_short", None),
        ("ingestd_0123456789ABCDEF_" + "a" * 43, None),
        ("other_0123456789abcdef_" + "a" * 43, None),
        ("ingestd_0123456789abcdef_" + "a" * 42 + "!", None),
        ("", None),
    ],
)
def test_only_well_formed_keys_split(token: str, parts: tuple[str, str] | None) -> None:
    assert split_token(token) == parts


def test_the_stored_hash_is_sha256_of_the_secret() -> None:
    assert secret_hash("abc") == hashlib.sha256(b"abc").digest()


def test_cursors_round_trip_and_reject_foreign_text() -> None:
    cursor = encode_cursor({"created_at": "2026-01-01T00:00:00+00:00", "id": "x"})
    assert decode_cursor(cursor, ("created_at", "id"))["id"] == "x"
    assert decode_cursor(None, ("a",)) == {"a": None}
    for bad in ("%%%", encode_cursor({"other": 1}), encode_cursor([1, 2]), "e30"):  # type: ignore[arg-type]
        with pytest.raises(PermanentError) as caught:
            decode_cursor(bad, ("created_at", "id"))
        assert caught.value.code == "request.bad_cursor"
    with pytest.raises(PermanentError):
        check_limit(0)


@pytest.mark.parametrize(
    ("fetched", "limit", "page", "more"),
    [(0, 2, 0, False), (1, 2, 1, False), (2, 2, 2, False), (3, 2, 2, True)],
)
def test_a_page_is_cut_from_one_row_more_than_its_limit(
    fetched: int, limit: int, page: int, more: bool
) -> None:
    rows = [{"ordinal": i} for i in range(fetched)]
    got, cursor = cut_page(rows, limit, lambda row: {"ordinal": row["ordinal"]})
    assert got == rows[:page]
    assert (cursor is not None) == more
    if cursor is not None:
        assert decode_cursor(cursor, ("ordinal",)) == {"ordinal": page - 1}


def test_list_query_parameters_default_to_no_filter_and_one_row() -> None:
    assert query_params(("job_id", "states"), "o") == {
        "job_id": None,
        "states": None,
        "owner": "o",
        "limit": 1,
    }
    assert query_params(("states",), None, states=["x"], limit=51)["limit"] == 51
    assert newest_first_after(None) == {"before_created": None, "before_id": None}
    cursor = encode_cursor({"created_at": "2026-01-01T00:00:00+00:00", "id": "j"})
    assert newest_first_after(cursor)["before_id"] == "j"


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("abc-123", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("a b", False),
        (None, False),
        ("x\r\ny", False),
    ],
)
def test_a_request_id_is_kept_only_when_sane(incoming: str | None, kept: bool) -> None:
    out = new_request_id(incoming)
    assert (out == incoming) is kept
    assert out


def test_uploads_get_the_request_limit_the_webhook_its_own_others_the_json_limit() -> None:
    settings = ApiSettings(max_request_bytes=10_000, max_json_bytes=2_000)
    limit = body_limit_for(settings)
    assert limit({"path": "/v1/documents", "method": "POST"}) == 10_000
    assert limit({"path": "/v1/documents", "method": "GET"}) == 2_000
    assert limit({"path": "/v1/webhooks/llamaparse", "method": "POST"}) is None
    assert limit({"path": "/v1/search", "method": "POST"}) == 2_000


def test_put_file_stores_by_content_and_leaves_the_source(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    source = tmp_path / "upload.bin"
    data = bytes(range(256)) * 9000  # more than one copy chunk
    source.write_bytes(data)
    key = store.put_file(source)
    assert key == hashlib.sha256(data).hexdigest() == store.put(data)
    assert store.get(key) == data and source.exists()
    assert store.put_file(source) == key  # again: same key, still one blob
    assert [p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == [key]


def test_the_retryable_states_of_the_schema_are_the_state_machines() -> None:
    assert set(get_args(RetryableState)) == {s.value for s in RETRY_FROM}
