"""An instance whose DATABASE_URL goes through a connection pooler (PgBouncer, live): its
revocation listener sees the pooler, says so once in its log and stops, so the instance reads
the `revocations` table per request (a logout elsewhere is refused at once, and so is a row
written into the table with no notification, which a set in memory would miss); with
DATABASE_LISTEN_URL set to a direct connection, the listener keeps the revocations in memory
anyway: once PgBouncer is gone, that instance still tells a valid token from a revoked one on
a route that needs only the token's claims, while the one without it answers 503. Behind
PgBouncer in transaction mode, every read works: the instance prepares no statement there."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import psycopg
import pytest
from liveserver import RunningServer, free_port, read, server_process
from projects import PYTHON, Render, missing, wait_for
from servers import TEST_SERVER_SETTINGS, conninfo
from test_production import TIMEOUTS
from test_scale import (
    CLAIMS_ROUTE,
    PROPAGATION_SECONDS,
    RECOVERY_SECONDS,
    get,
    listening_again,
    log_out,
    serving,
    sign_in,
    unavailable,
    with_claims_route,
)
from variants import FRAMEWORKS

PGBOUNCER = Path("/usr/sbin/pgbouncer")
#: The start of the listener's warning (`revocations.POOLED_WARNING` in the rendered project).
POOLED_WARNING = "Revocation listener: its connection goes through a connection pooler"
#: From an instance's start to its listener's warning; generous for a loaded 2-core machine.
WARNING_SECONDS = 5.0
#: PgBouncer's server connections in transaction mode, for more clients at once: each
#: transaction of a client is lent any of them.
TRANSACTION_SERVER_CONNECTIONS = 2
TRANSACTION_CLIENTS = 8
#: Each client's requests on each route: past psycopg's prepare threshold (5) many times.
TRANSACTION_ROUNDS = 15
#: How long the direct listener's instance is asked once PgBouncer is gone: longer than the
#: second a set is trusted without a ping back (`revocations.STALE_SECONDS`).
MEMORY_SECONDS = 2.0


def schema_of(url: str) -> str:
    """The schema a `postgres_schema` URL selects (its `options=-csearch_path=...`)."""
    options = parse_qs(urlsplit(url).query)["options"][0]
    assert options.startswith("-csearch_path="), options
    return options.split("=", 1)[1]


@dataclass
class PgBouncer:
    """A PgBouncer process on a loopback port, in front of the test database, whose server
    connections use `schema`."""

    port: int
    process: subprocess.Popen[bytes]
    directory: Path
    output: IO[bytes]

    def url(self, database: str = "test") -> str:
        """A SQLAlchemy URL to the database through PgBouncer (no `options`: PgBouncer 1.18
        does not pass that startup parameter on; its server connections set the schema)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        """What PgBouncer logged so far (its log file, or what it printed before opening it)."""
        logfile = self.directory / "pgbouncer.log"
        return logfile.read_text(errors="replace") if logfile.exists() else read(self.output)

    def stop(self) -> None:
        """Stop PgBouncer by its process id (1.18: SIGTERM is an immediate shutdown, every
        connection closed); killed if it has not ended within seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def unprivileged() -> tuple[int, int] | None:
    """The user and group to run PgBouncer as when this process is root (PgBouncer refuses to
    run as root): postgres if it exists, else nobody; None when not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        return user.pw_uid, user.pw_gid
    missing("an unprivileged user (postgres or nobody) to run PgBouncer as")


@contextmanager
def pgbouncer(server_url: str, schema: str, mode: str) -> Iterator[PgBouncer]:
    """PgBouncer in `mode` (session or transaction) on a free loopback port in front of the
    database of `server_url` (a SQLAlchemy URL), as its user, in `schema`; stopped by its
    process id on the way out, always. In transaction mode it has few server connections for
    many clients, as a pooler in that mode is for."""
    if not PGBOUNCER.exists():
        missing(f"PgBouncer at {PGBOUNCER} (apt-get install pgbouncer, or scripts/dev.py test)")
    run_as = unprivileged()
    port = free_port()
    # PgBouncer's user must read its configuration and write its log: a directory of its own.
    directory = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    server = urlsplit(server_url)
    search_path = f'SET search_path TO "{schema}"'
    database = " ".join(
        (
            f"host={server.hostname} port={server.port or 5432}",
            f"dbname={server.path.lstrip('/')} user={server.username}",
            f"connect_query='{search_path}'",
        )
    )
    (directory / "pgbouncer.ini").write_text(
        f"""[databases]
test = {database}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = {mode}
; session mode: a server connection goes back to the pool reset (DISCARD ALL also resets the
; search_path that `connect_query` set when it was opened): set it again
server_reset_query = DISCARD ALL; {search_path}
default_pool_size = {TRANSACTION_SERVER_CONNECTIONS if mode == "transaction" else 50}
max_client_conn = 200
logfile = {directory / "pgbouncer.log"}
"""
    )
    if run_as is not None:
        for path in (directory, directory / "pgbouncer.ini"):
            os.chown(path, *run_as)
    try:
        with tempfile.TemporaryFile() as output:
            process = subprocess.Popen(
                [str(PGBOUNCER), str(directory / "pgbouncer.ini")],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                user=None if run_as is None else run_as[0],
                group=None if run_as is None else run_as[1],
                extra_groups=None if run_as is None else [],
            )
            bouncer = PgBouncer(port, process, directory, output)
            try:
                assert wait_for(lambda: answers(bouncer), timeout=10), (
                    f"PgBouncer did not answer within 10 s:\n{bouncer.log()}"
                )
                yield bouncer
            finally:
                bouncer.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def answers(bouncer: PgBouncer) -> bool:
    """Whether a query through `bouncer` works (it failing fast if PgBouncer exited)."""
    assert bouncer.process.poll() is None, f"PgBouncer exited:\n{bouncer.log()}"
    try:
        with psycopg.connect(
            conninfo(bouncer.url()), connect_timeout=1, autocommit=True
        ) as connection:
            connection.execute("SELECT 1")
    except psycopg.OperationalError:
        time.sleep(0.1)
        return False
    return True


