"""Behaviour controls of the mock LlamaParse server, on top of the generic ones in ``faults``.

:class:`LlamaParseBehaviour` extends :class:`ingestd.mocks.faults.Behaviour`: ``latency`` is the
time a job takes (``fixed_ms`` + ``per_unit_ms`` per page; default 100 ms + 50 ms per page),
``request_latency`` is added before answering any request, ``rate_limits`` is the upload budget
(50 per 10 s), ``quota`` is the credit budget (402 once spent). It adds credits per page by tier,
holding or failing jobs, a project to enforce (403), and the webhook faults and retry schedule.
:class:`Arm` is a fault drawn per occasion (per webhook event, per job) rather than per request.
:class:`LlamaParseState` keeps the arms' progress and the credits spent, and resets them with the
generic state.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ingestd.mocks.faults import Behaviour, Latency, MockState, RateLimits

TIER_CREDITS: dict[str, float] = {"fast": 1, "cost_effective": 3, "agentic": 10, "agentic_plus": 45}


class Arm(BaseModel):
    """A fault that fires with ``probability`` after ``skip`` chances, ``count`` times at most."""

    model_config = ConfigDict(extra="forbid")

    probability: float = Field(0.0, ge=0.0, le=1.0)
    count: int | None = Field(None, ge=0)  # None: no limit
    skip: int = Field(0, ge=0)


class WebhookFaults(BaseModel):
    """What goes wrong with webhook deliveries (each event draws each fault once)."""

    model_config = ConfigDict(extra="forbid")

    delay_ms: float = Field(0.0, ge=0.0)  # before the first attempt of every delivery
    drop: Arm = Field(default_factory=Arm)  # never sent
    duplicate: Arm = Field(default_factory=Arm)  # sent twice, same event id
    reorder: Arm = Field(default_factory=Arm)  # a non-terminal event held until after the last
    bad_signature: Arm = Field(default_factory=Arm)  # signed with the wrong secret


class WebhookDelivery(BaseModel):
    """The vendor's retry schedule: wait ``backoff_seconds[i-1] * backoff_scale`` before try i."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(3, ge=1)
    backoff_seconds: list[float] = Field(default_factory=lambda: [1.0, 2.0, 4.0], min_length=1)
    backoff_scale: float = Field(1.0, ge=0.0)
    timeout_seconds: float = Field(30.0, gt=0.0)


class LlamaParseBehaviour(Behaviour):
    """The generic controls, with ``latency`` as job time (per page) and ``quota`` in credits."""

    latency: Latency = Field(default_factory=lambda: Latency(fixed_ms=100.0, per_unit_ms=50.0))
    request_latency: Latency = Field(default_factory=Latency)  # before answering any request
    # The upload budget (POST .../upload and POST /api/v2/parse); status polls are not limited.
    rate_limits: RateLimits = Field(
        default_factory=lambda: RateLimits(requests_per_minute=50, window_seconds=10.0)
    )
    retry_after_header: bool = True  # send Retry-After with a 429
    credits_per_page: dict[str, float] = Field(default_factory=lambda: dict(TIER_CREDITS))
    # When set, a request naming another ``project_id`` gets 403 (wrong organisation/project).
    project_id: str | None = None
    hold_jobs: bool = False  # keep new jobs PENDING until set back to false
    fail_jobs: Arm = Field(default_factory=Arm)  # jobs that end FAILED whatever their content
    webhook_faults: WebhookFaults = Field(default_factory=WebhookFaults)
    webhook_delivery: WebhookDelivery = Field(default_factory=WebhookDelivery)


# Counters this mock adds to the generic ones (all present, from zero, in /_admin/counters).
LLAMAPARSE_COUNTERS = (
    "uploads",
    "jobs_completed",
    "jobs_failed",
    "jobs_cancelled",
    "webhook_attempts",
    "webhooks_sent",
    "webhooks_failed",
    "webhooks_dropped",
    "webhooks_duplicated",
    "webhooks_bad_signature",
)


class LlamaParseState(MockState[LlamaParseBehaviour]):
    """Generic mock state plus fault arms' progress and the credits spent."""

    def __init__(self, behaviour: LlamaParseBehaviour) -> None:
        super().__init__(behaviour)
        self._zero_counters()

    def reset(self, restore_behaviour: bool = False) -> None:
        super().reset(restore_behaviour)
        self._zero_counters()

    def _zero_counters(self) -> None:
        for name in LLAMAPARSE_COUNTERS:
            self.counters.add(name, 0)

    def _reset_runtime_locked(self) -> None:
        super()._reset_runtime_locked()
        self._arm_progress: dict[str, list[int]] = {}
        self.credits_spent = 0.0

    def fires(self, name: str, arm: Arm) -> bool:
        """Draw the arm called ``name`` once (see :class:`Arm`)."""
        with self._lock:
            seen_fired = self._arm_progress.setdefault(name, [0, 0])
            seen_fired[0] += 1
            if seen_fired[0] <= arm.skip or arm.probability <= 0.0:
                return False
            if arm.count is not None and seen_fired[1] >= arm.count:
                return False
            if arm.probability < 1.0 and self.rng.random() >= arm.probability:
                return False
            seen_fired[1] += 1
            return True

    def request_delay(self) -> float:
        """Seconds to wait before answering a request (``request_latency``, with its jitter)."""
        lat = self.behaviour.request_latency
        with self._lock:
            jitter = self.rng.uniform(0, lat.jitter_ms) if lat.jitter_ms else 0.0
        return (lat.fixed_ms + jitter) / 1000

    def credits_exhausted(self) -> bool:
        quota = self.behaviour.quota
        with self._lock:
            return quota is not None and self.credits_spent >= quota

    def spend_credits(self, credits: float) -> None:
        with self._lock:
            self.credits_spent += credits
        self.counters.add("credits", credits)
