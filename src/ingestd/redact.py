"""One redaction function for everything ingestd prints or logs.

``redact(text)`` hides passwords in URLs (``scheme://user:***@host``), ``password=`` / ``api_key=``
/ ``token=`` pairs in query strings, keyword-style conninfo and JSON-ish text, bearer tokens,
vendor API keys by their shape (``sk-…``, ``llx-…``), and any value registered with
``register_secret`` (the settings register their secret fields when loaded). The CLI's error
printer, the log processors (structlog and stdlib) and the printers of URLs all call it.

Hand-written rather than a library: the few redaction packages on PyPI target log frameworks we do
not use or scan for secrets in files; what we need is these patterns plus known values
(docs/decisions/0004-embedded-database-security.md).
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any

MASK = "***"
# Shorter values would mask ordinary words.
MIN_SECRET_LENGTH = 6

_KEYS = r"password|passwd|pwd|sslpassword|api[_-]?key|apikey|secret|token|access[_-]?token"
_PATTERNS = [
    # scheme://user:PASSWORD@host (userinfo of any URL)
    re.compile(r"(?P<keep>\b[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)[^@\s]+(?=@)", re.I),
    # key=VALUE in a query string or conninfo, quoted conninfo values included
    re.compile(rf"(?P<keep>\b(?:{_KEYS})\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s&;,'\"]+)", re.I),
    # "key": "VALUE" and 'key': 'VALUE' (JSON, Python reprs)
    re.compile(rf"""(?P<keep>["'](?:{_KEYS})["']\s*:\s*)(?:"[^"]*"|'[^']*')""", re.I),
    re.compile(r"(?P<keep>\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.I),
    re.compile(r"(?P<keep>)\b(?:sk|llx)-[A-Za-z0-9_-]{8,}"),
]
_known: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears from now on (in this process)."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        _known.add(value)


def redact(text: str) -> str:
    """``text`` with every secret it holds replaced by ``***``."""
    for value in sorted(_known, key=len, reverse=True):
        text = text.replace(value, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group("keep") + MASK, text)
    return text


def redact_value(value: Any) -> Any:
    """Strings redacted, containers walked, anything else as is."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


def redact_event(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor (put it after ``format_exc_info``)."""
    return {key: redact_value(value) for key, value in event.items()}


class RedactingFilter(logging.Filter):
    """A stdlib logging filter: the formatted message, redacted, replaces msg and args."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True
