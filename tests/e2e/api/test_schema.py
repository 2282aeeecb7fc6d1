"""schemathesis against the live server's own schema: every documented operation, generated
requests (bounded), zero 5xx and zero answers that contradict the schema."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ingestd.config import Settings
from ingestd.db import Database
from ingestd.service.keys import create_key
from tests.e2e.procs import ServeProcess

# Generated requests per operation: enough to probe every parameter, quick enough for make test.
EXAMPLES = 8
# No 5xx, and every answer as the schema says: its status, content type, headers and body.
# (Not "every schema-valid request is accepted": an opaque cursor or an upload's content can be
# schema-valid and still rightly refused with a 4xx the schema documents.)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


async def _key(api_settings: Settings) -> str:
    async with Database.from_settings(api_settings) as db:
        return (await create_key(db, owner="schemathesis")).token


@pytest.fixture(scope="package")
def api_key(api_settings: Settings) -> str:
    return asyncio.run(_key(api_settings))


def _checker(operation: Any, headers: dict[str, str]) -> Any:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, timeout=30, checks=CHECKS)

    return check


def test_the_api_keeps_to_its_schema(server: ServeProcess, api_key: str) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    # The event stream never ends by design; the webhook is signed, not API-key authenticated.
    schema = schema.exclude(path="/v1/events").exclude(path_regex="^/v1/webhooks/")
    headers = {"Authorization": f"Bearer {api_key}"}
    failures: dict[str, str] = {}
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        tested += 1

        check = _checker(operation, headers)
        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # report every operation's failures
            failures[operation.label] = str(exc)[:2000]
    assert tested >= 12
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
