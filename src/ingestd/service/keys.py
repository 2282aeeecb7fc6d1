"""API keys: create (shown once), verify, list, revoke.

A key reads ``ingestd_<id>_<secret>``: ``id`` is public (lists, logs, lookups), ``secret`` is 32
random bytes. Only the sha256 of the secret is stored. A slow password hash (argon2, scrypt)
protects low-entropy secrets that people choose; a 256-bit random secret cannot be guessed from
its hash, and a fast hash keeps verification off the request's critical path
(docs/decisions/0007-http-api-and-keys.md). The comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ingestd.db import QUERIES, Database
from ingestd.errors import PermanentError

KEY_PREFIX = "ingestd"
_KEY = re.compile(r"^ingestd_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
# ``last_used_at`` is written at most this often per key, not on every request.
LAST_USED_RESOLUTION_SECONDS = 60
_OWNER = re.compile(r"^[\w.@:+-]{1,200}$")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as listed: everything but the secret."""

    id: str
    owner: str
    name: str
    admin: bool
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            "name": self.name,
            "admin": self.admin,
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key: ApiKey
    token: str  # the whole key; shown once, never stored


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def split_token(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed key, else None."""
    match = _KEY.match(token)
    return (match.group(1), match.group(2)) if match else None


def check_owner(owner: str) -> str:
    if not _OWNER.match(owner):
        raise PermanentError(
            "keys.bad_owner",
            "an owner is 1-200 letters, digits or . @ : + - _ characters",
        )
    return owner


async def create_key(
    db: Database, *, owner: str, name: str = "", admin: bool = False
) -> CreatedKey:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    rows = await db.fetch_all(
        QUERIES["insert_api_key"],
        {
            "id": key_id,
            "owner": check_owner(owner),
            "name": name,
            "admin": admin,
            "secret_sha256": secret_hash(secret),
        },
    )
    return CreatedKey(ApiKey(**rows[0]), f"{KEY_PREFIX}_{key_id}_{secret}")


async def verify_key(db: Database, token: str) -> ApiKey | None:
    """The live key ``token`` names, or None (malformed, unknown, wrong secret or revoked).

    Revocation takes effect on the next request: nothing is cached.
    """
    parts = split_token(token)
    if parts is None:
        return None
    key_id, secret = parts
    rows = await db.fetch_all(QUERIES["get_api_key"], {"id": key_id})
    if not rows:
        return None
    row = rows[0]
    stored = bytes(row.pop("secret_sha256"))
    if not hmac.compare_digest(stored, secret_hash(secret)) or row["revoked_at"] is not None:
        return None
    key = ApiKey(**row)
    if _stale(key):
        await db.execute(
            QUERIES["touch_api_key"], {"id": key_id, "resolution": LAST_USED_RESOLUTION_SECONDS}
        )
    return key


def _stale(key: ApiKey) -> bool:
    if key.last_used_at is None:
        return True
    now = datetime.now(key.last_used_at.tzinfo)
    return (now - key.last_used_at).total_seconds() >= LAST_USED_RESOLUTION_SECONDS


async def list_keys(db: Database, *, owner: str | None = None) -> list[ApiKey]:
    rows = await db.fetch_all(QUERIES["list_api_keys"], {"owner": owner})
    return [ApiKey(**row) for row in rows]


async def revoke_key(db: Database, key_id: str) -> bool:
    """Revoke a key by its id (or the whole key); False if no live key has that id."""
    parts = split_token(key_id)
    return await db.execute(QUERIES["revoke_api_key"], {"id": parts[0] if parts else key_id}) > 0
