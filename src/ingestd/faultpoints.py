"""Named fault points: places in the pipeline that configuration can arm to misbehave.

The chaos tests use them to stop a worker at a known point (``sleep``), make a stage fail
(``raise`` a transient or permanent error) or kill the process outright (``crash``). Armed with
``INGESTD_FAULTS`` (JSON), e.g.::

    INGESTD_FAULTS='{"stage.before_commit:chunking": {"action": "sleep", "seconds": 30}}'

Each spec may give ``probability`` (default 1) and ``count`` (how many times it fires; default
unlimited). Names: ``stage.before:<state>``, ``stage.before_commit:<state>``,
``stage.after_commit:<state>``, ``embed.after_slice``. Unarmed points cost a dict lookup.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from typing import Literal

import structlog
from pydantic import BaseModel, Field

from ingestd.errors import PermanentError, TransientError

log = structlog.get_logger(__name__)


class FaultSpec(BaseModel):
    action: Literal["sleep", "raise_transient", "raise_permanent", "crash"]
    seconds: float = 0.0
    probability: float = Field(1.0, ge=0.0, le=1.0)
    count: int | None = None


class FaultPoints:
    def __init__(self, specs: dict[str, FaultSpec] | None = None, seed: int | None = None) -> None:
        self.specs = dict(specs or {})
        self.fired: dict[str, int] = {}
        self._rng = random.Random(seed)

    async def hit(self, name: str) -> None:
        spec = self.specs.get(name)
        if spec is None or not self._should_fire(name, spec):
            return
        self.fired[name] = self.fired.get(name, 0) + 1
        log.warning("fault.hit", point=name, action=spec.action, pid=os.getpid())
        if spec.action == "sleep":
            await asyncio.sleep(spec.seconds)
        elif spec.action == "raise_transient":
            raise TransientError("fault.injected", f"injected transient fault at {name}")
        elif spec.action == "raise_permanent":
            raise PermanentError("fault.injected", f"injected permanent fault at {name}")
        elif spec.action == "crash":
            os.kill(os.getpid(), signal.SIGKILL)

    def _should_fire(self, name: str, spec: FaultSpec) -> bool:
        if spec.count is not None and self.fired.get(name, 0) >= spec.count:
            return False
        return self._rng.random() < spec.probability
