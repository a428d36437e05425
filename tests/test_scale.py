"""Several instances on one PostgreSQL database: a logout on one is refused by the others
within a fraction of a second (LISTEN/NOTIFY), also when an instance's listener connection is
killed meanwhile (it reconnects and reloads), and by an instance started afterwards; and an
instance cut off from the database fails closed: a token revoked meanwhile gets 503, never 200,
even on a route that reads nothing but the token's claims, until it has caught up."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from faultproxy import FaultProxy
from liveserver import RunningServer, server_process
from projects import PYTHON, Project, Render, wait_for
from servers import TEST_SERVER_SETTINGS, conninfo
from test_production import TIMEOUTS, assert_unavailable, through
from variants import FRAMEWORKS

PASSWORD = "correct horse battery"
#: Generous for a loaded 2-core machine; the benchmark measures the real delay (p99).
PROPAGATION_SECONDS = 2.0
#: How long an instance may trust its set while its listener's connection is silent (the
#: rendered README: "at most that second", core/revocations.py's STALE_SECONDS), and a margin
#: for a loaded machine.
SILENT_SECONDS, SILENT_MARGIN_SECONDS = 1.0, 0.5
#: How long the outage lasts while the instance cut off is asked, again and again.
OUTAGE_SECONDS = 2.0
#: From the database's return to the instance refusing (401) again, listener back included:
#: its reconnection backs off up to 5 s while the database stays away.
RECOVERY_SECONDS = 10.0
#: A route of the project's own that needs only the token's claims (no read of the user).
CLAIMS_ROUTE = "/scale-probe/claims"
#: That route, as the rendered README tells users to write it in `web/routes/custom.py`.
CLAIMS_VIEWS = {
    "fastapi": """

from {package}.web.deps import AccessClaims


@router.get("{route}")
async def claims_only(claims: AccessClaims) -> dict[str, str]:
    return {{"sub": claims["sub"]}}
""",
    "flask": """

from {package}.web.deps import current_claims, token_required


@bp.get("{route}")
@token_required
def claims_only() -> dict[str, str]:
    return {{"sub": current_claims()["sub"]}}
""",
}


def descendants(pid: int) -> set[int]:
    """`pid` and every process under it (gunicorn's workers), from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
    found, pending = {pid}, [pid]
    while pending:
        parent = pending.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in found:
                found.add(child)
                pending.append(child)
    return found


@pytest.fixture(params=FRAMEWORKS)
def instances(
    request: pytest.FixtureRequest, render: Render, tmp_path: Path, postgres_schema: str
) -> Iterator[Callable[[], RunningServer]]:
    """`start()` starts another instance of one project on one PostgreSQL schema."""
    project = render(framework=request.param, jwt_algorithm="EdDSA")
    env = {
        "PYTHONPATH": str(project.path / "src"),
        "DATABASE_URL": postgres_schema,
        "JWT_KEYS_DIR": str(tmp_path / "keys"),  # one key ring: every instance verifies
        **TEST_SERVER_SETTINGS,
    }
    with ExitStack() as stack:

        def start() -> RunningServer:
            return stack.enter_context(
                server_process(project.path, project.framework, project.package, PYTHON, env=env)
            )

        yield start


def sign_in(url: str) -> str:
    username = f"user-{uuid.uuid4().hex[:10]}"
    credentials = {"username": username, "password": PASSWORD}
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.post("/auth/register", json=credentials).status_code == 201
        response = client.post("/auth/login", data={"grant_type": "password", **credentials})
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token


def me(url: str, token: str) -> int:
    return httpx.get(f"{url}/users/me", headers={"Authorization": f"Bearer {token}"}).status_code


def refused_within(url: str, token: str, seconds: float) -> float:
    """Poll until `url` refuses `token`; return how long it took."""
    start = time.monotonic()
    while (status := me(url, token)) == 200:
        assert time.monotonic() - start < seconds, "the other instance still accepts it"
        time.sleep(0.01)
    assert status == 401
    return time.monotonic() - start


def log_out(url: str, token: str) -> None:
    response = httpx.post(f"{url}/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 204, response.text


def admin(postgres_url: str) -> psycopg.Connection:
    """A connection of the test's own to the PostgreSQL server (autocommit)."""
    return psycopg.connect(conninfo(postgres_url).split("?")[0], autocommit=True)


def serving(server: RunningServer) -> set[int]:
    """The processes that answer requests, each with a listener of its own: gunicorn's workers,
    or uvicorn's one process."""
    pid = server.process.pid
    return descendants(pid) - {pid} or {pid}


def listener_backends(server: RunningServer, postgres_url: str) -> set[int]:
    """The server-side processes (PostgreSQL's pids) of the revocation listeners' connections of
    `server`'s processes, as `pg_stat_activity` shows them."""
    names = [f"revocation-listener {pid}" for pid in descendants(server.process.pid)]
    with admin(postgres_url) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = ANY(%s)", (names,)
        ).fetchall()
    return {pid for (pid,) in rows}


def listening_again(
    server: RunningServer, postgres_url: str, gone: set[int], seconds: float
) -> None:
    """Wait until every process of `server` has a listener connection that is not one of
    `gone` (those that were cut), for at most `seconds`."""
    wanted = len(serving(server))
    back = wait_for(
        lambda: len(listener_backends(server, postgres_url) - gone) >= wanted, timeout=seconds
    )
    assert back, f"{wanted} listener(s) did not connect again within {seconds} s"


def kill_listeners(server: RunningServer, postgres_url: str) -> set[int]:
    """Terminate the revocation listeners' connections of `server`'s processes; their
    server-side pids."""
    backends = listener_backends(server, postgres_url)
    with admin(postgres_url) as connection:
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (list(backends),)
        )
    return backends


