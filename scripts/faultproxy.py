"""A TCP proxy on loopback that injects faults between a client and a server (PostgreSQL).

    with FaultProxy(("127.0.0.1", 5432)) as proxy:
        url = f"postgresql://postgres@{proxy.address}/test"
        proxy.delay(50)  # every request/response round trip costs 50 ms more
        proxy.blackhole()  # a network partition: nothing gets through, queries hang
        proxy.down()  # the server is gone: connections are reset at once
        proxy.pass_through()  # and back, on the same port

One asyncio loop in a background thread carries every connection; the mode methods may be
called from any thread, at any time, and take effect before they return.

Delay: only what the server sends back is held, by the whole delay. A round trip of a
request/response protocol (PostgreSQL's, HTTP's) has exactly one reply phase, so it costs the
delay once, as if half of it were spent on each way; holding one direction instead of both
halves the timers, and the loop's timers are whole milliseconds (epoll), so splitting 1 ms in
two halves would cost 2 ms. Each chunk leaves about `ms` after it arrived, in order: delays do
not add up. What the client sends is not delayed, nor is the TCP connect.

Blackhole: what either side sends is read and dropped, and connections accepted meanwhile are
held without a server connection. A protocol stream that lost bytes cannot be resumed, so when
the blackhole ends (pass_through() or delay()) every connection that saw it is reset; the
clients see a broken connection, as after a partition that outlasted TCP's patience. New
connections work.

Down: the proxy keeps its listening socket (so the port stays the proxy's), but resets every
connection as soon as it is accepted, and resets the open ones. A client sees its connection
reset before a single byte, which fails as fast as a refused connection.

Only 127.0.0.0/8 is allowed, for the target and for the listening address.

Command line, for a benchmark's "PostgreSQL 1 ms away" (runs until interrupted):

    python scripts/faultproxy.py --target 127.0.0.1:5432 [--listen 127.0.0.1:PORT] [--delay-ms N]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import ipaddress
import math
import signal
import socket
import struct
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")

PASS_THROUGH, DELAY, BLACKHOLE, DOWN = "pass-through", "delay", "blackhole", "down"
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
#: How long a caller waits for the proxy's thread to carry out a mode change or to stop.
CONTROL_TIMEOUT_S = 10.0


def loopback(host: str) -> str:
    """`host` as an IPv4 address in 127.0.0.0/8 ("localhost" is 127.0.0.1); else ValueError."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not a loopback address (only 127.0.0.0/8)") from None
    if address.version != 4 or address not in LOOPBACK:
        raise ValueError(f"{host!r} is not a loopback address (only 127.0.0.0/8)")
    return str(address)


def parse_address(text: str) -> tuple[str, int]:
    """`127.0.0.1:5432` as (host, port), the host checked by `loopback`; else ValueError."""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return loopback(host), int(port)


def reset(transport: asyncio.Transport) -> None:
    """Close a connection with a TCP reset (SO_LINGER 0), as a crashed peer would."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed: nothing to reset
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Pipe:
    """One direction of a proxied connection: chunks written in order, each at its due time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.out: asyncio.Transport | None = None  # None until the server connection is made
        self.held: deque[tuple[float, bytes]] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.finishing = False  # the sender has gone: close `out` once the held data is out

    def attach(self, out: asyncio.Transport) -> None:
        """Start writing to `out` (the server connection, once made)."""
        self.out = out
        self._arm()

    def send(self, data: bytes, delay_s: float) -> None:
        """Write `data` about `delay_s` from now, after every chunk sent before it."""
        if delay_s <= 0 and not self.held and self.out is not None:
            if not self.out.is_closing():
                self.out.write(data)
            return
        due = self.loop.time() + delay_s
        if self.held:  # the delay may have shrunk since: never overtake an earlier chunk
            due = max(due, self.held[-1][0])
        self.held.append((due, data))
        self._arm()

    def finish(self) -> None:
        """The sender has gone: deliver what is held, then close the other end."""
        self.finishing = True
        self._arm()

    def drop(self) -> None:
        """Forget what is held (it vanished in a blackhole, or its receiver has gone)."""
        self.held.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _arm(self) -> None:
        if self.out is None or self.timer is not None:
            return
        if self.held:
            self.timer = self.loop.call_at(self.held[0][0], self._release)
        elif self.finishing:
            self.out.close()  # after its buffer is written

    def _release(self) -> None:
        self.timer = None
        if self.out is None:  # armed only once attached
            return
        now = self.loop.time()
        # The head is due (the loop fires timers up to its clock resolution early).
        due = [self.held.popleft()[1]]
        while self.held and self.held[0][0] <= now:
            due.append(self.held.popleft()[1])
        if not self.out.is_closing():
            self.out.writelines(due)
        self._arm()


