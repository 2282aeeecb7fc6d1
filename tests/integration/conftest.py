"""Fixtures of the integration tier: the mock vendor servers' state, reset for each test."""

from __future__ import annotations

from typing import Any

import pytest

from ingestd.mocks import BackgroundServer


@pytest.fixture
def state(server: BackgroundServer) -> Any:
    """The state of the mock this module serves as its ``server`` fixture (a module-scoped
    BackgroundServer), reset for this test: counters, behaviour and one-off faults."""
    mock = server.app.state.mock
    mock.reset(restore_behaviour=True)
    return mock
