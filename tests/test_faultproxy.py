"""The fault-injecting proxy, in front of the real PostgreSQL server and of an echo server."""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest
from faultproxy import FaultProxy, parse_address
from projects import PYTHON, ROOT, wait_for
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from servers import conninfo

SCRIPT = ROOT / "scripts" / "faultproxy.py"


@pytest.fixture
def postgres(postgres_url: str) -> dict[str, Any]:
    """The PostgreSQL server's connection parameters (for psycopg, not SQLAlchemy)."""
    return conninfo_to_dict(conninfo(postgres_url))


@pytest.fixture
def proxy(postgres: dict[str, Any]) -> Iterator[FaultProxy]:
    """A proxy in front of the PostgreSQL server."""
    with FaultProxy((postgres.get("host", "127.0.0.1"), int(postgres.get("port", 5432)))) as proxy:
        yield proxy


class Connect(Protocol):
    """The `connect` fixture."""

    def __call__(self, direct: bool = False, connect_timeout: int = 3) -> psycopg.Connection: ...


@pytest.fixture
def connect(postgres: dict[str, Any], proxy: FaultProxy) -> Iterator[Connect]:
    """Connect through the proxy (or straight to the server with `direct=True`)."""
    connections: list[psycopg.Connection] = []

    def connect(direct: bool = False, connect_timeout: int = 3) -> psycopg.Connection:
        where = {} if direct else {"host": "127.0.0.1", "port": proxy.port}
        dsn = make_conninfo(**{**postgres, **where}, connect_timeout=connect_timeout)
        connection = psycopg.connect(dsn, autocommit=True)
        connections.append(connection)
        return connection

    yield connect
    for connection in connections:
        connection.close()


def query_seconds(connection: psycopg.Connection, times: int) -> list[float]:
    """Run `SELECT 1` `times` times; the seconds each took."""
    seconds = []
    for _ in range(times):
        start = time.perf_counter()
        assert connection.execute("SELECT 1").fetchone() == (1,)
        seconds.append(time.perf_counter() - start)
    return seconds


def test_pass_through_forwards_queries(connect: Connect, proxy: FaultProxy) -> None:
    connection = connect()
    assert connection.execute("SELECT 1").fetchone() == (1,)
    assert (proxy.accepted, proxy.open_connections) == (1, 1)
    connection.close()
    assert wait_for(lambda: proxy.open_connections == 0)


def test_delay_adds_to_every_round_trip(connect: Connect, proxy: FaultProxy) -> None:
    connection = connect()
    direct = min(query_seconds(connect(direct=True), 5))
    proxy.delay(50)
    delayed = query_seconds(connection, 3)
    # A lower bound only: a delayed reply cannot come early, however loaded the machine.
    assert min(delayed) >= direct + 0.040, (direct, delayed)
    proxy.pass_through()
    assert min(query_seconds(connection, 10)) < min(delayed)


def test_blackhole_hangs_queries_until_it_ends(connect: Connect, proxy: FaultProxy) -> None:
    held = connect()
    proxy.blackhole()
    outcome: list[BaseException | tuple[Any, ...] | None] = []

    def query() -> None:
        try:
            outcome.append(held.execute("SELECT 1").fetchone())
        except psycopg.Error as exc:
            outcome.append(exc)

    hanging = threading.Thread(target=query, daemon=True)
    hanging.start()
    start = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="timeout"):
        connect(connect_timeout=2)  # psycopg's shortest: 2 s
    assert time.monotonic() - start >= 1.5
    assert hanging.is_alive(), outcome  # no answer in all that time
    proxy.pass_through()
    hanging.join(timeout=10)
    assert not hanging.is_alive()
    # The connection lost bytes in the blackhole: it is reset, not resumed.
    assert len(outcome) == 1
    assert isinstance(outcome[0], psycopg.OperationalError)
    assert connect().execute("SELECT 1").fetchone() == (1,)


def test_down_fails_connections_fast_and_comes_back_on_the_same_port(
    connect: Connect, proxy: FaultProxy
) -> None:
    existing = connect()
    port = proxy.port
    proxy.down()
    start = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        connect(connect_timeout=10)
    assert time.monotonic() - start < 1.0
    assert proxy.refused >= 1
    with pytest.raises(psycopg.OperationalError):
        existing.execute("SELECT 1")
    proxy.pass_through()
    assert proxy.port == port
    assert connect().execute("SELECT 1").fetchone() == (1,)


