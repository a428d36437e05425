"""Hostile HTTP clients for live servers on loopback, and the memory a server's processes use.

    with slow_clients("127.0.0.1", port, count=8, interval_s=1, duration_s=10) as slow:
        latencies = probe_latencies(f"http://127.0.0.1:{port}/health", duration_s=5)
    status, sent = send_oversized_body("127.0.0.1", port, "/auth/login", 100 * 2**20)
    status, sent = send_oversized_header("127.0.0.1", port, "/health", "X-Big", 2**20)
    rss = tree_rss_bytes(server_pid)

Every client here talks to 127.0.0.0/8 only, streams what it sends from one small block (a
100 MB body is never in memory), and stops by itself: each loop is bounded in count and time.
"""

from __future__ import annotations

import http.client
import math
import os
import re
import select
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from urllib.parse import urlsplit

from faultproxy import loopback

#: What is streamed at a time: the one block a body or header is made of.
BLOCK = 64 * 1024
#: The most connections `slow_clients` opens: each is a file descriptor here.
MAX_SLOW_CLIENTS = 1000
_STATUS = re.compile(rb"HTTP/\d(?:\.\d)? (\d{3})")


class SlowClients:
    """What `slow_clients` did so far; its thread updates it while it runs."""

    def __init__(self) -> None:
        self.opened = 0  # connections made
        self.failed = 0  # connections the server did not accept in time
        self.headers_sent = 0  # header lines sent after the request lines, over all connections
        self.closed_by_server = 0  # connections the server closed or reset
        self.statuses: list[int] = []  # statuses of the answers some connections got (408...)
        self.done = threading.Event()  # set once every connection is closed

    @property
    def holding(self) -> int:
        """Connections still held open now."""
        return 0 if self.done.is_set() else self.opened - self.closed_by_server


@contextmanager
def slow_clients(
    host: str, port: int, count: int, interval_s: float, duration_s: float, path: str = "/"
) -> Iterator[SlowClients]:
    """Open `count` connections, each sending a request line and then a header line every
    `interval_s` (the headers never end), for `duration_s` at most; then close them all.
    The connections are open when the block starts; leaving it closes them too."""
    host = loopback(host)
    if not 0 < count <= MAX_SLOW_CLIENTS or interval_s <= 0 or duration_s <= 0:
        raise ValueError(f"need 0 < count <= {MAX_SLOW_CLIENTS}, interval_s > 0, duration_s > 0")
    state = SlowClients()
    deadline = time.monotonic() + duration_s
    stop = threading.Event()
    with ExitStack() as stack:
        sockets: list[socket.socket] = []
        for _ in range(count):
            if time.monotonic() >= deadline:  # a full backlog makes each connect wait
                state.failed += 1
                continue
            try:
                sock = socket.create_connection((host, port), timeout=min(2.0, duration_s))
            except OSError:
                state.failed += 1
                continue
            stack.enter_context(sock)  # closed on the way out, whatever happens
            sockets.append(sock)
            state.opened += 1
            request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            if not _send_line(sock, request.encode()):
                sockets.remove(sock)
                state.closed_by_server += 1
        hold = threading.Thread(
            target=_hold,
            args=(sockets, state, stop, interval_s, deadline),
            name="slow-clients",
            daemon=True,
        )
        hold.start()
        try:
            yield state
        finally:
            stop.set()
            hold.join(timeout=interval_s + 5)


def _hold(
    sockets: list[socket.socket],
    state: SlowClients,
    stop: threading.Event,
    interval_s: float,
    deadline: float,
) -> None:
    """Send one more header line on every open connection each interval, until the deadline
    or `stop`; then close them all."""
    live = list(sockets)
    try:
        for round_ in range(math.ceil((deadline - time.monotonic()) / interval_s)):
            if stop.wait(interval_s) or time.monotonic() >= deadline or not live:
                break
            for sock in _closed_or_answered(live, state):
                live.remove(sock)
            line = f"X-Slow-{round_}: {'x' * 16}\r\n".encode()
            for sock in list(live):
                if _send_line(sock, line):
                    state.headers_sent += 1
                else:  # an answer that arrived since the last look is still there to read
                    live.remove(sock)
                    _read_answer(sock, state)
                    state.closed_by_server += 1
    finally:
        for sock in sockets:
            sock.close()
        state.done.set()