def test_a_logout_holds_on_every_instance(
    instances: Callable[[], RunningServer], postgres_url: str
) -> None:
    first, second = instances(), instances()
    token = sign_in(first.url)
    assert me(second.url, token) == 200  # verified and remembered there
    log_out(first.url, token)
    assert me(first.url, token) == 401
    assert refused_within(second.url, token, PROPAGATION_SECONDS) < PROPAGATION_SECONDS

    # The listener's connection dies: a revocation made around it is enforced, and still is
    # once the listener has connected again and reloaded (from memory). The database stays
    # reachable, so the listener is back within a fraction of a second: this cannot tell a
    # process that stops trusting its set from one that reconnects fast enough;
    # `test_an_instance_cut_off_from_the_database_fails_closed` can.
    other = sign_in(first.url)
    assert me(second.url, other) == 200
    killed = kill_listeners(second, postgres_url)
    assert killed
    log_out(first.url, other)
    refused_within(second.url, other, PROPAGATION_SECONDS)
    listening_again(second, postgres_url, gone=killed, seconds=RECOVERY_SECONDS)
    for _ in range(5):  # the reload follows the connection by a query
        assert me(second.url, other) == 401
        time.sleep(0.05)

    # An instance started after the logout refuses it: with its listeners connected, from its
    # first load (or, for a moment before that, from the database; the rendered suite's
    # `test_a_process_started_after_a_logout_knows_it` checks the load itself).
    third = instances()
    listening_again(third, postgres_url, gone=set(), seconds=RECOVERY_SECONDS)
    assert me(third.url, token) == 401
    assert me(third.url, other) == 401
    fresh = sign_in(third.url)
    assert me(first.url, fresh) == 200


@dataclass(frozen=True)
class CutOff:
    """Two instances of one project on one PostgreSQL schema: `direct` reaches it directly,
    `behind` through `proxy`, whose faults cut `behind`'s pool and listener at once."""

    direct: RunningServer
    behind: RunningServer
    proxy: FaultProxy


def with_claims_route(project: Project, tmp_path: Path) -> Path:
    """A copy of `project` whose `web/routes/custom.py` has `CLAIMS_ROUTE`, written there as
    the rendered README says (the rendered project is shared by the session's tests)."""
    copy = shutil.copytree(
        project.path, tmp_path / "project", ignore=shutil.ignore_patterns("__pycache__")
    )
    custom = copy / "src" / project.package / "web" / "routes" / "custom.py"
    view = CLAIMS_VIEWS[project.framework].format(package=project.package, route=CLAIMS_ROUTE)
    custom.write_text(custom.read_text() + view)
    return copy


@pytest.fixture(params=FRAMEWORKS)
def cut_off(
    request: pytest.FixtureRequest, render: Render, tmp_path: Path, postgres_schema: str
) -> Iterator[CutOff]:
    project = render(framework=request.param, jwt_algorithm="EdDSA")
    path = with_claims_route(project, tmp_path)
    env = {
        "PYTHONPATH": str(path / "src"),
        "JWT_KEYS_DIR": str(tmp_path / "keys"),
        **TIMEOUTS,  # an outage answers 503 within seconds
        **TEST_SERVER_SETTINGS,
    }
    with FaultProxy(("127.0.0.1", 5432)) as proxy, ExitStack() as stack:

        def start(database_url: str) -> RunningServer:
            return stack.enter_context(
                server_process(
                    path,
                    project.framework,
                    project.package,
                    PYTHON,
                    env={**env, "DATABASE_URL": database_url},
                )
            )

        yield CutOff(start(postgres_schema), start(through(proxy, postgres_schema)), proxy)