class _Link:
    """One proxied connection: the client's end, the server's end, and a pipe each way."""

    def __init__(self, proxy: FaultProxy, client: asyncio.Transport, stale: bool) -> None:
        self.proxy = proxy
        self.client: asyncio.Transport | None = client
        self.server: asyncio.Transport | None = None
        self.upward = _Pipe(proxy.loop)  # client -> server
        self.downward = _Pipe(proxy.loop)  # server -> client
        self.downward.attach(client)
        self.stale = stale  # saw a blackhole: reset when it ends
        self.connecting: asyncio.Task[Any] | None = None

    def connect(self) -> None:
        """Open the server connection; what the client sends meanwhile waits in the pipe."""
        self.connecting = self.proxy.loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            await self.proxy.loop.create_connection(
                lambda: _End(self, "server"), *self.proxy.target
            )
        except OSError:  # the server refuses: so does the proxy
            self.connecting = None
            self.reset()
        finally:
            self.connecting = None
            self._forget_if_done()

    def made(self, server: asyncio.Transport) -> bool:
        """The server connection is made: forward to it; False if it is not wanted any more
        (the client left meanwhile, or a blackhole began)."""
        if self.client is None or self.stale:
            return False
        self.server = server
        self.upward.attach(server)
        return True

    def received(self, side: str, data: bytes) -> None:
        """Forward a chunk, delayed if it is the server's reply; drop it in a blackhole."""
        if self.stale:
            return
        if side == "client":
            self.upward.send(data, 0.0)
        elif self.client is not None:
            self.downward.send(data, self.proxy.delay_s)

    def lost(self, side: str) -> None:
        """One end went away: what it sent still reaches the other end, which then closes. In
        a blackhole nothing does: the other end stays open until the blackhole ends."""
        if side == "client":
            self.client = None
            if self.connecting is not None:
                self.connecting.cancel()
            if not self.stale:
                self.downward.drop()
                self.upward.finish()
        else:
            self.server = None
            if not self.stale:
                self.upward.drop()
                self.downward.finish()
        self._forget_if_done()

    def throttle(self, side: str, full: bool) -> None:
        """`side`'s send buffer is full (or drained): stop (or resume) reading the other end."""
        source = self.server if side == "client" else self.client
        if source is not None and not source.is_closing():
            (source.pause_reading if full else source.resume_reading)()

    def blackhole(self) -> None:
        """From now on nothing gets through, and what was held vanishes."""
        self.stale = True
        self.upward.drop()
        self.downward.drop()

    def reset(self) -> None:
        """Reset both ends now."""
        self.upward.drop()
        self.downward.drop()
        for transport in (self.client, self.server):
            if transport is not None:
                reset(transport)
        if self.connecting is not None:
            self.connecting.cancel()

    def _forget_if_done(self) -> None:
        if self.client is None and self.server is None and self.connecting is None:
            self.proxy._links.discard(self)


