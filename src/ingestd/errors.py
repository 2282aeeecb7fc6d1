"""The exception hierarchy of ingestd, and the stable error codes that reach jobs and users.

    IngestdError                 root; every error carries a stable ``code`` and a human message
    ├── TransientError           retry with backoff (timeouts, 5xx, 429, lost connections)
    │   └── RateLimitedError     retry after the time the vendor asked for
    ├── PermanentError           fail the stage at once (bad content, auth, validation)
    │   ├── IllegalTransition    a state change the state machine forbids
    │   ├── NotFound             no such object for this caller (HTTP 404)
    │   └── Conflict             the object's state does not allow the operation (HTTP 409)
    ├── RecoverableError         a service is down: wait, then retry; counted leniently
    └── Throttled                not a failure: a shared rate limit, an open circuit breaker or
                                 a spent budget; the job is parked (no attempt counted) until
                                 ``delay`` has passed, with ``waiting_on`` naming what it awaits
        (and LeaseLost, raised inside a worker when its fencing token no longer matches)

Vendor and driver errors are translated at the adapter boundary, keeping the original as
``__cause__``. ``code`` looks like ``<stage>.<reason>`` (``parse.encrypted``,
``embed.rate_limited``); ``details`` holds extra structured facts (a vendor's own code and message,
a status code) that are stored with the job's ``last_error``.
"""

from __future__ import annotations

from typing import Any


class IngestdError(Exception):
    """Root of every error ingestd raises on purpose."""

    kind = "error"

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        """The structured form stored in ``jobs.last_error`` and ``job_events.error``."""
        return {"code": self.code, "message": self.message, "kind": self.kind, **self.details}


class TransientError(IngestdError):
    """Worth retrying after a backoff: the same call may well succeed later."""

    kind = "transient"


class RateLimitedError(TransientError):
    """The vendor throttled us; ``retry_after`` (seconds) is its hint, when it gave one."""

    def __init__(
        self, code: str, message: str, retry_after: float | None = None, **details: Any
    ) -> None:
        super().__init__(code, message, retry_after=retry_after, **details)
        self.retry_after = retry_after


class PermanentError(IngestdError):
    """Retrying cannot help: the input or the configuration must change."""

    kind = "permanent"


class RecoverableError(IngestdError):
    """A dependency is down: wait for it (circuit breaker), then retry; counted leniently."""

    kind = "recoverable"


class Throttled(IngestdError):
    """Capacity is missing, not the request at fault: park the job for ``delay`` seconds.

    Attempts stay unchanged. ``waiting_on`` names what the job waits for: a rate limit
    (``openai:text-embedding-3-small:tokens``),
    a circuit breaker (``breaker:openai``) or a budget (``budget:openai:day``). Codes:
    ``traffic.rate_limited``, ``traffic.breaker_open``, ``budget.exhausted``.
    """

    kind = "throttled"

    def __init__(
        self, code: str, message: str, *, waiting_on: str, delay: float, **details: Any
    ) -> None:
        super().__init__(code, message, waiting_on=waiting_on, delay=round(delay, 3), **details)
        self.waiting_on = waiting_on
        self.delay = delay


class NotFound(PermanentError):
    """No such object for this caller; another owner's object is "not found" too."""


class Conflict(PermanentError):
    """The object is not in a state that allows the operation (retry a running job, ...)."""


class IllegalTransition(PermanentError):
    """A state change that the state machine does not allow."""

    def __init__(self, from_state: str, to_state: str) -> None:
        super().__init__(
            "state.illegal_transition",
            f"a job cannot go from {from_state!r} to {to_state!r}",
            from_state=from_state,
            to_state=to_state,
        )


class LeaseLost(IngestdError):
    """This worker's claim on a job was taken over (lease expired); drop the job, write nothing."""

    kind = "lease_lost"


class ConfigurationError(PermanentError):
    """Settings that cannot work (an unknown provider, a missing key)."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__("config.invalid", message, **details)
