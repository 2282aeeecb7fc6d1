"""One redaction function for every printer and logger (issue 7, finding 7: on main, URL
redaction missed ``?password=`` and keyword-style connection strings)."""

from __future__ import annotations

import logging

import pytest

from ingestd.api.errors import error_body
from ingestd.config import read_settings
from ingestd.doctor import CheckResult
from ingestd.errors import ConfigurationError
from ingestd.redact import MASK, RedactingFilter, redact, redact_event, register_secret


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://u:secret@db:5432/x", f"postgresql://u:{MASK}@db:5432/x"),
        (
            "postgresql://u:p%40ss@db/x?sslmode=require",
            f"postgresql://u:{MASK}@db/x?sslmode=require",
        ),
        (
            "postgresql://postgres@/ingestd?host=/tmp/s",
            "postgresql://postgres@/ingestd?host=/tmp/s",
        ),
        ("postgresql:///x", "postgresql:///x"),
        (
            "postgresql://u@db/x?password=hunter22&sslmode=off",
            f"postgresql://u@db/x?password={MASK}&sslmode=off",
        ),
        ("host=db user=u password=hunter22 dbname=x", f"host=db user=u password={MASK} dbname=x"),
        ("host=db password='with space' dbname=x", f"host=db password={MASK} dbname=x"),
        ("host=db PASSWORD = plain", f"host=db PASSWORD = {MASK}"),
        ("api_key=abc123def&x=1", f"api_key={MASK}&x=1"),
        ('{"api_key": "abc123def", "model": "m"}', f'{{"api_key": {MASK}, "model": "m"}}'),
        ("Authorization: Bearer abc.def-ghi", f"Authorization: Bearer {MASK}"),
        ("key sk-proj-AbCdEf0123456789 rejected", f"key {MASK} rejected"),
        ("llx-0123456789abcdef", MASK),
        ("max_tokens=5 tokens=7", "max_tokens=5 tokens=7"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_redaction_table(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_registered_secrets_are_masked_anywhere() -> None:
    register_secret("Zq9-registered-value")
    register_secret("abc")  # too short to mask safely: ignored
    assert redact("got Zq9-registered-value back; abc") == f"got {MASK} back; abc"


def test_log_events_and_records_are_redacted() -> None:
    event = redact_event(
        None,
        "info",
        {"event": "db.retry", "error": "x password=hunter22", "n": 3, "l": ["sk-0123456789ab"]},
    )
    assert event == {"event": "db.retry", "error": f"x password={MASK}", "n": 3, "l": [MASK]}
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "url %s", ("postgresql://u:pw1@h/d",), None
    )
    assert RedactingFilter().filter(record)
    assert record.getMessage() == f"url postgresql://u:{MASK}@h/d"


def test_a_settings_error_names_the_field_but_never_echoes_a_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On main this raised pydantic's error, whose input_value showed the key's first characters.
    monkeypatch.setenv("INGESTD_EMBEDDER__PROVIDER", "opnai")
    monkeypatch.setenv("INGESTD_EMBEDDER__API_KEY", "sk-verysecret0123456789")
    with pytest.raises(ConfigurationError) as caught:
        read_settings()
    assert caught.value.code == "config.invalid"
    assert "embedder" in caught.value.message and "opnai" in caught.value.message
    assert "verysecre" not in caught.value.message and "sk-" not in caught.value.message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_loaded_settings_register_their_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTD_EMBEDDER__PROVIDER", "openai")
    monkeypatch.setenv("INGESTD_EMBEDDER__API_KEY", "plainkey-without-a-known-shape")
    monkeypatch.setenv("INGESTD_DATABASE_URL", "host=db user=u password=pw-for-db-only")
    settings = read_settings()
    assert "pw-for-db-only" not in repr(settings)
    assert redact("echo plainkey-without-a-known-shape pw-for-db-only") == f"echo {MASK} {MASK}"


def test_doctor_details_and_api_errors_are_redacted() -> None:
    check = CheckResult("database", "fail", "OperationalError: postgresql://u:pw-in-url@db/x")
    assert check.detail == f"OperationalError: postgresql://u:{MASK}@db/x"
    body = error_body("internal.error", "failed: host=db password=hunter22", "req-1")
    assert body["error"]["message"] == f"failed: host=db password={MASK}"
