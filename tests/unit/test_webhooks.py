"""LlamaParse webhook signatures and event parsing (pure functions)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingestd.errors import PermanentError
from ingestd.webhooks import (
    parse_llamaparse_webhook,
    sign_llamaparse,
    verify_llamaparse_signature,
)

SECRET = "whsec-test"
BODY = (
    b'{"event_id":"e1","event_type":"parse.success","timestamp":1.5,"data":{"id":"j","job_id":"j"}}'
)


def test_signature_is_hmac_sha256_hex_with_prefix() -> None:
    expected = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert sign_llamaparse(SECRET, BODY) == f"sha256={expected}"


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (sign_llamaparse(SECRET, BODY), True),
        (sign_llamaparse(SECRET, BODY).upper().replace("SHA256=", "sha256="), True),
        ("  " + sign_llamaparse(SECRET, BODY) + " ", True),
        (sign_llamaparse(SECRET, BODY).replace("sha256=", "SHA256="), True),
        (sign_llamaparse("other", BODY), False),
        (sign_llamaparse(SECRET, BODY + b" "), False),
        (sign_llamaparse(SECRET, BODY).removeprefix("sha256="), False),
        (sign_llamaparse(SECRET, BODY)[:-1], False),
        ("sha256=", False),
        ("", False),
        (None, False),
        ("sha256=é", False),
    ],
)
def test_verify_signature_table(header: str | None, ok: bool) -> None:
    assert verify_llamaparse_signature(SECRET, BODY, header) is ok


def test_empty_secret_never_verifies() -> None:
    assert not verify_llamaparse_signature("", BODY, sign_llamaparse("", BODY))


@given(secret=st.text(min_size=1), body=st.binary())
def test_sign_then_verify_roundtrip(secret: str, body: bytes) -> None:
    header = sign_llamaparse(secret, body)
    assert verify_llamaparse_signature(secret, body, header)
    assert not verify_llamaparse_signature(secret, body + b"x", header)


def test_parse_event_object() -> None:
    event = parse_llamaparse_webhook(BODY)
    assert event.event_id == "e1"
    assert event.remote_job_id == "j"
    assert event.remote_state == "completed"
    assert event.is_terminal
    assert event.timestamp == 1.5


def test_parse_event_double_encoded_string() -> None:
    event = parse_llamaparse_webhook(json.dumps(BODY.decode()).encode())
    assert event.event_type == "parse.success"


@pytest.mark.parametrize(
    ("event_type", "state", "terminal"),
    [
        ("parse.pending", "pending", False),
        ("parse.running", "running", False),
        ("parse.success", "completed", True),
        ("parse.partial_success", "completed", True),
        ("parse.error", "failed", True),
        ("parse.cancelled", "cancelled", True),
        ("parse.something_new", None, False),
    ],
)
def test_event_states(event_type: str, state: str | None, terminal: bool) -> None:
    body = {"event_id": "e", "event_type": event_type, "timestamp": 0, "data": {"id": "j"}}
    event = parse_llamaparse_webhook(json.dumps(body).encode())
    assert event.remote_state == state
    assert event.is_terminal is terminal
    assert event.remote_job_id == "j"


def test_job_id_preferred_and_extra_fields_kept() -> None:
    body = {
        "event_id": "e",
        "event_type": "parse.error",
        "timestamp": 2,
        "data": {"job_id": "a", "error_message": "boom"},
        "extra": 1,
    }
    event = parse_llamaparse_webhook(json.dumps(body).encode())
    assert event.remote_job_id == "a"
    assert event.data.model_extra == {"error_message": "boom"}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'"just a string"',
        b'{"event_id": "e", "event_type": "parse.success", "timestamp": 1}',
        b'{"event_id": "e", "event_type": "parse.success", "timestamp": 1, "data": {}}',
        b'{"event_type": "parse.success", "timestamp": 1, "data": {"id": "j"}}',
    ],
)
def test_malformed_bodies_are_permanent_errors(body: bytes) -> None:
    with pytest.raises(PermanentError) as info:
        parse_llamaparse_webhook(body)
    assert info.value.code == "webhook.invalid_body"
