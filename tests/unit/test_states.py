"""Every allowed and every forbidden transition of the state machine."""

from __future__ import annotations

import itertools

import pytest

from ingestd.errors import IllegalTransition
from ingestd.states import (
    ALLOWED_TRANSITIONS,
    FAILED_STATES,
    HAPPY_PATH,
    RETRY_FROM,
    RUNNABLE_STATES,
    TERMINAL_STATES,
    State,
    check_transition,
    is_allowed,
    next_state,
)

S = State
EXPECTED_ALLOWED = {
    # the successful path
    (S.UPLOADED, S.PARSE_QUEUED),
    (S.PARSE_QUEUED, S.PARSED),
    (S.PARSED, S.PARSE_VALIDATED),
    (S.PARSE_VALIDATED, S.CHUNKING),
    (S.CHUNKING, S.CHUNKS_STORED),
    (S.CHUNKS_STORED, S.EMBEDDING_QUEUED),
    (S.EMBEDDING_QUEUED, S.EMBEDDING_IN_PROGRESS),
    (S.EMBEDDING_IN_PROGRESS, S.EMBEDDINGS_STORED),
    (S.EMBEDDINGS_STORED, S.COMPLETE),
    # failures, by the stage that failed
    (S.UPLOADED, S.FAILED_PARSE),
    (S.PARSE_QUEUED, S.FAILED_PARSE),
    (S.PARSED, S.FAILED_PARSE),
    (S.PARSE_VALIDATED, S.FAILED_CHUNKING),
    (S.CHUNKING, S.FAILED_CHUNKING),
    (S.CHUNKS_STORED, S.FAILED_EMBEDDING),
    (S.EMBEDDING_QUEUED, S.FAILED_EMBEDDING),
    (S.EMBEDDING_IN_PROGRESS, S.FAILED_EMBEDDING),
    (S.EMBEDDINGS_STORED, S.FAILED_EMBEDDING),
    # a user's retry, back to the start of the failed stage
    (S.FAILED_PARSE, S.UPLOADED),
    (S.FAILED_CHUNKING, S.PARSE_VALIDATED),
    (S.FAILED_EMBEDDING, S.CHUNKS_STORED),
    (S.CANCELLED, S.UPLOADED),
    # re-index a complete document
    (S.COMPLETE, S.PARSE_VALIDATED),
} | {(s, S.CANCELLED) for s in HAPPY_PATH if s != S.COMPLETE}


def test_the_table_is_exactly_the_documented_one() -> None:
    assert set(ALLOWED_TRANSITIONS) == EXPECTED_ALLOWED


@pytest.mark.parametrize(("a", "b"), sorted(EXPECTED_ALLOWED))
def test_allowed(a: State, b: State) -> None:
    assert is_allowed(a, b)
    check_transition(a, b)


FORBIDDEN = sorted(
    (a, b) for a, b in itertools.product(State, State) if (a, b) not in EXPECTED_ALLOWED
)


@pytest.mark.parametrize(("a", "b"), FORBIDDEN)
def test_forbidden(a: State, b: State) -> None:
    assert not is_allowed(a, b)
    with pytest.raises(IllegalTransition) as info:
        check_transition(a, b)
    assert info.value.code == "state.illegal_transition"


def test_state_sets() -> None:
    assert S.COMPLETE in TERMINAL_STATES
    assert FAILED_STATES < TERMINAL_STATES
    assert RUNNABLE_STATES.isdisjoint(TERMINAL_STATES)
    assert len(HAPPY_PATH) == 10
    assert set(RETRY_FROM) == FAILED_STATES | {S.CANCELLED}


def test_next_state_walks_the_happy_path() -> None:
    state = S.UPLOADED
    seen = [state]
    while state != S.COMPLETE:
        state = next_state(state)
        seen.append(state)
    assert tuple(seen) == HAPPY_PATH
    with pytest.raises(IllegalTransition):
        next_state(S.COMPLETE)
