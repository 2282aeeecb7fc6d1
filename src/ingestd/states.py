"""The document state machine: every state, and the only transitions allowed between them.

This table is the single source of truth. ``db.migrate`` copies it into the ``job_transitions``
table, where a trigger rejects any other state change, so the database enforces the same rules.
"""

from __future__ import annotations

import itertools
from enum import StrEnum

from ingestd.errors import IllegalTransition


class State(StrEnum):
    UPLOADED = "uploaded"
    PARSE_QUEUED = "parse_queued"
    PARSED = "parsed"
    PARSE_VALIDATED = "parse_validated"
    CHUNKING = "chunking"
    CHUNKS_STORED = "chunks_stored"
    EMBEDDING_QUEUED = "embedding_queued"
    EMBEDDING_IN_PROGRESS = "embedding_in_progress"
    EMBEDDINGS_STORED = "embeddings_stored"
    COMPLETE = "complete"
    FAILED_PARSE = "failed_parse"
    FAILED_CHUNKING = "failed_chunking"
    FAILED_EMBEDDING = "failed_embedding"
    CANCELLED = "cancelled"


HAPPY_PATH: tuple[State, ...] = (
    State.UPLOADED,
    State.PARSE_QUEUED,
    State.PARSED,
    State.PARSE_VALIDATED,
    State.CHUNKING,
    State.CHUNKS_STORED,
    State.EMBEDDING_QUEUED,
    State.EMBEDDING_IN_PROGRESS,
    State.EMBEDDINGS_STORED,
    State.COMPLETE,
)

FAILED_STATES = frozenset({State.FAILED_PARSE, State.FAILED_CHUNKING, State.FAILED_EMBEDDING})
TERMINAL_STATES = FAILED_STATES | {State.COMPLETE, State.CANCELLED}
RUNNABLE_STATES = frozenset(HAPPY_PATH) - TERMINAL_STATES

# The failure a stage ends in when it fails while the job is in a given state.
FAILURE_OF: dict[State, State] = {
    State.UPLOADED: State.FAILED_PARSE,
    State.PARSE_QUEUED: State.FAILED_PARSE,
    State.PARSED: State.FAILED_PARSE,
    State.PARSE_VALIDATED: State.FAILED_CHUNKING,
    State.CHUNKING: State.FAILED_CHUNKING,
    State.CHUNKS_STORED: State.FAILED_EMBEDDING,
    State.EMBEDDING_QUEUED: State.FAILED_EMBEDDING,
    State.EMBEDDING_IN_PROGRESS: State.FAILED_EMBEDDING,
    State.EMBEDDINGS_STORED: State.FAILED_EMBEDDING,
}

# Where a retried failed job starts again: the first state of the stage that failed.
RETRY_FROM: dict[State, State] = {
    State.FAILED_PARSE: State.UPLOADED,
    State.FAILED_CHUNKING: State.PARSE_VALIDATED,
    State.FAILED_EMBEDDING: State.CHUNKS_STORED,
    State.CANCELLED: State.UPLOADED,
}


def _allowed() -> frozenset[tuple[State, State]]:
    edges: set[tuple[State, State]] = set(itertools.pairwise(HAPPY_PATH))
    edges |= set(FAILURE_OF.items())
    edges |= {(state, State.CANCELLED) for state in RUNNABLE_STATES}
    edges |= {(failed, start) for failed, start in RETRY_FROM.items()}
    # Re-index: a complete document goes through chunking and embedding again.
    edges.add((State.COMPLETE, State.PARSE_VALIDATED))
    return frozenset(edges)


ALLOWED_TRANSITIONS: frozenset[tuple[State, State]] = _allowed()


def is_allowed(from_state: State | str, to_state: State | str) -> bool:
    return (State(from_state), State(to_state)) in ALLOWED_TRANSITIONS


def check_transition(from_state: State | str, to_state: State | str) -> None:
    """Raise ``IllegalTransition`` unless ``from_state -> to_state`` is allowed."""
    if not is_allowed(from_state, to_state):
        raise IllegalTransition(str(from_state), str(to_state))


def next_state(state: State) -> State:
    """The next state on the successful path."""
    index = HAPPY_PATH.index(state)
    if index + 1 >= len(HAPPY_PATH):
        raise IllegalTransition(state, "<after complete>")
    return HAPPY_PATH[index + 1]