@dataclass(frozen=True)
class Pooled:
    """One project on one PostgreSQL schema: `bouncer` in front of it, `start(database_url,
    listen_url)` starts another instance of it."""

    bouncer: PgBouncer
    start: Callable[[str, str | None], RunningServer]


@pytest.fixture
def pool_mode() -> str:
    """PgBouncer's pool mode; a test parametrizes it to ask another."""
    return "session"


@pytest.fixture(params=FRAMEWORKS)
def pooled(
    request: pytest.FixtureRequest,
    render: Render,
    tmp_path: Path,
    postgres_url: str,
    postgres_schema: str,
    pool_mode: str,
) -> Iterator[Pooled]:
    schema = schema_of(postgres_schema)
    with pgbouncer(postgres_url, schema, pool_mode) as bouncer, ExitStack() as stack:
        project = render(framework=request.param, jwt_algorithm="EdDSA")
        path = with_claims_route(project, tmp_path)
        env = {
            "PYTHONPATH": str(path / "src"),
            "JWT_KEYS_DIR": str(tmp_path / "keys"),  # one key ring: every instance verifies
            **TIMEOUTS,  # a database that is away answers 503 within seconds
            **TEST_SERVER_SETTINGS,
        }

        def start(database_url: str, listen_url: str | None) -> RunningServer:
            settings = {**env, "DATABASE_URL": database_url}
            if listen_url is not None:
                settings["DATABASE_LISTEN_URL"] = listen_url
            return stack.enter_context(
                server_process(path, project.framework, project.package, PYTHON, env=settings)
            )

        yield Pooled(bouncer, start)


def status(server: RunningServer, token: str, path: str = CLAIMS_ROUTE) -> int:
    return get(server.url, path, token).status_code


