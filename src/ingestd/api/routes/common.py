"""What the ``/v1`` route modules share: the app's database and blob store, and the paging and
filter parameters, each defined (and documented in the schema) once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request

from ingestd.db import Database
from ingestd.ports import BlobStore
from ingestd.states import State

StateQuery = Annotated[
    list[State] | None, Query(alias="state", description="Repeatable.", max_length=20)
]
LimitQuery = Annotated[int, Query(ge=1, le=500)]
CursorQuery = Annotated[
    str | None, Query(max_length=400, description="`next_cursor` of the previous page.")
]


def db_of(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def blobs_of(request: Request) -> BlobStore:
    blobs: BlobStore = request.app.state.blobs
    return blobs
