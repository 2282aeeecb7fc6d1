"""Who is calling: FastAPI dependencies that turn ``Authorization: Bearer`` into a ``Principal``.

``require_principal`` accepts an API key (``ingestd keys create``) or, when configured, a JWT
(HS256 with ``api.jwt_secret``, RS256 with ``api.jwt_public_key``) whose ``sub`` is the owner.
Every document, job, event and search route scopes its reads and writes with
``Principal.scope``; an admin acts for every owner. ``require_admin`` refuses everyone else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from ingestd.api.errors import ApiError
from ingestd.config import ApiSettings
from ingestd.service.keys import verify_key

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller. ``owner``: whose data the caller may touch (None: every owner's, admins
    only). ``subject``: the owner the key was made for (uploads go there by default)."""

    owner: str | None
    admin: bool
    key_id: str | None
    subject: str

    @property
    def scope(self) -> str | None:
        return self.owner

    def owner_for_upload(self, requested: str | None) -> str:
        """The owner new documents get: an admin may upload for anyone, others for themselves."""
        if requested is None or requested == self.subject:
            return self.subject
        if not self.admin:
            raise ApiError(403, "auth.forbidden", "only an admin key may upload for another owner")
        return requested


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, headers=_CHALLENGE)


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized("auth.required", "send an API key: Authorization: Bearer <key>")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("auth.bad_scheme", "the Authorization header must be 'Bearer <key>'")
    return token.strip()


async def require_principal(request: Request) -> Principal:
    """The authenticated caller, or 401 with a stable code."""
    token = bearer_token(request)
    settings: ApiSettings = request.app.state.settings.api
    if token.count(".") == 2 and (settings.jwt_secret or settings.jwt_public_key):
        return principal_from_jwt(token, settings)
    key = await verify_key(request.app.state.db, token)
    if key is None:
        raise _unauthorized("auth.invalid_key", "the API key is unknown or revoked")
    return Principal(
        owner=None if key.admin else key.owner, admin=key.admin, key_id=key.id, subject=key.owner
    )


async def require_admin(principal: Annotated[Principal, Depends(require_principal)]) -> Principal:
    """An admin caller, or 403."""
    if not principal.admin:
        raise ApiError(403, "auth.forbidden", "this needs an admin key")
    return principal


def principal_from_jwt(token: str, settings: ApiSettings) -> Principal:
    """Verify a JWT through PyJWT (signature, expiry, audience); ``sub`` names the owner."""
    import jwt

    keys: list[tuple[str, Any]] = []
    if settings.jwt_secret is not None:
        keys.append(("HS256", settings.jwt_secret.get_secret_value()))
    if settings.jwt_public_key is not None:
        keys.append(("RS256", settings.jwt_public_key))
    header_alg = _jwt_alg(token)
    for alg, key in keys:
        if alg != header_alg:
            continue
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=settings.jwt_audience,
                options={
                    "require": ["sub", "exp"],
                    "verify_aud": settings.jwt_audience is not None,
                },
            )
        except jwt.PyJWTError as exc:
            raise _unauthorized("auth.invalid_token", f"the token is not valid: {exc}") from exc
        subject = str(claims["sub"])
        admin = bool(settings.jwt_admin_claim and claims.get(settings.jwt_admin_claim) is True)
        return Principal(
            owner=None if admin else subject, admin=admin, key_id=None, subject=subject
        )
    raise _unauthorized("auth.invalid_token", "the token's algorithm is not accepted")


def _jwt_alg(token: str) -> str | None:
    import jwt

    try:
        return str(jwt.get_unverified_header(token).get("alg"))
    except jwt.PyJWTError:
        return None


CurrentPrincipal = Annotated[Principal, Depends(require_principal)]
AdminPrincipal = Annotated[Principal, Depends(require_admin)]
