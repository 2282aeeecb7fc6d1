"""Behaviour controls shared by ingestd's mock servers (OpenAI, LlamaParse): latency, faults.

A mock server owns one :class:`MockState`, built from a :class:`Behaviour` (a pydantic model; a
mock may subclass it to add its own fields, e.g. webhook faults). Route handlers ask the state:

* ``state.draw_fault(path)`` -> a :class:`FaultKind` or ``None``. Rules in ``behaviour.faults``
  are checked in order; each rule counts the requests whose path starts with one of its
  ``routes`` (every route when empty), lets its first ``skip`` through, then fires with
  ``probability`` until it has fired ``count`` times (``None``: forever). The first rule that
  fires wins; rules after it do not see that request. Transport faults (``http_5xx``,
  ``timeout``, ``connection_reset``) are served by :func:`serve_transport_fault`; body faults
  (``malformed_json``, ``wrong_vector_length``, ``partial_success``) are the mock's business.
* ``await state.sleep_latency(units)`` sleeps ``fixed_ms + units * per_unit_ms`` (+ seeded jitter);
  a unit is a token for OpenAI, a page for LlamaParse.
* ``state.take_rate_budget(requests=1, tokens=n)`` -> :class:`RateDecision`: two token buckets
  (capacity = the limit, refilled continuously over ``window_seconds``) checked and charged
  atomically; the decision carries what the ``x-ratelimit-*`` headers and ``retry-after`` need.
* ``state.charge_quota(units)`` -> ``False`` once ``behaviour.quota`` is spent (insufficient quota /
  out of credits).
* ``state.counters.add("tokens", n)``, ``state.counters.add_error(kind)`` -> what was served,
  read by tests through ``GET /_admin/counters``.

Determinism: every random draw (fault probability, latency jitter) comes from one ``random.Random``
seeded with ``behaviour.seed``, reseeded on reset. All mutation happens under one ``threading.Lock``
with no ``await`` inside, so the state is safe from asyncio tasks and from threads alike.

Behaviour is set at start (constructor, :func:`load_behaviour` from a JSON file or string, CLI-style
fault specs via :func:`parse_fault_spec`) and at run time through :func:`mount_admin`'s routes::

    GET   /_admin/counters    counters snapshot (plus the rate-limit buckets)
    GET   /_admin/behaviour   current behaviour as JSON
    PUT   /_admin/behaviour   replace it (validated by the mock's Behaviour class; 422 when invalid)
    PATCH /_admin/behaviour   deep-merge a partial document into it (lists are replaced whole)
    POST  /_admin/reset       zero counters, fault progress, buckets, quota and RNG;
                              ``?behaviour=true`` also restores the behaviour given at start

Changing the behaviour restarts the fault rules' progress but keeps the counters.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, TypeVar

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ADMIN_PREFIX = "/_admin"


class FaultKind(StrEnum):
    """Every fault a mock can inject. Transport kinds are generic; body kinds depend on the mock."""

    HTTP_500 = "http_500"
    HTTP_502 = "http_502"
    HTTP_503 = "http_503"
    TIMEOUT = "timeout"  # hold the request past the client's timeout (until it leaves)
    CONNECTION_RESET = "connection_reset"  # abort the TCP connection without a response
    MALFORMED_JSON = "malformed_json"  # a 200 whose body is not valid JSON
    WRONG_VECTOR_LENGTH = "wrong_vector_length"  # OpenAI: a vector one element short
    PARTIAL_SUCCESS = "partial_success"  # OpenAI: fewer results than inputs; LlamaParse: pages fail


TRANSPORT_FAULTS = frozenset(
    {
        FaultKind.HTTP_500,
        FaultKind.HTTP_502,
        FaultKind.HTTP_503,
        FaultKind.TIMEOUT,
        FaultKind.CONNECTION_RESET,
    }
)


class FaultRule(BaseModel):
    """Inject ``kind`` into matching requests: after ``skip``, with ``probability``, ``count``x."""

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    probability: float = Field(1.0, ge=0.0, le=1.0)
    count: int | None = Field(None, ge=0)  # None: no limit
    skip: int = Field(0, ge=0)
    routes: list[str] = Field(default_factory=list)  # path prefixes; empty: every mock route


class Latency(BaseModel):
    """Added before answering: ``fixed_ms + units * per_unit_ms``, plus up to ``jitter_ms``."""

    model_config = ConfigDict(extra="forbid")

    fixed_ms: float = Field(0.0, ge=0.0)
    per_unit_ms: float = Field(0.0, ge=0.0)
    jitter_ms: float = Field(0.0, ge=0.0)


class RateLimits(BaseModel):
    """Budgets per ``window_seconds`` (60: per minute). ``None`` means unlimited."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    window_seconds: float = Field(60.0, gt=0.0)