def test_a_listener_behind_a_pooler_fails_closed_and_a_direct_one_keeps_the_set(
    pooled: Pooled, postgres_schema: str, postgres_url: str
) -> None:
    bouncer = pooled.bouncer
    direct = pooled.start(postgres_schema, None)  # A: creates the schema's tables
    behind = pooled.start(bouncer.url(), None)  # B: pool and listener through PgBouncer
    listens = pooled.start(bouncer.url(), postgres_schema)  # C: its listener direct

    # B's listener sees PgBouncer (its process id is not the server's) and says so, once.
    assert wait_for(lambda: POOLED_WARNING in behind.output(), timeout=WARNING_SECONDS), (
        f"no pooler warning from the instance behind PgBouncer:\n{behind.output()}\n"
        f"PgBouncer:\n{bouncer.log()}"
    )
    # Once per process that serves requests (uvicorn's one, gunicorn's workers; gunicorn's
    # master only checks the settings, with no listener): it does not retry.
    processes = len(serving(behind))

    def warned() -> int:
        return behind.output().count(POOLED_WARNING)

    assert wait_for(lambda: warned() >= processes, timeout=WARNING_SECONDS), behind.output()
    time.sleep(0.5)
    assert warned() == processes, behind.output()
    # C's listener connects to PostgreSQL directly (pg_stat_activity shows it), so no warning.
    listening_again(listens, postgres_url, gone=set(), seconds=RECOVERY_SECONDS)
    assert POOLED_WARNING not in listens.output(), listens.output()
    assert POOLED_WARNING not in direct.output(), direct.output()

    # B reads the table per request: a logout on A is refused by B on its very first request.
    token = sign_in(direct.url)
    assert status(behind, token) == 200
    assert status(listens, token) == 200
    log_out(direct.url, token)
    assert status(behind, token) == 401
    assert status(behind, token, "/users/me") == 401

    # Even a revocation no process was told of (a row written straight into the table, with no
    # notification) is refused by B at once. In session mode PgBouncer does deliver a listener's
    # notifications, so a set kept in memory behind it would refuse the logout above too: only
    # this tells B's read per request from such a set.
    unnotified = sign_in(direct.url)
    assert status(behind, unnotified) == 200
    claims = jwt.decode(unnotified, options={"verify_signature": False})
    with psycopg.connect(conninfo(postgres_schema), autocommit=True) as connection:
        connection.execute(
            "INSERT INTO revocations (id, expires_at, revoked_at) VALUES (%s, %s, %s)",
            (claims["jti"], claims["exp"], int(time.time())),
        )
    assert status(behind, unnotified) == 401

    # Two tokens C has seen and accepted; one is revoked on A while C can still reach PgBouncer.
    valid, revoked_later = sign_in(direct.url), sign_in(direct.url)
    for server in (behind, listens):
        assert status(server, valid) == 200
        assert status(server, revoked_later) == 200
    assert wait_for(lambda: status(listens, token) == 401, timeout=PROPAGATION_SECONDS)

    # PgBouncer goes away: B and C lose every connection of their pools, C keeps its direct
    # listener. C's set is in memory and stays trusted (its pings come back), past the second
    # a silent set is trusted: 200 for the valid token, 401 for the revoked one, on the route
    # that needs only the token's claims; /users/me, which reads the user, cannot answer.
    # B cannot check anything: 503, never 200.
    bouncer.stop()
    assert status(listens, token) == 401
    unavailable(listens.url, "/users/me", valid)
    unavailable(behind.url, CLAIMS_ROUTE, valid)
    unavailable(behind.url, CLAIMS_ROUTE, token)

    # A revocation made now reaches C through its direct listener alone (it can read nothing
    # through PgBouncer), within the propagation bound.
    log_out(direct.url, revoked_later)
    deadline = time.monotonic() + PROPAGATION_SECONDS
    while (answer := status(listens, revoked_later)) == 200:
        assert time.monotonic() < deadline, "C still accepts a token revoked on A"
        time.sleep(0.01)
    assert answer == 401, answer

    asked, until = 0, time.monotonic() + MEMORY_SECONDS
    while asked < 5 or time.monotonic() < until:  # several times, and past that second
        assert status(listens, valid) == 200
        assert status(listens, revoked_later) == 401
        assert status(listens, token) == 401
        asked += 1
        time.sleep(0.05)
    unavailable(behind.url, CLAIMS_ROUTE, valid)
    assert httpx.get(f"{behind.url}/health", timeout=30).status_code == 200


@pytest.mark.parametrize("pool_mode", ["transaction"])
def test_a_transaction_mode_pooler_serves_reads_that_psycopg_would_prepare(
    pooled: Pooled, postgres_schema: str
) -> None:
    """PgBouncer in transaction mode (1.18, which keeps no prepared statements) lends each
    transaction any of its server connections; psycopg prepares a statement it has run five
    times on one connection, on the server connection lent then. The instance sees the pooler
    and prepares nothing, so every read works whichever server connection runs it; nor does it
    leave a session setting on a server connection for the pooler's other clients."""
    direct = pooled.start(postgres_schema, None)  # creates the schema's tables
    behind = pooled.start(pooled.bouncer.url(), None)
    tokens = [sign_in(direct.url) for _ in range(TRANSACTION_CLIENTS)]

    def ask(token: str) -> Counter[tuple[str, int]]:
        answers: Counter[tuple[str, int]] = Counter()
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=behind.url, headers=headers, timeout=30) as client:
            for _ in range(TRANSACTION_ROUNDS):
                for path in (CLAIMS_ROUTE, "/users/me"):
                    answers[path, client.get(path).status_code] += 1
        return answers

    with ThreadPoolExecutor(TRANSACTION_CLIENTS) as pool:
        answers = sum(pool.map(ask, tokens), Counter[tuple[str, int]]())
    asked = TRANSACTION_CLIENTS * TRANSACTION_ROUNDS
    assert answers == {(CLAIMS_ROUTE, 200): asked, ("/users/me", 200): asked}, (
        f"{answers}\n{behind.output()[-3000:]}"
    )
    # Writes through it too: a logout there, refused there at once (read per request).
    log_out(behind.url, tokens[0])
    assert status(behind, tokens[0]) == 401
    assert status(behind, tokens[1]) == 200
    # The instance left no session setting on PgBouncer's server connections for its other
    # clients: two transactions at once hold both, and each has the server's default timeout.
    clients = [psycopg.connect(conninfo(pooled.bouncer.url())) for _ in range(2)]
    try:
        timeouts = [c.execute("SHOW statement_timeout").fetchone() for c in clients]
        servers = {c.execute("SELECT pg_backend_pid()").fetchone() for c in clients}
    finally:
        for client in clients:
            client.close()
    assert len(servers) == TRANSACTION_SERVER_CONNECTIONS
    assert timeouts == [("0",)] * len(clients)
