"""Turning the bytes of a text file (plain text, Markdown, CSV, JSON, HTML) into ``str``.

Order of trust: a byte-order mark, then strict UTF-8, then UTF-8 with a few stray bytes replaced,
then a legacy encoding guessed by charset-normalizer from a sample (only if the guess reads as
coherent text). Anything else is ``parse.invalid_encoding``: the bytes are not text in any encoding
we can recognise, and guessing further would produce garbage.
"""

from __future__ import annotations

import codecs

import charset_normalizer

from ingestd.errors import PermanentError

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# UTF-8 with at most this share of undecodable bytes is treated as UTF-8 with a few bad bytes.
_MAX_REPLACED_RATIO = 0.005
# charset-normalizer's "chaos" (0 = clean text, 1 = noise) above which a guess is rejected.
_MAX_CHAOS = 0.2
_SAMPLE_BYTES = 64 * 1024
_PREFERRED_LEGACY = "cp1252"


def decode_text(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """Decode ``data`` to text; return ``(text, encoding_used)``.

    ``declared`` is an encoding named by the document itself (an HTML ``<meta charset>``), tried
    after UTF-8. Raises ``PermanentError("parse.invalid_encoding")`` when no encoding fits.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _decode_strict(data, encoding), encoding
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    repaired = _decode_utf8_with_few_errors(data)
    if repaired is not None:
        return repaired, "utf-8 (repaired)"
    if declared and _is_known_encoding(declared):
        try:
            return data.decode(declared), declared
        except UnicodeDecodeError:
            pass
    return _decode_guessed(data)


def guess_utf16(data: bytes) -> str | None:
    """``"utf-16-le"``/``"utf-16-be"`` for BOM-less UTF-16 text (half the bytes 0), else None."""
    sample = data[:4096]
    if len(sample) < 8:
        return None
    even_zero = sample[0::2].count(0) / (len(sample) // 2)
    odd_zero = sample[1::2].count(0) / (len(sample) // 2)
    if odd_zero > 0.6 and even_zero < 0.05:
        return "utf-16-le"
    if even_zero > 0.6 and odd_zero < 0.05:
        return "utf-16-be"
    return None


def _decode_strict(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise PermanentError(
            "parse.invalid_encoding",
            f"the file starts with a {encoding} byte-order mark but is not valid {encoding} "
            f"(first bad byte at offset {exc.start}); re-save it as UTF-8",
        ) from exc


def _decode_utf8_with_few_errors(data: bytes) -> str | None:
    text = data.decode("utf-8", errors="replace")
    replaced = text.count("\ufffd")
    if replaced <= max(1, int(len(data) * _MAX_REPLACED_RATIO)):
        return text
    return None


def _decode_guessed(data: bytes) -> tuple[str, str]:
    utf16 = guess_utf16(data)
    if utf16 is not None:
        try:
            return data.decode(utf16), utf16
        except UnicodeDecodeError:
            pass
    encoding = _guess_legacy_encoding(data[:_SAMPLE_BYTES])
    if encoding is not None:
        try:
            return data.decode(encoding), encoding
        except (UnicodeDecodeError, LookupError):
            pass
    raise PermanentError(
        "parse.invalid_encoding",
        "the file is not valid UTF-8 and no other text encoding reads it as coherent text; "
        "check that it really is a text file, or re-save it as UTF-8",
    )


def _guess_legacy_encoding(sample: bytes) -> str | None:
    """charset-normalizer's best guess, preferring Windows-1252 among equally good guesses.

    Western European text fits several single-byte code pages equally well by its measures
    ("très" reads as "trčs" in cp1250); cp1252 is by far the most common of them.
    """
    matches = list(charset_normalizer.from_bytes(sample))
    if not matches or matches[0].chaos > _MAX_CHAOS:
        return None
    best = matches[0]
    for match in matches:
        as_good = match.chaos <= best.chaos + 1e-9 and match.coherence >= best.coherence - 1e-9
        if match.encoding == _PREFERRED_LEGACY and as_good:
            return match.encoding
    return best.encoding


def _is_known_encoding(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True