def _send_line(sock: socket.socket, line: bytes) -> bool:
    """Send a short line; False when the server closed, reset or stopped reading."""
    try:
        sock.sendall(line)
    except OSError:
        return False
    return True


def _closed_or_answered(live: list[socket.socket], state: SlowClients) -> list[socket.socket]:
    """The connections the server closed: read what arrived, recording answers' statuses."""
    poller = select.poll()  # not select(): fine with descriptors above 1024
    by_fd = {sock.fileno(): sock for sock in live}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    closed = []
    for fd, _ in poller.poll(0):
        sock = by_fd[fd]
        if _read_answer(sock, state) == b"":
            closed.append(sock)
            state.closed_by_server += 1
    return closed


def _read_answer(sock: socket.socket, state: SlowClients) -> bytes | None:
    """What has arrived on `sock`, without waiting (None: nothing yet), recording an answer's
    status; b"" once the server closed or reset the connection."""
    try:
        data = sock.recv(BLOCK, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None
    except OSError:
        return b""
    if match := _STATUS.match(data):
        state.statuses.append(int(match.group(1)))
    return data


def probe_latencies(
    url: str, duration_s: float, interval_s: float = 0.1, timeout_s: float = 1.0
) -> list[float | None]:
    """GET `url` every `interval_s` for `duration_s`, each on a new connection; return each
    request's seconds, or None when it failed, took over `timeout_s` or answered >= 400."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ValueError(f"{url!r} is not an http:// URL")
    host, port = loopback(parts.hostname), parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    latencies: list[float | None] = []
    deadline = time.monotonic() + duration_s
    for _ in range(math.ceil(duration_s / interval_s)):
        start = time.monotonic()
        if start >= deadline:
            break
        latencies.append(_probe(host, port, target, timeout_s))
        time.sleep(max(0.0, start + interval_s - time.monotonic()))
    return latencies


def _probe(host: str, port: int, target: str, timeout_s: float) -> float | None:
    """One GET on a new connection: its seconds, or None."""
    start = time.perf_counter()
    connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        connection.request("GET", target, headers={"Connection": "close"})
        response = connection.getresponse()
        response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()
    elapsed = time.perf_counter() - start
    return elapsed if response.status < 400 and elapsed <= timeout_s else None


def send_oversized_body(
    host: str,
    port: int,
    path: str,
    size_bytes: int,
    chunked: bool = False,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 5.0,
    max_seconds: float = 60.0,
) -> tuple[int | None, int]:
    """POST a body of `size_bytes`, announced by Content-Length or sent chunked; stop as soon
    as the server answers, closes or stops reading (`timeout_s`), or after `max_seconds`.
    Return the answer's status (None: no answer) and the body bytes sent (framing excluded)."""
    host = loopback(host)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size_bytes}"
    extra = [f"{name}: {value}" for name, value in (headers or {}).items()]
    head = _head(
        "POST", path, host, port, "Content-Type: application/octet-stream", framing, *extra
    )
    pieces = _body(size_bytes, chunked)
    return _send_request(host, port, head + "\r\n", pieces, timeout_s, max_seconds)


def send_oversized_header(
    host: str,
    port: int,
    path: str,
    name: str,
    size_bytes: int,
    timeout_s: float = 5.0,
    max_seconds: float = 60.0,
) -> tuple[int | None, int]:
    """GET with one header `name` whose value is `size_bytes` long, stopping as
    `send_oversized_body` does. Return the status (or None) and the value bytes sent."""
    host = loopback(host)
    head = _head("GET", path, host, port) + f"{name}: "
    pieces = _header_value(size_bytes)
    return _send_request(host, port, head, pieces, timeout_s, max_seconds)


#: What is streamed: (bytes, how many of them lead as framing, how many payload follow).
Piece = tuple[bytes, int, int]