class _End(asyncio.Protocol):
    """A link's client or server end, as asyncio sees it."""

    def __init__(self, link: _Link | None, side: str, proxy: FaultProxy | None = None) -> None:
        self.link = link
        self.side = side
        self.proxy = proxy  # set on the client end: the link is made when it connects

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # TCP: always a Transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # forward at once, as the ends themselves would (no Nagle delay)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.proxy is not None:
            self.link = self.proxy._accepted(transport)
        elif self.link is not None and not self.link.made(transport):
            self.link = None  # so that its loss is nobody's business
            reset(transport)

    def data_received(self, data: bytes) -> None:
        if self.link is not None:
            self.link.received(self.side, data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.link is not None:
            self.link.lost(self.side)

    def pause_writing(self) -> None:
        if self.link is not None:
            self.link.throttle(self.side, full=True)

    def resume_writing(self) -> None:
        if self.link is not None:
            self.link.throttle(self.side, full=False)


class FaultProxy:
    """Forwards every connection on a free loopback port to `target`, faults on demand."""

    def __init__(
        self,
        target: tuple[str, int] = ("127.0.0.1", 5432),
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.target = (loopback(target[0]), int(target[1]))
        self.listen_host = loopback(listen_host)
        self.listen_port = listen_port
        self.mode = PASS_THROUGH
        self.delay_s = 0.0
        self.accepted = 0  # connections the listening socket accepted, refused ones included
        self.refused = 0  # of those, reset at once because the proxy was down
        self._links: set[_Link] = set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._port = 0
        self._closed = False
        self.loop: asyncio.AbstractEventLoop  # made by start(), with the thread that runs it

    # Life cycle

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> FaultProxy:
        """Listen, and forward from a background thread until `close()`."""
        if self._thread is not None or self._closed:
            raise RuntimeError("a FaultProxy starts once")
        # A backlog for a benchmark's burst of pool connections.
        listener = socket.create_server((self.listen_host, self.listen_port), backlog=512)
        listener.setblocking(False)
        self._listener = listener
        self._port = listener.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run,
            args=(started, listener),
            name=f"faultproxy-{self.port}",
            daemon=True,
        )
        self._thread.start()
        try:
            started.result(timeout=CONTROL_TIMEOUT_S)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Reset every connection, stop listening and stop the thread; again does nothing."""
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is not None and thread.is_alive():
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                future = asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)
                future.result(timeout=CONTROL_TIMEOUT_S)
            self.loop.call_soon_threadsafe(self.loop.stop)
            thread.join(CONTROL_TIMEOUT_S)
        if thread is not None and not self.loop.is_running():
            self.loop.close()
        if self._listener is not None:
            self._listener.close()

    @property
    def port(self) -> int:
        """The loopback port the proxy listens on."""
        if not self._port:
            raise RuntimeError("the proxy is not started")
        return self._port

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT`, for a URL."""
        return f"{self.listen_host}:{self.port}"

    @property
    def open_connections(self) -> int:
        """Proxied connections open now (either end still open)."""
        return len(self._links)

    # Modes: each takes effect before it returns

    def pass_through(self) -> None:
        """Forward everything at once; connections that saw a blackhole are reset."""
        self._call(self._set_mode, PASS_THROUGH, 0.0)

    def delay(self, ms: float) -> None:
        """Hold every reply chunk `ms` milliseconds, so each round trip costs `ms` more."""
        if not (math.isfinite(ms) and ms >= 0):
            raise ValueError(f"delay must be a finite number of ms >= 0, not {ms!r}")
        self._call(self._set_mode, DELAY if ms else PASS_THROUGH, ms / 1000)

    def blackhole(self) -> None:
        """Forward nothing any more, either way; keep (and accept) connections open."""
        self._call(self._set_mode, BLACKHOLE, 0.0)

    def down(self) -> None:
        """Reset every open connection, and every new one as soon as it is accepted."""
        self._call(self._set_mode, DOWN, 0.0)

    def kill_connections(self) -> None:
        """Reset every open proxied connection now (a server restart); the mode stays."""
        self._call(self._reset_all)

    # The loop thread's side

    def _run(self, started: concurrent.futures.Future[None], listener: socket.socket) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            listen = self.loop.create_server(lambda: _End(None, "client", self), sock=listener)
            self._server = self.loop.run_until_complete(listen)
        except BaseException as exc:
            started.set_exception(exc)
            return
        started.set_result(None)
        self.loop.run_forever()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        self._reset_all()
        # Let the aborted transports run their connection_lost and close their sockets;
        # a few loop iterations do it, and the count bounds the wait.
        for _ in range(20):
            if not self._links:
                break
            await asyncio.sleep(0.01)

    def _call(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function` in the loop's thread and return its result."""
        if self._thread is None or self._closed:
            raise RuntimeError("the proxy is not running")
        if threading.current_thread() is self._thread:
            return function(*args)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(function(*args))
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout=CONTROL_TIMEOUT_S)

    def _set_mode(self, mode: str, delay_s: float) -> None:
        self.mode, self.delay_s = mode, delay_s
        if mode == DOWN:
            self._reset_all()
            return
        for link in list(self._links):
            if mode == BLACKHOLE:
                link.blackhole()
            elif link.stale:  # the blackhole is over: its streams lost bytes
                link.reset()

    def _reset_all(self) -> None:
        for link in list(self._links):
            link.reset()

    def _accepted(self, transport: asyncio.Transport) -> _Link | None:
        self.accepted += 1
        if self.mode == DOWN:
            self.refused += 1
            reset(transport)
            return None
        link = _Link(self, transport, stale=self.mode == BLACKHOLE)
        self._links.add(link)
        if not link.stale:  # in a blackhole the server never hears of it
            link.connect()
        return link


def main(argv: list[str] | None = None) -> int:
    """Run a proxy until interrupted (Ctrl-C or SIGTERM)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:5432", help="HOST:PORT to forward to")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any free)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="added to each round trip")
    args = parser.parse_args(argv)
    try:
        target, listen = parse_address(args.target), parse_address(args.listen)
    except ValueError as exc:
        parser.error(str(exc))  # exits with status 2
    if not (math.isfinite(args.delay_ms) and args.delay_ms >= 0):
        parser.error("--delay-ms must be a number >= 0")
    # Held from now on (the proxy's thread inherits the mask) and taken by `sigwait`: one that
    # arrives before the wait begins is not lost, as it could be between a handler and pause().
    stops = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    with FaultProxy(target, *listen) as proxy:
        proxy.delay(args.delay_ms)
        print(
            f"faultproxy: {proxy.address} -> {target[0]}:{target[1]}, "
            f"{args.delay_ms:g} ms added per round trip; Ctrl-C stops",
            flush=True,
        )
        signal.sigwait(stops)
        print(f"faultproxy: stopped after {proxy.accepted} connections", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
