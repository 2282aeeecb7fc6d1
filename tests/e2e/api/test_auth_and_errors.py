"""Authentication and the error shape, over real HTTP against ``ingestd serve``."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest

from ingestd.config import Settings
from ingestd.db import Database
from ingestd.errors import PermanentError
from ingestd.service.keys import create_key, list_keys, revoke_key, verify_key
from tests.e2e.api.conftest import SERVER_ENV, KeyFactory, assert_error, bearer
from tests.e2e.procs import run_ingestd


async def test_a_request_without_a_key_gets_401_with_a_bearer_challenge(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.get("/v1/jobs")
    assert_error(answer, 401, "auth.required")
    assert answer.headers["www-authenticate"] == "Bearer"


async def test_malformed_unknown_and_wrong_secret_keys_get_401(
    client: httpx.AsyncClient, make_key: KeyFactory, owner: str
) -> None:
    key = await make_key(owner)
    wrong_secret = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    cases = [
        ({"Authorization": f"Basic {key}"}, "auth.bad_scheme"),
        (bearer("not-a-key"), "auth.invalid_key"),
        (bearer(wrong_secret), "auth.invalid_key"),
        (bearer("ingestd_0123456789abcdef_" + "x" * 43), "auth.invalid_key"),
    ]
    for headers, code in cases:
        assert_error(await client.get("/v1/jobs", headers=headers), 401, code)
    assert (await client.get("/v1/jobs", headers=bearer(key))).status_code == 200


async def test_a_revoked_key_gets_401_at_once_and_use_is_recorded(
    client: httpx.AsyncClient, make_key: KeyFactory, api_db: Database, owner: str
) -> None:
    key = await make_key(owner)
    assert (await client.get("/v1/jobs", headers=bearer(key))).status_code == 200
    [listed] = await list_keys(api_db, owner=owner)
    assert listed.last_used_at is not None
    assert await revoke_key(api_db, listed.id)
    assert_error(await client.get("/v1/jobs", headers=bearer(key)), 401, "auth.invalid_key")


async def test_every_answer_has_a_request_id_and_a_sane_one_is_echoed(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.get("/health/live", headers={"X-Request-ID": "trace-42.a"})
    assert answer.headers["x-request-id"] == "trace-42.a"
    answer = await client.get("/health/live", headers={"X-Request-ID": "bad id\twith tab"})
    assert len(answer.headers["x-request-id"]) == 32
    error = assert_error(await client.get("/v1/jobs"), 401, "auth.required")
    assert error["request_id"]


async def test_unknown_routes_methods_and_bad_parameters_use_the_error_shape(
    client: httpx.AsyncClient, make_key: KeyFactory, owner: str
) -> None:
    headers = bearer(await make_key(owner))
    assert_error(await client.get("/v1/nothing-here"), 404, "http.not_found")
    assert_error(await client.delete("/health/live"), 405, "http.method_not_allowed")
    assert_error(await client.get("/v1/jobs/not-a-uuid", headers=headers), 422, "request.invalid")
    answer = await client.get("/v1/jobs", params={"limit": 0}, headers=headers)
    assert_error(answer, 422, "request.invalid")
    answer = await client.get("/v1/jobs", params={"cursor": "garbage"}, headers=headers)
    assert_error(answer, 422, "request.bad_cursor")
    answer = await client.get("/v1/jobs", params={"state": "nonsense"}, headers=headers)
    assert_error(answer, 422, "request.invalid")


async def test_oversized_headers_and_bodies_are_refused_before_any_work(
    client: httpx.AsyncClient, make_key: KeyFactory, owner: str
) -> None:
    headers = bearer(await make_key(owner))
    big = {"X-Padding": "x" * int(SERVER_ENV["INGESTD_API__MAX_HEADER_BYTES"])}
    assert_error(
        await client.get("/v1/jobs", headers={**headers, **big}), 431, "request.headers_too_large"
    )
    body = b'{"states": ["' + b"a" * 70_000 + b'"]}'
    answer = await client.post(
        "/v1/jobs:retry", content=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert_error(answer, 413, "request.too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: enforced while streaming
        yield b'{"states": ["'
        for _ in range(100):
            yield b"a" * 1024
        yield b'"]}'

    answer = await client.post(
        "/v1/jobs:retry", content=chunks(), headers={**headers, "Content-Type": "application/json"}
    )
    assert_error(answer, 413, "request.too_large")


async def test_a_jwt_signed_with_the_configured_secret_acts_as_its_subject(
    client: httpx.AsyncClient, make_documents, owner: str
) -> None:
    [doc] = await make_documents(owner)
    secret = SERVER_ENV["INGESTD_API__JWT_SECRET"]
    token = jwt.encode({"sub": owner, "exp": int(time.time()) + 60}, secret, algorithm="HS256")
    answer = await client.get(f"/v1/jobs/{doc.job_id}", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    other = jwt.encode({"sub": "someone-else", "exp": int(time.time()) + 60}, secret, "HS256")
    assert_error(
        await client.get(f"/v1/jobs/{doc.job_id}", headers=bearer(other)), 404, "job.not_found"
    )
    expired = jwt.encode({"sub": owner, "exp": int(time.time()) - 60}, secret, "HS256")
    assert_error(await client.get("/v1/jobs", headers=bearer(expired)), 401, "auth.invalid_token")
    forged = jwt.encode(
        {"sub": owner, "exp": int(time.time()) + 60}, "another-secret-entirely-" + "z" * 32, "HS256"
    )
    assert_error(await client.get("/v1/jobs", headers=bearer(forged)), 401, "auth.invalid_token")


def test_keys_cli_creates_lists_and_revokes(api_settings: Settings, server, owner: str) -> None:
    def ingestd(*args: str) -> subprocess.CompletedProcess[str]:
        return run_ingestd(api_settings, "keys", *args, timeout=60)

    created = ingestd("create", "--owner", owner, "--name", "ci")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("ingestd_")
    assert httpx.get(f"{server.url}/v1/jobs", headers=bearer(token)).status_code == 200
    listed = ingestd("list", "--owner", owner, "--json")
    assert token not in listed.stdout and token.split("_", 2)[2] not in listed.stdout
    key_id = token.split("_")[1]
    assert key_id in listed.stdout
    assert ingestd("revoke", key_id).returncode == 0
    assert httpx.get(f"{server.url}/v1/jobs", headers=bearer(token)).status_code == 401


async def test_keys_are_checked_and_revoked_once(api_db: Database, owner: str) -> None:
    with pytest.raises(PermanentError) as caught:
        await create_key(api_db, owner="bad owner!")
    assert caught.value.code == "keys.bad_owner"
    created = await create_key(api_db, owner=owner, name="label")
    assert await verify_key(api_db, created.token) == created.key
    assert await revoke_key(api_db, created.token)  # the whole key names it too
    assert not await revoke_key(api_db, created.key.id)
    assert await verify_key(api_db, created.token) is None
