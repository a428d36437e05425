"""Start a rendered project's production server on a free loopback port, and always stop it."""

from __future__ import annotations

import os
import signal
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import frameworks
import httpx


class ServerFailed(RuntimeError):
    """Raised when a server exits or never answers /health; carries its output."""


def free_port() -> int:
    """Return a loopback port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_command(
    python: Path, framework: str, package: str, port: int, app: str | None = None
) -> list[str]:
    """The production server the rendered README documents (`frameworks.TABLE`), serving the
    rendered package's app, or `app` (then with the reference options)."""
    row = frameworks.framework(framework)
    if app is None:
        return [str(python), "-m", *row.command(port, row.app(package))]
    return [str(python), "-m", *row.command(port, app, *row.reference_options)]


@contextmanager
def in_thread(server: socketserver.TCPServer) -> Iterator[int]:
    """Run a `socketserver` server (an HTTP server of the standard library, say) in a thread
    of this process; yield its port; shut it down and close it, always."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass(frozen=True)
class RunningServer:
    """A server started by `server_process`: its URL, its process, what it printed."""

    url: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def output(self) -> str:
        """Everything the server printed so far."""
        return read(self.log)

    def command_has(self, word: str) -> bool:
        """Whether `word` is part of the command that started the server."""
        command = self.process.args  # always a list here (`server_command`)
        return any(word in str(part) for part in (command if isinstance(command, list) else []))


@contextmanager
def running_server(*args: Any, **kwargs: Any) -> Iterator[str]:
    """`server_process` (same arguments), yielding only the base URL."""
    with server_process(*args, **kwargs) as server:
        yield server.url


@contextmanager
def server_process(
    project: Path,
    framework: str,
    package: str,
    python: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    app: str | None = None,
) -> Iterator[RunningServer]:
    """Run the server in `project`; yield it (its process's PID leads the server's process
    group). The server is stopped by PID on the way out, always."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            server_command(python, framework, package, port, app),
            cwd=project,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(process, url, log, timeout)
            yield RunningServer(url, process, log)
            if process.poll() is not None:
                raise ServerFailed(f"server died with {process.returncode}:\n{read(log)}")
        finally:
            stop(process)


def wait_until_healthy(
    process: subprocess.Popen[bytes], url: str, log: IO[bytes], timeout: float
) -> None:
    """Poll /health until it answers 200; fail fast when the server process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(f"server exited with {process.returncode}:\n{read(log)}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise ServerFailed(f"server did not answer /health within {timeout} s:\n{read(log)}")


def stop(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """Stop the server's whole process group (gunicorn's workers too), by PID."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def read(log: IO[bytes]) -> str:
    """Return what the server printed so far."""
    log.seek(0)
    return log.read().decode(errors="replace")


def run_to_exit(
    project: Path, framework: str, package: str, python: Path, env: Mapping[str, str]
) -> tuple[int, str]:
    """Start a server that should refuse to start; return its exit status and output."""
    process = subprocess.Popen(
        server_command(python, framework, package, free_port()),
        cwd=project,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=60)
    finally:
        stop(process)
    return process.returncode, output
