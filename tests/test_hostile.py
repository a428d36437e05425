"""The hostile clients, against tiny servers on loopback, and the process memory reading."""

from __future__ import annotations

import os
import select
import socket
import socketserver
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from hostile import (
    probe_latencies,
    send_oversized_body,
    send_oversized_header,
    slow_clients,
    tree_rss_bytes,
)
from liveserver import in_thread
from projects import PYTHON, wait_for

MIB = 2**20


@contextmanager
def allocations() -> Iterator[list[int]]:
    """Yield a list that then holds the peak of the Python memory allocated in the block."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    peak: list[int] = []
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1] - before)
        if started:
            tracemalloc.stop()


# slow_clients


class Recorder(socketserver.BaseRequestHandler):
    """Record what each connection sends, and when it closes (silence for 10 s ends it)."""

    def handle(self) -> None:
        record = {"data": b"", "closed": False}
        self.server.records.append(record)  # type: ignore[attr-defined]
        self.request.settimeout(10)
        try:
            while data := self.request.recv(4096):
                record["data"] += data
        except OSError:  # reset: closed too
            pass
        finally:
            record["closed"] = True


@pytest.fixture
def recorder() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """A server recording every connection; yields its port and the records."""
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Recorder) as server:
        server.daemon_threads = True
        server.records = []  # type: ignore[attr-defined]
        with in_thread(server) as port:
            yield port, server.records  # type: ignore[attr-defined]


def test_slow_clients_hold_connections_then_close_them_by_themselves(
    recorder: tuple[int, list[dict[str, Any]]],
) -> None:
    port, records = recorder
    start = time.monotonic()
    with slow_clients("127.0.0.1", port, count=5, interval_s=0.05, duration_s=1.5) as slow:
        assert slow.opened == 5
        assert wait_for(
            lambda: len(records) == 5 and all(r["data"].count(b"\r\n") >= 4 for r in records)
        )
        assert slow.holding == 5
        assert not any(record["closed"] for record in records)
        assert wait_for(lambda: all(record["closed"] for record in records), timeout=10)
        closed_after = time.monotonic() - start
        assert slow.done.is_set()
        assert slow.holding == 0
    assert closed_after >= 1.4
    for record in records:
        assert record["data"].startswith(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:")
        assert b"\r\n\r\n" not in record["data"]  # the headers never ended
    assert slow.headers_sent >= 5 * 4


def test_slow_clients_close_when_the_block_ends(
    recorder: tuple[int, list[dict[str, Any]]],
) -> None:
    port, records = recorder
    start = time.monotonic()
    with slow_clients("127.0.0.1", port, count=3, interval_s=0.1, duration_s=60) as slow:
        assert wait_for(lambda: len(records) == 3)
    assert slow.done.is_set()
    assert wait_for(lambda: all(record["closed"] for record in records))
    assert time.monotonic() - start < 10


class Impatient(socketserver.BaseRequestHandler):
    """Answer 408 after 0.2 s of a request that does not end, and close."""

    def handle(self) -> None:
        time.sleep(0.2)
        self.request.sendall(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n")


def test_slow_clients_notice_the_server_giving_up() -> None:
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Impatient) as server:
        server.daemon_threads = True
        with (
            in_thread(server) as port,
            slow_clients("127.0.0.1", port, count=3, interval_s=0.05, duration_s=10) as slow,
        ):
            assert wait_for(lambda: slow.closed_by_server == 3)
            assert slow.statuses == [408, 408, 408]
            assert slow.holding == 0


# probe_latencies


class Health(BaseHTTPRequestHandler):
    """/health answers at once, /slow after 0.5 s, anything else 404."""

    timeout = 10  # no connection holds a test server for ever
    clients: ClassVar[list[int]] = []

    def do_GET(self) -> None:
        self.clients.append(self.client_address[1])
        if self.path == "/slow":
            time.sleep(0.5)
        self.send_response(200 if self.path in ("/health", "/slow") else 404)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def health() -> Iterator[int]:
    """A threaded HTTP server; yields its port."""
    Health.clients = []
    with ThreadingHTTPServer(("127.0.0.1", 0), Health) as server:
        server.daemon_threads = True
        with in_thread(server) as port:
            yield port


def test_probe_latencies_time_each_request_on_a_new_connection(health: int) -> None:
    latencies = probe_latencies(f"http://127.0.0.1:{health}/health", duration_s=0.5)
    assert 1 <= len(latencies) <= 5
    assert all(latency is not None and 0 < latency <= 1.0 for latency in latencies)
    assert len(set(Health.clients)) == len(latencies)  # one client port per request


@pytest.mark.parametrize(("path", "why"), [("/slow", "too slow"), ("/missing", "404")])
def test_probe_latencies_count_failures_as_none(health: int, path: str, why: str) -> None:
    latencies = probe_latencies(f"http://127.0.0.1:{health}{path}", 0.5, timeout_s=0.2)
    assert latencies
    assert latencies == [None] * len(latencies), why


def test_probe_latencies_of_a_closed_port_are_none() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    start = time.monotonic()
    latencies = probe_latencies(f"http://127.0.0.1:{port}/health", 0.3, timeout_s=0.2)
    assert latencies
    assert latencies == [None] * len(latencies)
    assert time.monotonic() - start < 5


def test_slow_clients_show_in_probes_of_a_one_worker_server() -> None:
    Health.clients = []
    with HTTPServer(("127.0.0.1", 0), Health) as server, in_thread(server) as port:
        url = f"http://127.0.0.1:{port}/health"
        assert probe_latencies(url, 0.2)[0] is not None
        with slow_clients("127.0.0.1", port, count=1, interval_s=0.1, duration_s=10):
            held = probe_latencies(url, 0.6, interval_s=0.2, timeout_s=0.2)
        assert held
        assert held == [None] * len(held)  # the one worker reads the slow headers
        freed = probe_latencies(url, 1.0, timeout_s=1.0)
        assert freed[-1] is not None


# send_oversized_body, send_oversized_header


@contextmanager
def one_connection(handle: Callable[[socket.socket], Any]) -> Iterator[tuple[int, list[Any]]]:
    """A loopback server that runs `handle` on one connection, in a thread; yields its port
    and a list that then holds what `handle` returned."""
    results: list[Any] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)

        def serve() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(10)
                results.append(handle(connection))

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield listener.getsockname()[1], results
        thread.join(timeout=15)


def read_head(connection: socket.socket, limit: int = 64 * 1024) -> tuple[bytes, bytes]:
    """Read a request head of at most `limit` bytes: (head, what followed it)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < limit:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def refuse_after(limit: int, answer: bool, drain: bool = False) -> Callable[[socket.socket], int]:
    """A handler reading `limit` body bytes, then answering 413 (or not), reading on until the
    client stops if `drain` (as a lingering close does), and closing."""

    def handle(connection: socket.socket) -> int:
        _, body = read_head(connection)
        received = len(body)
        # Bounded: each read gets data or ends it, and the socket times out.
        while received < limit:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += len(chunk)
        if answer:
            connection.sendall(b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\n\r\n")
        if drain:
            connection.shutdown(socket.SHUT_WR)
            while chunk := connection.recv(65536):
                received += len(chunk)
        return received

    return handle


@pytest.mark.parametrize(
    ("answer", "drain", "status"),
    [(True, False, 413), (False, False, None), (True, True, 413)],
    ids=["answers-and-closes", "closes", "answers-and-reads-on"],
)
def test_oversized_body_stops_early_and_is_never_in_memory(
    answer: bool, drain: bool, status: int | None
) -> None:
    size = 200 * MIB
    serve = refuse_after(256 * 1024, answer, drain)
    with one_connection(serve) as (port, received), allocations() as peak:
        result = send_oversized_body("127.0.0.1", port, "/upload", size)
    assert result[0] == status
    assert received[0] <= result[1]  # the server read no more than was sent
    assert 256 * 1024 <= result[1] < size // 4  # it stopped long before the end
    assert peak[0] < 2 * MIB


def read_body(connection: socket.socket) -> tuple[bytes, int]:
    """Read a whole request, Content-Length or chunked; answer 200. Return (head, body size)."""
    stream = connection.makefile("rb")
    lines = []
    for _ in range(100):  # a head of a few lines
        line = stream.readline(65536)
        if line in (b"\r\n", b""):
            break
        lines.append(line)
    head = b"".join(lines)
    size = 0
    if b"Transfer-Encoding: chunked" in head:
        for _ in range(1000):  # a few chunks, then the last, empty one
            length = int(stream.readline(100), 16)
            assert stream.read(length + 2).endswith(b"\r\n")
            size += length
            if length == 0:
                break
    else:
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        size = len(stream.read(length))
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    return head, size


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_the_server_reads_is_sent_whole(chunked: bool) -> None:
    size = 3 * 64 * 1024 + 123  # whole blocks and a short one
    with one_connection(read_body) as (port, received):
        result = send_oversized_body("127.0.0.1", port, "/upload", size, chunked=chunked)
    assert result == (200, size)
    head, body_size = received[0]
    assert head.startswith(b"POST /upload HTTP/1.1\r\n")
    assert body_size == size


def test_oversized_header_stops_when_the_server_answers() -> None:
    size = 200 * MIB

    def refuse(connection: socket.socket) -> bytes:
        head, _ = read_head(connection, limit=16 * 1024)
        connection.sendall(b"HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n")
        return head

    with one_connection(refuse) as (port, received), allocations() as peak:
        status, sent = send_oversized_header("127.0.0.1", port, "/health", "X-Big", size)
    assert status == 431
    assert b"\r\nX-Big: xxxx" in received[0]
    assert 16 * 1024 <= sent < size // 4
    assert peak[0] < 2 * MIB


def test_a_header_the_server_reads_is_sent_whole() -> None:
    def accept(connection: socket.socket) -> bytes:
        head, _ = read_head(connection, limit=100_000)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        return head

    with one_connection(accept) as (port, received):
        assert send_oversized_header("127.0.0.1", port, "/", "X-Big", 70_000) == (200, 70_000)
    assert received[0].endswith(b"\r\nX-Big: " + b"x" * 70_000)


@pytest.mark.parametrize(
    "send",
    [
        lambda: send_oversized_body("10.0.0.1", 80, "/", 10),
        lambda: send_oversized_header("example.com", 80, "/", "X", 10),
        lambda: probe_latencies("http://192.0.2.1/health", 1),
        lambda: slow_clients("10.0.0.1", 80, 1, 1, 1).__enter__(),
    ],
)
def test_only_loopback_is_attacked(send: Callable[[], Any]) -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        send()


# tree_rss_bytes

#: A child that starts a grandchild holding 50 MiB, and waits for its stdin to close.
FAMILY = """
import subprocess, sys
hold = "import sys; data = b'x' * (50 * 2**20); print('ready', flush=True); sys.stdin.read()"
grandchild = subprocess.Popen([sys.executable, "-c", hold], stdin=subprocess.PIPE)
sys.stdin.read()
grandchild.stdin.close()
grandchild.wait(timeout=30)
"""


def test_tree_rss_counts_every_descendant() -> None:
    before = tree_rss_bytes(os.getpid())
    assert 10 * MIB < before < 64 * 2**30
    child = subprocess.Popen(
        [PYTHON, "-c", FAMILY], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        assert select.select([child.stdout], [], [], 20)[0], "the grandchild did not start"
        assert child.stdout.readline() == "ready\n"
        assert tree_rss_bytes(child.pid) >= 50 * MIB  # the child alone holds ~10 MiB
        assert tree_rss_bytes(os.getpid()) - before >= 50 * MIB
    finally:
        child.stdin.close()
        child.wait(timeout=30)
        child.stdout.close()
    with pytest.raises(ProcessLookupError):
        tree_rss_bytes(child.pid)