def _head(method: str, path: str, host: str, port: int, *headers: str) -> str:
    """A request line and headers, each ending with CRLF; the blank line is the caller's."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close", *headers]
    return "".join(f"{line}\r\n" for line in lines)


def _body(size_bytes: int, chunked: bool) -> Iterator[Piece]:
    """The body, made of one block (and one shorter last one), chunk framing included."""
    block = b"x" * BLOCK
    if chunked:
        block = f"{BLOCK:x}\r\n".encode() + block + b"\r\n"
    for offset in range(0, size_bytes, BLOCK):
        size = min(BLOCK, size_bytes - offset)
        if not chunked:
            yield block if size == BLOCK else block[:size], 0, size
        elif size == BLOCK:
            yield block, len(block) - size - 2, size
        else:
            prefix = f"{size:x}\r\n".encode()
            yield prefix + b"x" * size + b"\r\n", len(prefix), size
    if chunked:
        yield b"0\r\n\r\n", 5, 0


def _header_value(size_bytes: int) -> Iterator[Piece]:
    """A header's value, made of one block, then the end of the headers."""
    block = b"x" * BLOCK
    for offset in range(0, size_bytes, BLOCK):
        size = min(BLOCK, size_bytes - offset)
        yield block if size == BLOCK else block[:size], 0, size
    yield b"\r\n\r\n", 4, 0


def _send_request(
    host: str, port: int, head: str, pieces: Iterator[Piece], timeout_s: float, max_seconds: float
) -> tuple[int | None, int]:
    """Send `head` and stream `pieces`; return the answer's status (or None), payload sent."""
    deadline = time.monotonic() + max_seconds
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        encoded = head.encode()
        sent, complete = _stream(sock, [(encoded, len(encoded), 0)], deadline)
        if complete:
            sent, _ = _stream(sock, pieces, deadline)
        return _read_status(sock, timeout_s), sent


def _stream(sock: socket.socket, pieces: Iterable[Piece], deadline: float) -> tuple[int, bool]:
    """Send `pieces`, stopping early when the server answers or closes (the socket turns
    readable), on an error, when a send times out or at `deadline`. Return the payload bytes
    sent and whether every piece went."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    sent = 0
    for data, framing, payload in pieces:
        view = memoryview(data)
        offset = 0
        try:
            # Bounded: each send moves `offset` on by a byte at least, or raises.
            while offset < len(view):
                if poller.poll(0) or time.monotonic() > deadline:
                    return sent + _payload_part(offset, framing, payload), False
                offset += sock.send(view[offset:])
        except OSError:  # reset, closed, or not read for the socket's timeout
            return sent + _payload_part(offset, framing, payload), False
        sent += payload
    return sent, True


def _payload_part(offset: int, framing: int, payload: int) -> int:
    """How much of a piece's payload its first `offset` bytes hold."""
    return max(0, min(offset - framing, payload))


def _read_status(sock: socket.socket, timeout_s: float) -> int | None:
    """The status of the server's answer, or None if it closed or said nothing in time."""
    sock.settimeout(timeout_s)
    received = b""
    # Bounded: a status line fits in 8 KiB, and every read returns data or ends the loop.
    while len(received) < 8192 and b"\r\n" not in received:
        try:
            data = sock.recv(4096)
        except OSError:
            break
        if not data:
            break
        received += data
    match = _STATUS.match(received)
    return int(match.group(1)) if match else None


def tree_rss_bytes(pid: int) -> int:
    """The resident memory (VmRSS) of `pid` and all its descendants, in bytes. Linux only: it
    reads /proc. Pages shared between them (a forked server's workers) count once per process;
    a process without memory (a zombie) counts 0. ProcessLookupError if `pid` is gone."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):  # one listing: bounded by the processes there now
        if entry.isdigit():
            parent = _parent(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    total = _rss(pid)
    if total is None:
        raise ProcessLookupError(f"no process {pid}")
    seen, pending = {pid}, list(children.get(pid, []))
    while pending:  # bounded: each process is visited once
        child = pending.pop()
        if child not in seen:
            seen.add(child)
            total += _rss(child) or 0
            pending += children.get(child, [])
    return total


def _parent(pid: int) -> int | None:
    """The parent of `pid` from /proc/PID/stat, or None if it has gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()  # the name may hold spaces and ")"
    except (OSError, IndexError):
        return None
    return int(fields[1])  # after the name: state, ppid


def _rss(pid: int) -> int | None:
    """VmRSS of `pid` in bytes (0 without memory), or None if it has gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024  # in kB
    except OSError:
        return None
    return 0
