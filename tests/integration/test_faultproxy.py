"""The TCP fault proxy: forwarding to TCP and Unix-socket upstreams (the embedded PostgreSQL),
and each fault — latency, cut, black hole, refusal — seen by real clients (psycopg, httpx)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from ingestd.db.embedded import EmbeddedPostgres
from ingestd.mocks import BackgroundServer
from ingestd.mocks.openai import OpenAIBehaviour
from ingestd.mocks.openai import create_app as create_openai
from ingestd.testing.faultproxy import FaultProxy
from tests.waiting import eventually, wait_until


class Echo:
    """A TCP echo server that also keeps everything it received."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.port = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.received += data
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    server = Echo()
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    yield server
    listener.close()


@pytest.fixture
async def proxy(echo: Echo) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(("127.0.0.1", echo.port)) as running:
        yield running
        # Every connection a test opened has ended, so that no task of it is left pending on the
        # session's event loop (to be garbage-collected, with a warning, in a later test).
        await eventually(lambda: running.open_connections == 0, what="the connections to end")


async def connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*proxy.address)


async def test_bytes_flow_both_ways_unchanged(proxy: FaultProxy, echo: Echo) -> None:
    reader, writer = await connect(proxy)
    payload = bytes(range(256)) * 1000  # 256 kB: several reads and writes
    writer.write(payload)
    await writer.drain()
    assert await reader.readexactly(len(payload)) == payload
    writer.close()
    assert bytes(echo.received) == payload
    assert proxy.stats.bytes_up == proxy.stats.bytes_down == len(payload)


async def test_latency_delays_each_direction(proxy: FaultProxy) -> None:
    proxy.set_latency(0.25)
    reader, writer = await connect(proxy)
    started = time.monotonic()
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    assert time.monotonic() - started >= 0.5  # there and back
    writer.close()


async def test_cut_all_resets_open_connections_and_new_ones_work(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    writer.write(b"a")
    assert await reader.readexactly(1) == b"a"
    assert proxy.cut_all() == 1
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await reader.readexactly(1)
    writer.close()
    reader, writer = await connect(proxy)
    writer.write(b"b")
    assert await reader.readexactly(1) == b"b"
    writer.close()
    assert proxy.stats.cut == 1


async def test_black_hole_holds_bytes_then_delivers_them_in_order(
    proxy: FaultProxy, echo: Echo
) -> None:
    reader, writer = await connect(proxy)
    writer.write(b"before")
    assert await reader.readexactly(6) == b"before"
    proxy.blackhole(60)
    writer.write(b"held")
    late_reader, late_writer = await connect(proxy)  # accepted, not connected upstream yet
    late_writer.write(b"late")
    await asyncio.sleep(0.3)  # an absence can only be seen by waiting; it cannot fail by luck
    assert bytes(echo.received) == b"before"
    proxy.heal()
    assert await reader.readexactly(4) == b"held"
    assert await late_reader.readexactly(4) == b"late"
    for w in (writer, late_writer):
        w.close()


async def test_black_hole_ends_by_itself(proxy: FaultProxy) -> None:
    reader, writer = await connect(proxy)
    proxy.blackhole(0.3)
    writer.write(b"x")
    assert await reader.readexactly(1) == b"x"
    assert proxy.stats.blackholes == 1
    writer.close()


async def test_refuse_closes_the_port_until_accept(proxy: FaultProxy) -> None:
    kept_reader, kept_writer = await connect(proxy)
    proxy.refuse()
    with pytest.raises(ConnectionRefusedError):
        await connect(proxy)
    kept_writer.write(b"k")  # open connections are not touched
    assert await kept_reader.readexactly(1) == b"k"
    proxy.accept()
    await eventually(lambda: proxy._server is not None)
    reader, writer = await connect(proxy)
    writer.write(b"r")
    assert await reader.readexactly(1) == b"r"
    for w in (writer, kept_writer):
        w.close()


async def test_refuse_for_a_while_listens_again_on_the_same_port(proxy: FaultProxy) -> None:
    port = proxy.port
    proxy.refuse(0.3)
    with pytest.raises(ConnectionRefusedError):
        await connect(proxy)

    async def connects() -> bool:
        try:
            _, writer = await connect(proxy)
        except ConnectionRefusedError:
            return False
        writer.close()
        return True

    await eventually(connects, what="the proxy to listen again")
    assert proxy.port == port


# -- real clients ---------------------------------------------------------------------------------


@pytest.fixture
def pg_via_proxy(pg_server: EmbeddedPostgres) -> Iterator[tuple[FaultProxy, str]]:
    """The session's embedded PostgreSQL (a Unix socket) reached over TCP through the proxy."""
    status = pg_server.status()
    socket = Path(status.socket_dir) / f".s.PGSQL.{status.port}"
    with FaultProxy(socket).running() as running:
        url = f"postgresql://postgres@127.0.0.1:{running.port}/postgres?passfile={status.passfile}"
        yield running, url


def test_postgres_through_the_proxy_survives_a_cut(pg_via_proxy: tuple[FaultProxy, str]) -> None:
    proxy, url = pg_via_proxy
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert proxy.cut_all() == 1
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_postgres_connections_are_refused_while_refusing(
    pg_via_proxy: tuple[FaultProxy, str],
) -> None:
    proxy, url = pg_via_proxy
    proxy.refuse()
    with pytest.raises(psycopg.OperationalError, match="refused"):
        psycopg.connect(url, connect_timeout=5)
    proxy.accept()

    def answers() -> bool:
        try:
            with psycopg.connect(url, connect_timeout=5) as conn:
                return conn.execute("SELECT 3").fetchone() == (3,)
        except psycopg.OperationalError:
            return False

    wait_until(answers, timeout=30, interval=0.05, what="PostgreSQL through the proxy again")


def test_http_client_times_out_in_a_black_hole_and_recovers() -> None:
    with (
        BackgroundServer(create_openai(OpenAIBehaviour())) as openai,
        FaultProxy(("127.0.0.1", openai.port)).running() as proxy,
    ):
        base = f"http://127.0.0.1:{proxy.port}"
        with httpx.Client(base_url=base, timeout=0.5) as client:
            assert client.get("/_admin/counters").status_code == 200
            proxy.blackhole(60)
            with pytest.raises(httpx.TimeoutException):
                client.get("/_admin/counters")
            proxy.heal()
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/_admin/counters").status_code == 200
