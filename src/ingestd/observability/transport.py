"""An httpx transport that times every call to an external service and counts its outcome.

Wrapping the transport (rather than each client) covers every request the vendors' adapters
and SDKs send — the OpenAI SDK included — with no change to them. The service label comes from
the request's host and port, matched against the configured base URLs.
"""

from __future__ import annotations

import time

import httpx

from ingestd.observability.metrics import record_external_call


def service_key(url: httpx.URL | str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.host}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"


def outcome_of_status(status: int) -> str:
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    return "ok"


class MeteredTransport(httpx.AsyncBaseTransport):
    """Delegates to ``inner``; records latency to the response headers and the outcome."""

    def __init__(self, inner: httpx.AsyncBaseTransport, services: dict[str, str]) -> None:
        self._inner = inner
        self._services = services

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        service = self._services.get(service_key(request.url), "other")
        started = time.perf_counter()
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TimeoutException:
            record_external_call(service, "timeout", time.perf_counter() - started)
            raise
        except httpx.TransportError:
            record_external_call(service, "connect_error", time.perf_counter() - started)
            raise
        record_external_call(
            service, outcome_of_status(response.status_code), time.perf_counter() - started
        )
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def metered_client(services: dict[str, str]) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose calls are metered; ``services``: base URL -> name."""
    keys = {service_key(url): name for url, name in services.items()}
    return httpx.AsyncClient(transport=MeteredTransport(httpx.AsyncHTTPTransport(), keys))