def test_kill_connections_breaks_open_connections_only(connect: Connect, proxy: FaultProxy) -> None:
    first, second = connect(), connect()
    proxy.kill_connections()
    for connection in (first, second):
        with pytest.raises(psycopg.OperationalError):
            connection.execute("SELECT 1")
    assert proxy.mode == "pass-through"
    assert wait_for(lambda: proxy.open_connections == 0)
    assert connect().execute("SELECT 1").fetchone() == (1,)


def test_command_line_proxies_with_a_delay(postgres: dict[str, Any]) -> None:
    target = f"{postgres.get('host', '127.0.0.1')}:{postgres.get('port', 5432)}"
    command: list[str | Path] = [PYTHON, SCRIPT, "--target", target, "--delay-ms", "20"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        try:
            assert select.select([process.stdout], [], [], 10)[0], "no banner in 10 s"
            banner = process.stdout.readline()  # printed once it listens
            address = banner.split()[1]
            dsn = make_conninfo(
                **{**postgres, **dict(zip(("host", "port"), parse_address(address), strict=True))}
            )
            with psycopg.connect(dsn, connect_timeout=3, autocommit=True) as connection:
                assert min(query_seconds(connection, 3)) >= 0.015
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
            assert "stopped after 1 connections" in process.stdout.read()
        finally:
            process.kill()


class Echo(socketserver.BaseRequestHandler):
    """Send back what arrives, until the client closes (or is silent for 5 s)."""

    def handle(self) -> None:
        self.request.settimeout(5)
        with contextlib.suppress(OSError):  # the proxy resets connections on purpose
            while data := self.request.recv(65536):
                self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    """An echo server on loopback."""
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo) as server:
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        host, port = server.server_address[:2]
        assert isinstance(host, str)
        yield host, port
        server.shutdown()
        thread.join(timeout=5)


def test_delays_keep_order_and_do_not_add_up(echo: tuple[str, int]) -> None:
    chunks = [f"chunk {n:02};".encode() for n in range(10)]
    with FaultProxy(echo) as proxy, socket.create_connection(("127.0.0.1", proxy.port), 5) as sock:
        proxy.delay(200)
        start = time.monotonic()
        for chunk in chunks:  # 10 chunks in 90 ms
            sock.sendall(chunk)
            time.sleep(0.01)
        received = b""
        first = None
        while len(received) < len(b"".join(chunks)):  # bounded by the socket's timeout
            data = sock.recv(4096)
            assert data, "the proxy closed the connection"
            first = first or time.monotonic() - start
            received += data
        total = time.monotonic() - start
    assert received == b"".join(chunks)
    assert first is not None
    assert first >= 0.19
    assert total < 1.5  # 10 delays one after another would take 2 s


def test_blackholed_connections_are_reset_after_and_new_ones_work(echo: tuple[str, int]) -> None:
    with FaultProxy(echo) as proxy, contextlib.ExitStack() as sockets:
        address = ("127.0.0.1", proxy.port)
        before = sockets.enter_context(socket.create_connection(address, 5))
        before.sendall(b"hi")
        assert before.recv(100) == b"hi"  # proxied before the blackhole
        proxy.blackhole()
        during = sockets.enter_context(socket.create_connection(address, 5))
        for sock in (before, during):
            sock.sendall(b"lost")
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                sock.recv(100)
        proxy.pass_through()
        for sock in (before, during):
            sock.settimeout(5)
            with pytest.raises(ConnectionResetError):
                sock.recv(100)
        after = sockets.enter_context(socket.create_connection(address, 5))
        after.sendall(b"hello")
        assert after.recv(100) == b"hello"


def test_close_resets_connections_and_is_idempotent(echo: tuple[str, int]) -> None:
    proxy = FaultProxy(echo).start()
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), 5) as sock:
            sock.sendall(b"ping")
            assert sock.recv(100) == b"ping"
            proxy.close()
            proxy.close()
            with pytest.raises(ConnectionResetError):
                sock.recv(100)
    finally:
        proxy.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), 5).close()
    with pytest.raises(RuntimeError):
        proxy.delay(1)


@pytest.mark.parametrize(
    ("target", "listen"),
    [
        ("10.0.0.1", "127.0.0.1"),
        ("db", "127.0.0.1"),
        ("127.0.0.1", "192.0.2.1"),
        ("127.0.0.1", "::1"),
    ],
)
def test_only_loopback_is_allowed(target: str, listen: str) -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        FaultProxy((target, 5432), listen)


@pytest.mark.parametrize(
    "arguments", [["--target", "192.168.1.10:5432"], ["--listen", "0.0.0.0:6432"]]
)
def test_command_line_refuses_other_addresses(arguments: list[str]) -> None:
    result = subprocess.run(
        [PYTHON, SCRIPT, *arguments], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert "not a loopback address (only 127.0.0.0/8)" in result.stderr
