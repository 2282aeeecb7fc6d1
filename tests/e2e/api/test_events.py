"""``GET /v1/events`` over real HTTP: every transition of a job in order, a reconnect with
Last-Event-ID that misses nothing, owner scoping, and the gap rule of the follower."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from ingestd.config import Settings
from ingestd.service.events import EventFollower
from tests.e2e.api.conftest import KeyFactory, bearer
from tests.e2e.api.test_documents import md, process_all, upload


async def read_events(
    client: httpx.AsyncClient,
    key: str,
    count: int | None,
    until_state: str | None = None,
    *,
    following: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    **params: Any,
) -> list[dict[str, Any]]:
    """Events from a fresh stream until ``count`` arrived, ``until_state`` is reached, or (with
    neither) the first keep-alive after ``stop`` is set (at once without ``stop``).

    ``following`` is set at the stream's first keep-alive: the server sends one as soon as its
    follower has fixed the stream's start and found nothing new, so events from then on reach
    the stream (a stream without Last-Event-ID starts "now", when the follower starts)."""
    headers = bearer(key)
    if "last_event_id" in params:
        headers["Last-Event-ID"] = str(params.pop("last_event_id"))
    events: list[dict[str, Any]] = []
    try:
        async with (
            asyncio.timeout(90),
            client.stream(
                "GET", "/v1/events", params={"keepalive": 1, **params}, headers=headers
            ) as stream,
        ):
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            event_id = None
            async for line in stream.aiter_lines():
                if line.startswith(": keep-alive"):
                    if following is not None:
                        following.set()
                    if count is None and until_state is None and (stop is None or stop.is_set()):
                        break
                if line.startswith("id: "):
                    event_id = int(line[4:])
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    assert event["id"] == event_id
                    events.append(event)
                    if len(events) == count or event["to_state"] == until_state:
                        break
    finally:
        if following is not None:
            following.set()  # also when the stream ended first: nobody waits on it forever
    return events


async def test_a_client_sees_every_transition_in_order_and_resumes_without_loss(
    client: httpx.AsyncClient, make_key: KeyFactory, owner: str, api_settings: Settings
) -> None:
    key = await make_key(owner)
    [doc] = (await upload(client, key, [("live.md", md("live progress"))])).json()["documents"]
    job = doc["job_id"]
    following = asyncio.Event()
    first_part = asyncio.create_task(
        read_events(client, key, 3, job_id=job, after=0, following=following)
    )
    await following.wait()
    await process_all(api_settings)
    first = await first_part
    rest = await read_events(
        client, key, None, until_state="complete", job_id=job, last_event_id=first[-1]["id"]
    )
    seen = first + rest
    history = (await client.get(f"/v1/jobs/{job}/events", headers=bearer(key))).json()["events"]
    assert [e["id"] for e in seen] == [e["id"] for e in history]
    assert [e["to_state"] for e in seen][-1] == "complete"
    assert [e["id"] for e in seen] == sorted({e["id"] for e in seen})


async def test_a_live_stream_gets_new_events_and_only_the_callers(
    client: httpx.AsyncClient, make_key: KeyFactory, owner: str
) -> None:
    mine, theirs = await make_key(owner), await make_key(f"{owner}-b")
    mine_following, theirs_following, seen = asyncio.Event(), asyncio.Event(), asyncio.Event()
    listening = asyncio.create_task(read_events(client, mine, 1, following=mine_following))
    other = asyncio.create_task(
        read_events(client, theirs, None, following=theirs_following, stop=seen)
    )
    await asyncio.gather(mine_following.wait(), theirs_following.wait())
    [doc] = (await upload(client, mine, [("n.md", md("notify"))])).json()["documents"]
    cancelled = await client.post(f"/v1/jobs/{doc['job_id']}/cancel", headers=bearer(mine))
    assert cancelled.status_code == 200
    [event] = await listening
    assert event["job_id"] == doc["job_id"] and event["to_state"] == "cancelled"
    seen.set()  # the other stream ends at its next keep-alive: it has looked past the event
    assert all(e["job_id"] != doc["job_id"] for e in await other)


def test_the_follower_waits_on_a_gap_until_its_writers_are_gone() -> None:
    follower = EventFollower(db=None, owner=None, cursor=10)  # type: ignore[arg-type]
    assert follower._safe_upto([11, 12, 14], xmin=100, xmax=105) == 12
    follower.cursor = 12
    assert follower._safe_upto([14, 15], xmin=103, xmax=106) == 12  # writers may still commit
    assert follower._safe_upto([13, 14, 15], xmin=103, xmax=106) == 15  # filled in the meantime
    assert not follower.waiting_on_gap
    follower.cursor = 15
    assert follower._safe_upto([17], xmin=200, xmax=201) == 15
    assert follower._safe_upto([17], xmin=201, xmax=202) == 17  # a rollback: skipped