class Behaviour(BaseModel):
    """How a mock behaves. Mocks subclass this to add their own fields (all need defaults)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    latency: Latency = Field(default_factory=Latency)
    faults: list[FaultRule] = Field(default_factory=list)
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    # The only bearer token accepted; None accepts any non-empty token.
    api_key: str | None = None
    # Billable units (tokens, credits) served before "out of quota" is answered; None: no cap.
    quota: float | None = Field(None, ge=0.0)
    # How long a ``timeout`` fault holds a request whose client stays connected.
    hang_seconds: float = Field(30.0, ge=0.0)


B = TypeVar("B", bound=Behaviour)


# -- counters -------------------------------------------------------------------------------------

STANDARD_COUNTERS = ("requests", "tokens", "embeddings", "pages", "credits", "rate_limited")


class Counters:
    """Thread-safe counters of what a mock served. Unknown names are created on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, float] = {}
        self._errors: dict[str, int] = {}
        self.reset()

    def add(self, name: str, amount: float = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + amount

    def add_error(self, kind: str) -> None:
        """Count an error answered: a fault kind or a vendor code such as ``invalid_api_key``."""
        with self._lock:
            self._errors[kind] = self._errors.get(kind, 0) + 1

    def get(self, name: str) -> float:
        with self._lock:
            return self._values.get(name, 0)

    def errors(self) -> dict[str, int]:
        with self._lock:
            return dict(self._errors)

    def snapshot(self) -> dict[str, Any]:
        """``{"requests": n, "tokens": n, ..., "errors": {kind: n}}``; whole floats become ints."""
        with self._lock:
            values: dict[str, Any] = {k: _plain_number(v) for k, v in self._values.items()}
            values["errors"] = dict(self._errors)
            return values

    def reset(self) -> None:
        with self._lock:
            self._values = dict.fromkeys(STANDARD_COUNTERS, 0.0)
            self._errors = {}


def _plain_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


# -- rate limits ----------------------------------------------------------------------------------


class TokenBucket:
    """A bucket of ``capacity`` units refilled continuously at ``capacity / window`` per second."""

    def __init__(self, capacity: int, window_seconds: float, now: float) -> None:
        self.capacity = capacity
        self.rate = capacity / window_seconds
        self.level = float(capacity)
        self.updated = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` units are available (0 when they are now)."""
        return max(0.0, (amount - self.level) / self.rate)

    def until_full(self) -> float:
        return (self.capacity - self.level) / self.rate


@dataclass(frozen=True, slots=True)
class BucketView:
    """One budget as headers report it: limit, remaining, seconds until fully replenished."""

    limit: int
    remaining: int
    reset_seconds: float


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of :meth:`MockState.take_rate_budget`."""

    allowed: bool
    limited_by: str | None = None  # "requests" | "tokens" when refused
    retry_after: float = 0.0  # seconds, when refused
    requests: BucketView | None = None  # None: that budget is unlimited
    tokens: BucketView | None = None


def _view(bucket: TokenBucket | None) -> BucketView | None:
    if bucket is None:
        return None
    return BucketView(bucket.capacity, int(bucket.level), bucket.until_full())


# -- fault specs from the command line ------------------------------------------------------------


def parse_fault_spec(spec: str) -> FaultRule:
    """``"http_503"``, ``"http_503:0.1"`` (probability), ``"timeout:count=2,skip=1"``,
    ``"malformed_json:p=0.5,routes=/v1/embeddings"`` -> a :class:`FaultRule`."""
    kind, _, rest = spec.partition(":")
    fields: dict[str, Any] = {"kind": kind.strip()}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            fields["probability"] = float(key)
        elif key in ("p", "probability"):
            fields["probability"] = float(value)
        elif key == "routes":
            fields["routes"] = value.split("|")
        else:
            fields[key] = int(value)
    return FaultRule.model_validate(fields)


def load_behaviour(
    cls: type[B],
    source: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> B:
    """Build a behaviour from a JSON file path or JSON text (``source``), then deep-merge
    ``overrides`` (e.g. from CLI flags; ``None`` values are ignored) and validate."""
    data: dict[str, Any] = {}
    if source is not None:
        text = str(source)
        path = Path(text)
        data = json.loads(text if text.lstrip().startswith("{") else path.read_text("utf-8"))
    return cls.model_validate(deep_merge(data, _without_none(overrides or {})))


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            value = _without_none(value)
        if value is not None and value != {}:
            out[key] = value
    return out


def deep_merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``changes``: nested mappings merge, everything else is replaced."""
    merged = dict(base)
    for key, value in changes.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(old, value)
        else:
            merged[key] = value
    return merged


# -- the state ------------------------------------------------------------------------------------


class MockState(Generic[B]):
    """A mock's behaviour plus everything it counts and remembers between requests."""

    def __init__(self, behaviour: B, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.initial_behaviour = behaviour
        self.counters = Counters()
        self._behaviour = behaviour
        self._reset_runtime()

    @property
    def behaviour(self) -> B:
        return self._behaviour

    @property
    def behaviour_class(self) -> type[B]:
        return type(self.initial_behaviour)

    def replace_behaviour(self, behaviour: B) -> B:
        """Swap the behaviour; fault progress, buckets, quota and RNG restart, counters stay."""
        with self._lock:
            self._behaviour = behaviour
            self._reset_runtime_locked()
        return behaviour

    def patch_behaviour(self, changes: Mapping[str, Any]) -> B:
        """Deep-merge ``changes`` into the current behaviour (validated), then as replace."""
        current = self._behaviour.model_dump(mode="json")
        return self.replace_behaviour(
            self.behaviour_class.model_validate(deep_merge(current, changes))
        )

    def reset(self, restore_behaviour: bool = False) -> None:
        """Zero the counters and the runtime state; optionally go back to the start behaviour."""
        with self._lock:
            if restore_behaviour:
                self._behaviour = self.initial_behaviour
            self._reset_runtime_locked()
        self.counters.reset()

    def _reset_runtime(self) -> None:
        with self._lock:
            self._reset_runtime_locked()

    def _reset_runtime_locked(self) -> None:
        b = self._behaviour
        now = self._clock()
        self.rng = random.Random(b.seed)
        self._seen = [0] * len(b.faults)
        self._fired = [0] * len(b.faults)
        self._quota_used = 0.0
        limits = b.rate_limits
        self._requests_bucket = (
            TokenBucket(limits.requests_per_minute, limits.window_seconds, now)
            if limits.requests_per_minute
            else None
        )
        self._tokens_bucket = (
            TokenBucket(limits.tokens_per_minute, limits.window_seconds, now)
            if limits.tokens_per_minute
            else None
        )

    # faults

    def draw_fault(self, path: str) -> FaultKind | None:
        """The fault to inject into this request, if any (see the module docstring)."""
        with self._lock:
            for index, rule in enumerate(self._behaviour.faults):
                if rule.routes and not any(path.startswith(r) for r in rule.routes):
                    continue
                if self._rule_fires(index, rule):
                    return rule.kind
        return None

    def _rule_fires(self, index: int, rule: FaultRule) -> bool:
        self._seen[index] += 1
        if self._seen[index] <= rule.skip:
            return False
        if rule.count is not None and self._fired[index] >= rule.count:
            return False
        if rule.probability < 1.0 and self.rng.random() >= rule.probability:
            return False
        self._fired[index] += 1
        return True

    # latency

    def latency_seconds(self, units: float = 0) -> float:
        lat = self._behaviour.latency
        with self._lock:
            jitter = self.rng.uniform(0, lat.jitter_ms) if lat.jitter_ms else 0.0
        return (lat.fixed_ms + units * lat.per_unit_ms + jitter) / 1000.0

    async def sleep_latency(self, units: float = 0) -> None:
        delay = self.latency_seconds(units)
        if delay > 0:
            await asyncio.sleep(delay)

    # rate limits and quota

    def take_rate_budget(self, requests: int = 1, tokens: int = 0) -> RateDecision:
        """Charge both budgets if both can pay now; otherwise charge nothing and say why."""
        with self._lock:
            now = self._clock()
            req, tok = self._requests_bucket, self._tokens_bucket
            for bucket in (req, tok):
                if bucket is not None:
                    bucket.refill(now)
            waits = {
                "requests": req.wait_for(requests) if req else 0.0,
                "tokens": tok.wait_for(tokens) if tok else 0.0,
            }
            limited_by = max(waits, key=lambda k: waits[k]) if any(waits.values()) else None
            if limited_by is None:
                if req is not None:
                    req.level -= requests
                if tok is not None:
                    tok.level -= tokens
            return RateDecision(
                allowed=limited_by is None,
                limited_by=limited_by,
                retry_after=waits[limited_by] if limited_by else 0.0,
                requests=_view(req),
                tokens=_view(tok),
            )

    def rate_snapshot(self) -> dict[str, Any]:
        """``{"requests": {limit, remaining, reset_seconds} | None, "tokens": ...}``."""
        with self._lock:
            now = self._clock()
            buckets = {"requests": self._requests_bucket, "tokens": self._tokens_bucket}
            views: dict[str, Any] = {}
            for name, bucket in buckets.items():
                if bucket is not None:
                    bucket.refill(now)
                view = _view(bucket)
                views[name] = (
                    None
                    if view is None
                    else {
                        "limit": view.limit,
                        "remaining": view.remaining,
                        "reset_seconds": round(view.reset_seconds, 3),
                    }
                )
            return views

    def charge_quota(self, units: float) -> bool:
        """Spend ``units`` of the quota; ``False`` (nothing spent) when it would be exceeded."""
        with self._lock:
            quota = self._behaviour.quota
            if quota is not None and self._quota_used + units > quota:
                return False
            self._quota_used += units
            return True

    def accepts_key(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries an acceptable bearer token."""
        if not authorization or not authorization.lower().startswith("bearer "):
            return False
        token = authorization[7:].strip()
        expected = self._behaviour.api_key
        return bool(token) and (expected is None or token == expected)


# -- transport faults -----------------------------------------------------------------------------


def default_error_body(status: int) -> dict[str, Any]:
    return {"error": {"message": f"injected fault: HTTP {status}", "type": "server_error"}}


async def serve_transport_fault(
    kind: FaultKind,
    request: Request,
    state: MockState[Any],
    error_body: Callable[[int], Any] = default_error_body,
) -> Response:
    """Serve a transport fault: a 5xx with ``error_body(status)``, a hang, or a reset."""
    state.counters.add_error(kind.value)
    if kind is FaultKind.TIMEOUT:
        await hang_until_disconnect(request, state.behaviour.hang_seconds)
        return JSONResponse(error_body(504), status_code=504)
    if kind is FaultKind.CONNECTION_RESET:
        await abort_connection(request)
        return Response(status_code=500)
    status = int(kind.value.removeprefix("http_"))
    return JSONResponse(error_body(status), status_code=status)


async def hang_until_disconnect(request: Request, seconds: float) -> None:
    """Hold the request for ``seconds``, or until the client goes away (checked every 50 ms)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return
        await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


class ConnectionAborted(ConnectionResetError):
    """Raised where the server gives no socket to abort (in-process ASGI): the client sees it."""


async def abort_connection(request: Request) -> None:
    """Abort the TCP connection under this request (uvicorn), so the client sees a reset.

    uvicorn's ``receive`` is a bound method of its request cycle, which holds the transport.
    Elsewhere (an in-process ``httpx.ASGITransport``) :class:`ConnectionAborted` is raised.
    """
    cycle = getattr(request.receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not hasattr(transport, "abort"):
        raise ConnectionAborted("injected fault: connection reset")
    transport.abort()
    # Let connection_lost run so uvicorn marks the cycle disconnected and drops our response.
    for _ in range(3):
        await asyncio.sleep(0)


# -- admin routes ---------------------------------------------------------------------------------


def mount_admin(app: FastAPI, state: MockState[Any]) -> None:
    """Add the ``/_admin`` routes (see the module docstring) for ``state`` to ``app``."""
    router = APIRouter(prefix=ADMIN_PREFIX, include_in_schema=False)

    @router.get("/counters")
    async def get_counters() -> dict[str, Any]:
        return {**state.counters.snapshot(), "rate_limits": state.rate_snapshot()}

    @router.get("/behaviour")
    async def get_behaviour() -> dict[str, Any]:
        return _dump(state.behaviour)

    @router.put("/behaviour")
    async def put_behaviour(request: Request) -> dict[str, Any]:
        payload = await _json_object(request)
        new = _validated(lambda: state.behaviour_class.model_validate(payload))
        return _dump(state.replace_behaviour(new))

    @router.patch("/behaviour")
    async def patch_behaviour(request: Request) -> dict[str, Any]:
        payload = await _json_object(request)
        return _dump(_validated(lambda: state.patch_behaviour(payload)))

    @router.post("/reset")
    async def reset(behaviour: bool = False) -> dict[str, Any]:
        state.reset(restore_behaviour=behaviour)
        return {"reset": True, "behaviour": _dump(state.behaviour)}

    app.include_router(router)


def _dump(behaviour: Behaviour) -> dict[str, Any]:
    return behaviour.model_dump(mode="json")


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        payload = json.loads(await request.body())
    except ValueError as exc:
        raise HTTPException(400, f"body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise HTTPException(400, "body must be a JSON object")
    return payload


def _validated(build: Callable[[], B]) -> B:
    try:
        return build()
    except ValidationError as exc:
        raise HTTPException(422, exc.errors(include_url=False)) from exc