#: The routes that need a valid token that is not revoked: one reads only its claims, the other
#: the user too.
PROTECTED = (CLAIMS_ROUTE, "/users/me")


def get(url: str, path: str, token: str) -> httpx.Response:
    """`path` on `url` with `token`; the timeout is far above an outage's answer time."""
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{url}{path}", headers=headers, timeout=30)


def unavailable(url: str, path: str, token: str) -> None:
    """`path` answers the project's 503 (its envelope, Retry-After) in time; never 200."""
    start = time.monotonic()
    response = get(url, path, token)
    assert response.status_code != 200, f"{path} accepted a revoked token"
    assert_unavailable(response, time.monotonic() - start)


def unavailable_throughout(url: str, token: str, seconds: float) -> None:
    """Ask both `PROTECTED` routes again and again, for `seconds` and at least twice each
    (however slow the machine); each answer is the project's 503."""
    rounds, deadline = 0, time.monotonic() + seconds
    while rounds < 2 or time.monotonic() < deadline:
        for path in PROTECTED:
            unavailable(url, path, token)
        rounds += 1
        time.sleep(0.05)


def refused_again(url: str, token: str, seconds: float) -> None:
    """Poll both `PROTECTED` routes until each refuses `token` (401); meanwhile only 503."""
    deadline = time.monotonic() + seconds
    for path in PROTECTED:
        while (response := get(url, path, token)).status_code != 401:
            assert response.status_code == 503, (path, response.status_code, response.text)
            assert time.monotonic() < deadline, f"{path} still answers 503 after {seconds} s"
            time.sleep(0.1)


def test_an_instance_cut_off_from_the_database_fails_closed(
    cut_off: CutOff, postgres_url: str
) -> None:
    direct, behind, proxy = cut_off.direct, cut_off.behind, cut_off.proxy
    listening_again(behind, postgres_url, gone=set(), seconds=RECOVERY_SECONDS)
    token = sign_in(direct.url)
    for path in PROTECTED:
        assert get(behind.url, path, token).status_code == 200, path

    # The database goes away for `behind`: its pool and its listener are cut at once (connections
    # reset, new ones refused). A logout on `direct` meanwhile never reaches its listener, and
    # its set could only say "not revoked": every answer is 503, on the route that needs no
    # read of the user too, as long as the outage lasts; /health still answers.
    listeners = listener_backends(behind, postgres_url)
    proxy.down()
    log_out(direct.url, token)
    unavailable_throughout(behind.url, token, OUTAGE_SECONDS)
    assert httpx.get(f"{behind.url}/health", timeout=30).status_code == 200

    # The database is back: the token is refused (read per request, then from the set that
    # the listener loaded when it connected again, since it never heard of the logout).
    proxy.pass_through()
    refused_again(behind.url, token, RECOVERY_SECONDS)
    listening_again(behind, postgres_url, gone=listeners, seconds=RECOVERY_SECONDS)
    for _ in range(5):
        for path in PROTECTED:
            assert get(behind.url, path, token).status_code == 401, path
        time.sleep(0.05)
    fresh = sign_in(direct.url)
    for path in PROTECTED:
        assert get(behind.url, path, fresh).status_code == 200, path

    # A silent cut (a partition: nothing arrives, nothing fails): the listener cannot tell, so
    # its set is trusted only for a second after its last ping came back. Past that, the
    # route that needs no read of the user answers 503 for a token revoked meanwhile, before
    # the stalled connections are cut (the listener's deadline is `TIMEOUTS`' 3 s).
    proxy.blackhole()
    cut_at = time.monotonic()
    log_out(direct.url, fresh)
    time.sleep(max(0.0, cut_at + SILENT_SECONDS + SILENT_MARGIN_SECONDS - time.monotonic()))
    unavailable(behind.url, CLAIMS_ROUTE, fresh)
    assert httpx.get(f"{behind.url}/health", timeout=30).status_code == 200
    proxy.pass_through()
    refused_again(behind.url, fresh, RECOVERY_SECONDS)
