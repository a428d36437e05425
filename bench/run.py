"""Benchmark the rendered services against what users would otherwise write, in one run.

    python3 scripts/dev.py bench [--seconds N] [--rounds N] [--smoke] [--output FILE]
                                 [--postgres URL] [--pg-delay-ms MS] [--sessions N]

Renders four variants (FastAPI and Flask, each with HS256 and EdDSA), starts each under its
production server (uvicorn with one worker; gunicorn with two workers and the project's
gunicorn.conf.py, gthread) beside the two reference apps in bench/ on the same settings, and
loads each route with wrk, in rounds that interleave the apps (figures are medians over the
rounds). Each app runs on SQLite; the EdDSA variants and the references also run on PostgreSQL
(`--postgres`, default TEMPLATE_TEST_POSTGRES or the local server), reached directly and through
scripts/faultproxy.py adding `--pg-delay-ms` (1 ms) per round trip, one schema per app. Then:
/health under a login load (FastAPI, SQLite) and under a /users/me load (each framework,
PostgreSQL behind the proxy; with the same load on /protected and on /health as controls),
each beside /health idle in the same rounds; how soon a second instance refuses a token logged
out on the first (two instances on one PostgreSQL schema, each framework); in process: token
issue and verify per algorithm against bare PyJWT, the revocation check, login and refresh;
and `copier copy` of the default variant. Prints a Markdown report with a table of the targets
and writes it to bench/RESULTS.md (or --output). Without a PostgreSQL server the PostgreSQL
part is left out, and the report says so.

Load generator: wrk (installed from Debian's packages when absent and run as root). It is C
and event-driven, so one thread drives 32 connections while costing the server's two cores
little; a Python load generator would need more CPU than the servers it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
from copier import run_copy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from psycopg import sql
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from liveserver import server_process, stop  # noqa: E402

PYTHON = Path(sys.executable)
USERNAME = "bench"
PASSWORD = "correct horse battery"
ROUTES = ("/health", "/protected", "/users/me")
CONNECTIONS = 32
#: Clients that load a heavy route while /health is measured (as many as for logins).
LOAD_CONNECTIONS = 4
SQLITE = "SQLite"
POSTGRES = "PostgreSQL"
DEFAULT_POSTGRES = os.environ.get(
    "TEMPLATE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
#: How long a second instance may keep accepting a logged-out token before it counts as missed.
REVOCATION_TIMEOUT_S = 2.0
#: The revocation measurement stops after this many misses (each costs the whole timeout).
REVOCATION_MAX_MISSES = 5
#: A second instance refuses a logged-out token once it answers 401 this many times in a row
#: (gunicorn: each on a new connection, which any of its workers may take; a worker asked that
#: still accepts the token starts the count again). With two workers taken at random, all of a
#: row goes to one of them about once in 128 rows: a lagging worker is likely, not certain, to
#: be caught.
REFUSALS_IN_A_ROW = 8

_STARTED = time.monotonic()


def step(text: str) -> None:
    """Say what the run does now, and how long it has taken so far."""
    print(f"[{time.monotonic() - _STARTED:5.0f} s] {text}", flush=True)


#: The FastAPI reference on PostgreSQL. bench/reference_fastapi.py passes SQLite's
#: `check_same_thread` to every driver, as the FastAPI tutorial does, and psycopg refuses
#: unknown options: drop the SQLite-only connection arguments, as a user moving the tutorial to
#: PostgreSQL would. Nothing else changes.
REFERENCE_FASTAPI_POSTGRES = '''"""Written by bench/run.py: bench.reference_fastapi without SQLite's connect_args."""

import sqlalchemy

_create_engine = sqlalchemy.create_engine


def create_engine(url, **options):
    if not str(url).startswith("sqlite"):
        options.pop("connect_args", None)
    return _create_engine(url, **options)


sqlalchemy.create_engine = create_engine

from bench.reference_fastapi import app  # noqa: E402, F401
'''


@dataclass
class App:
    """One server under test."""

    name: str
    framework: str
    app: str
    cwd: Path
    env: dict[str, str]
    ours: bool
    database: str = SQLITE  # SQLite, PostgreSQL, or "PostgreSQL, N ms away"
    proxied: bool = False  # reaches its database through the latency proxy
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    login_ms: float = 0.0
    token: str = ""
    url: str = ""  # while it runs
    leader: int = 0  # the PID that leads its process group, while it runs

    @property
    def label(self) -> str:
        """The name, with the database unless it is SQLite."""
        return self.name if self.database == SQLITE else f"{self.name} on {self.database}"


@dataclass
class Postgres:
    """The PostgreSQL server of the PostgreSQL rows, and the schemas made on it."""

    url: str  # postgresql+psycopg://...
    version: str
    schemas: list[str] = field(default_factory=list)

    @property
    def conninfo(self) -> str:
        return make_url(self.url).set(drivername="postgresql").render_as_string(False)

    @property
    def target(self) -> str:
        """HOST:PORT, for the proxy."""
        parsed = make_url(self.url)
        return f"{parsed.host or '127.0.0.1'}:{parsed.port or 5432}"

    def new_schema(self, through: str | None = None) -> str:
        """A new schema; return the URL that selects it (through HOST:PORT, if given)."""
        name = f"bench_{secrets.token_hex(6)}"
        with psycopg.connect(self.conninfo, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        self.schemas.append(name)
        url = make_url(self.url)
        if through is not None:
            host, port = through.rsplit(":", 1)
            url = url.set(host=host, port=int(port))
        return f"{url.render_as_string(False)}?options=-csearch_path%3D{name}"

    def drop_schemas(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as connection:
            for name in self.schemas:
                drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                connection.execute(drop)
        self.schemas.clear()


def find_postgres(url: str) -> Postgres | str:
    """The server at `url`, or why it cannot be used."""
    candidate = Postgres(url, "")
    try:
        with psycopg.connect(candidate.conninfo, connect_timeout=3) as connection:
            row = connection.execute("SHOW server_version").fetchone()
            if row is None:
                raise RuntimeError("SHOW server_version returned no row")
            candidate.version = row[0]
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0]
        return f"no PostgreSQL at {make_url(url)!r}: {reason}"
    return candidate


@dataclass
class Proxy:
    """scripts/faultproxy.py in a process of its own, so that its CPU can be counted."""

    process: subprocess.Popen[str]
    address: str
    delay_ms: float

    def cpu_seconds(self) -> float:
        return group_cpu_seconds(self.process.pid)


@contextmanager
def latency_proxy(target: str, delay_ms: float) -> Iterator[Proxy]:
    """A loopback proxy to `target` that holds every reply `delay_ms` (one per round trip)."""
    command = [str(PYTHON), str(ROOT / "scripts" / "faultproxy.py"), "--target", target]
    command += ["--listen", "127.0.0.1:0", "--delay-ms", f"{delay_ms:g}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    output = process.stdout
    if output is None:
        raise RuntimeError("scripts/faultproxy.py has no stdout pipe")
    try:
        line = output.readline()
        started = re.match(r"faultproxy: (\S+) ->", line)
        if started is None:
            raise RuntimeError(f"scripts/faultproxy.py did not start: {line!r}")
        yield Proxy(process, started.group(1), delay_ms)
    finally:
        stop(process)
        output.close()


def ensure_wrk() -> str:
    """Return wrk's path, installing Debian's package when it is missing and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("Installing wrk from Debian's packages ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "wrk"]
        subprocess.run(install, check=False, stdout=subprocess.DEVNULL, env=env)
        if not shutil.which("wrk"):
            update = ["apt-get", "update", "-q"]
            subprocess.run(update, check=False, stdout=subprocess.DEVNULL, env=env)
            subprocess.run(install, check=False, stdout=subprocess.DEVNULL, env=env)
        found = shutil.which("wrk")
    if not found:
        sys.exit("The benchmark needs wrk: install it (Debian/Ubuntu: sudo apt-get install wrk).")
    return found


def render(destination: Path, framework: str, algorithm: str) -> Path:
    """Render a variant with the package name the wrappers in bench/ import."""
    run_copy(
        str(ROOT),
        destination,
        data={
            "project_name": "Bench Service",
            "package_name": "bench_service",
            "framework": framework,
            "jwt_algorithm": algorithm,
        },
        defaults=True,
        quiet=True,
    )
    return destination


def private_key_pem() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def apps(work: Path, frameworks: tuple[str, ...], algorithms: tuple[str, ...]) -> list[App]:
    """Our variants and the references, each with its own SQLite database."""
    result = []
    for framework in frameworks:
        for algorithm in algorithms:
            project = render(work / f"{framework}-{algorithm}", framework, algorithm)
            key = (
                {"JWT_SECRET": secrets.token_urlsafe(48)}
                if algorithm == "HS256"
                else {"JWT_PRIVATE_KEY": private_key_pem()}
            )
            env = {
                "PYTHONPATH": f"{project / 'src'}{os.pathsep}{ROOT}",
                "ENVIRONMENT": "production",
                "DATABASE_URL": f"sqlite:///{project / 'bench.db'}",
                # One load generator on one address: the per-client limit would measure itself.
                "THROTTLE_CLIENT_PER_MINUTE": "1000000000",
                **key,
            }
            entry = f"bench.ours_{framework}:app"
            result.append(
                App(f"ours {framework} {algorithm}", framework, entry, project, env, True)
            )
        reference = "flask-jwt-extended" if framework == "flask" else "OAuth2PasswordBearer+PyJWT"
        env = {
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": f"sqlite:///{work / f'reference-{framework}.db'}",
            "JWT_SECRET": secrets.token_urlsafe(48),
        }
        entry = f"bench.reference_{framework}:app"
        result.append(
            App(f"reference {framework} ({reference}) HS256", framework, entry, work, env, False)
        )
    return result


def postgres_apps(
    sqlite_apps: list[App],
    postgres: Postgres,
    locations: list[tuple[str, Proxy | None]],
    work: Path,
    chosen: Callable[[App], bool],
) -> list[App]:
    """The `chosen` apps again, each on a schema of its own at every location (the server
    itself, or through a proxy). Returns every app, each framework's PostgreSQL apps after
    its SQLite ones, so that the rounds interleave them all."""
    shim = work / "reference_fastapi_postgres.py"
    shim.write_text(REFERENCE_FASTAPI_POSTGRES)
    result = []
    for framework in dict.fromkeys(app.framework for app in sqlite_apps):
        siblings = [app for app in sqlite_apps if app.framework == framework]
        result += siblings
        for database, proxy in locations:
            for app in filter(chosen, siblings):
                url = postgres.new_schema(proxy.address if proxy else None)
                env = {**app.env, "DATABASE_URL": url}
                entry = app.app
                if app.app == "bench.reference_fastapi:app":
                    entry = f"{shim.stem}:app"
                    env["PYTHONPATH"] = f"{work}{os.pathsep}{env['PYTHONPATH']}"
                copy = replace(app, app=entry, env=env, database=database, results={})
                result.append(replace(copy, proxied=proxy is not None))
    return result


def prepare_database(app: App) -> None:
    """Ours: the schema, by migration (production refuses a database behind the code). The
    references create their tables when imported: on PostgreSQL import once here, or
    gunicorn's two workers would race to create them."""
    if app.ours:
        command = [str(PYTHON), "-m", "bench_service", "db", "upgrade"]
    elif app.database != SQLITE:
        command = [str(PYTHON), "-c", f"import {app.app.split(':')[0]}"]
    else:
        return
    done = subprocess.run(
        command,
        cwd=app.cwd,
        env={**os.environ, **app.env},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{app.label}: {' '.join(command)} failed:\n{done.stderr}")


@contextmanager
def started(app: App) -> Iterator[App]:
    """Run `app` under its production server; its URL and PID are set while it runs."""
    with server_process(app.cwd, app.framework, "", PYTHON, app.env, app=app.app) as running:
        app.url, app.leader = running.url, running.process.pid
        try:
            yield app
        finally:
            app.url, app.leader = "", 0


def start_together(stack: ExitStack, apps_: list[App]) -> None:
    """Start several apps at once (nothing is measured meanwhile); `stack` stops them."""
    managers = [started(app) for app in apps_]
    with ThreadPoolExecutor(len(managers)) as pool:
        futures = [pool.submit(manager.__enter__) for manager in managers]
    failed = None
    for manager, future in zip(managers, futures, strict=True):
        if future.exception() is None:
            stack.push(manager.__exit__)
        else:
            failed = failed or future.exception()
    if failed is not None:
        raise failed


def group_cpu_seconds(leader: int) -> float:
    """User + system CPU of every process in the server's process group (master and workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == leader:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def matched(pattern: str, output: str) -> re.Match[str]:
    """The first match of `pattern` in a tool's `output`, which must have one."""
    match = re.search(pattern, output)
    if match is None:
        raise RuntimeError(f"no {pattern!r} in the output:\n{output}")
    return match


def wrk(binary: str, url: str, seconds: int, token: str | None) -> dict[str, float]:
    """Load `url` for `seconds`; return req/s, p50/p99 latency and the request count."""
    command = [binary, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    figures = {"rps": float(matched(r"Requests/sec:\s+([\d.]+)", output).group(1))}
    for percentile in ("50", "99"):
        value, unit = matched(rf"\s{percentile}%\s+([\d.]+)(us|ms|s)", output).groups()
        figures[f"p{percentile}_ms"] = float(value) * _UNITS[unit]
    requests = int(matched(r"(\d+) requests in", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors or "Socket errors" in output:
        raise RuntimeError(f"{url}: wrk saw failed requests:\n{output}")
    figures["requests"] = requests
    return figures


def log_in(client: httpx.Client, username: str = USERNAME) -> str:
    """An access token for `username`."""
    form = {"grant_type": "password", "username": username, "password": PASSWORD}
    response = client.post("/auth/login", data=form)
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def sign_in(app: App) -> None:
    """The first time: register a user, log in five times (the median is `login_ms`) and check
    every route answers. Later: a fresh token (a run outlasts a 15-minute access token)."""
    with httpx.Client(base_url=app.url, timeout=30) as client:
        if app.login_ms:
            app.token = log_in(client)
            return
        credentials = {"username": USERNAME, "password": PASSWORD}
        client.post("/auth/register", json=credentials).raise_for_status()
        times = []
        for _ in range(5):
            start = time.perf_counter()
            app.token = log_in(client)
            times.append((time.perf_counter() - start) * 1e3)
        for route in ROUTES:
            response = client.get(route, headers={"Authorization": f"Bearer {app.token}"})
            if response.status_code != 200:
                raise RuntimeError(f"{app.label} {route}: {response.status_code} {response.text}")
    app.login_ms = statistics.median(times)


LOGIN_SCRIPT = """wrk.method = "POST"
wrk.body = "grant_type=password&username=bench&password=correct+horse+battery"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
"""


def load_routes(
    apps_: list[App],
    binary: str,
    seconds: int,
    rounds: int,
    proxy: Proxy | None,
    last_turn: Callable[[App], None],
) -> None:
    """Every app's routes, in rounds that interleave the apps: slow drift of the machine's
    speed then spreads over all of them. Figures are the medians over the rounds. An app that
    is not running (PostgreSQL: each process may hold 10 connections, and a server allows
    100 by default, for everyone) is started for its turn only. `last_turn` runs after an
    app's routes in the last round, while it still runs."""
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    for round_ in range(rounds):
        for app in apps_:
            with ExitStack() as turn:
                if not app.url:
                    step(f"starting {app.label} for its turn")
                    turn.enter_context(started(app))
                step(f"loading {app.label}")
                sign_in(app)
                for route in ROUTES:
                    before = group_cpu_seconds(app.leader)
                    proxy_before = proxy.cpu_seconds() if app.proxied and proxy else 0.0
                    figures = wrk(binary, app.url + route, seconds, app.token)
                    requests = figures["requests"]
                    figures["cpu_us"] = (group_cpu_seconds(app.leader) - before) / requests * 1e6
                    if app.proxied and proxy:
                        figures["proxy_cpu_us"] = (
                            (proxy.cpu_seconds() - proxy_before) / requests * 1e6
                        )
                    runs.setdefault(app.label, {}).setdefault(route, []).append(figures)
                if round_ == rounds - 1:
                    step(f"last turn of {app.label}")
                    last_turn(app)
        step(f"round {round_ + 1} of {rounds} done")
    for app in apps_:
        for route, measured in runs[app.label].items():
            app.results[route] = {
                name: statistics.median(run[name] for run in measured) for name in measured[0]
            }


IDLE = "/health idle, beside the loads"


def health_under_loads(
    app: App, binary: str, seconds: int, rounds: int, loads: dict[str, list[str]]
) -> None:
    """/health latency idle, then while LOAD_CONNECTIONS clients run each of `loads` (wrk's
    arguments after the connection count and duration) without pause, `rounds` times over:
    each ratio compares figures measured seconds apart, whatever the machine does
    meanwhile. Medians over the rounds go to app.results[IDLE] and [f"/health under {name}"],
    with the load's own req/s and non-2xx count."""
    runs: dict[str, list[dict[str, float]]] = {}
    for _ in range(rounds):
        runs.setdefault(IDLE, []).append(wrk(binary, app.url + "/health", seconds, None))
        for name, load in loads.items():
            runs.setdefault(f"/health under {name}", []).append(
                health_beside(app, binary, seconds, load)
            )
    for key, measured in runs.items():
        app.results[key] = {
            name: statistics.median(run[name] for run in measured) for name in measured[0]
        }


def health_beside(app: App, binary: str, seconds: int, load: list[str]) -> dict[str, float]:
    """/health latency while LOAD_CONNECTIONS clients run `load`; the load's figures too."""
    loader = subprocess.Popen(
        [binary, "-t1", f"-c{LOAD_CONNECTIONS}", f"-d{seconds + 1}s", *load],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.5)
        figures = wrk(binary, app.url + "/health", seconds, None)
    finally:
        output = loader.communicate()[0]
    figures["load_rps"] = float(matched(r"Requests/sec:\s+([\d.]+)", output).group(1))
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    figures["load_failed"] = int(failed.group(1)) if failed else 0
    return figures


def health_under_logins(app: App, binary: str, seconds: int, rounds: int, work: Path) -> None:
    """/health latency while four clients log in without pause (Argon2id at full cost)."""
    script = work / "login.lua"
    script.write_text(LOGIN_SCRIPT)
    loads = {"logins": ["-s", str(script), app.url + "/auth/login"]}
    health_under_loads(app, binary, seconds, rounds, loads)


def health_under_reads(app: App, binary: str, seconds: int, rounds: int) -> None:
    """/health latency while four clients read /users/me without pause (one database read
    each, `--pg-delay-ms` away); as controls, the same four clients on /protected (no database
    at all: what the load's CPU costs) and on /health itself (what any four more clients cost
    /health, measured this way on this machine)."""
    bearer = ["-H", f"Authorization: Bearer {app.token}"]
    loads = {route: [*bearer, app.url + route] for route in ("/users/me", "/protected")}
    loads["/health"] = [app.url + "/health"]
    health_under_loads(app, binary, seconds, rounds, loads)


def percentile(values: list[float], share: float) -> float:
    """The `share` quantile (0.99: p99), interpolated; the only value if there is one."""
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[round(share * 100) - 1]


def revocation_delays(app: App, sessions: int, partner: App | None = None) -> dict[str, float]:
    """Two instances of `app` on one database: A, `app` running, and B, `partner` if it runs
    (a copy of `app`), else started here with the same settings. For each of `sessions` logins
    on A: B accepts the token (so it is a token B has seen), A logs it out, then B is asked
    again without pause until it answers 401 REFUSALS_IN_A_ROW times in a row. The delay runs
    from A's answer to the logout (the revocation is committed) to the first 401 of that row,
    so it includes one request to B (its resolution). A token B still accepts after
    REVOCATION_TIMEOUT_S counts as missed, at that delay."""
    first, second = app, partner or replace(app, results={}, url="", leader=0)
    delays, logouts, missed = [], [], 0
    # gunicorn's workers each listen for themselves: B is asked on a new connection each time,
    # which any of its workers may accept, so that the figures cover them all.
    workers = httpx.Limits(max_keepalive_connections=0 if app.framework == "flask" else None)
    with ExitStack() as stack:
        if not second.url:
            stack.enter_context(started(second))
        a = stack.enter_context(httpx.Client(base_url=first.url, timeout=10))
        b = stack.enter_context(httpx.Client(base_url=second.url, timeout=10, limits=workers))
        credentials = {"username": "revoker", "password": PASSWORD}
        a.post("/auth/register", json=credentials).raise_for_status()
        for _ in range(sessions):
            headers = {"Authorization": f"Bearer {log_in(a, 'revoker')}"}
            if (status := b.get("/protected", headers=headers).status_code) != 200:
                raise RuntimeError(f"instance B refused a fresh token: {status}")
            begun = time.perf_counter()
            a.post("/auth/logout", headers=headers).raise_for_status()
            done = time.perf_counter()
            logouts.append((done - begun) * 1e3)
            refused, refused_since = 0, 0.0  # B's 401s in a row, and when the row began
            while refused < REFUSALS_IN_A_ROW:
                status = b.get("/protected", headers=headers).status_code
                waited = time.perf_counter() - done
                if status == 401:
                    refused, refused_since = refused + 1, refused_since if refused else waited
                    continue
                if status != 200:
                    raise RuntimeError(f"instance B answered {status} to a logged-out token")
                refused = 0
                if waited > REVOCATION_TIMEOUT_S:
                    delays.append(REVOCATION_TIMEOUT_S * 1e3)
                    missed += 1
                    break
            else:
                if refused_since > REVOCATION_TIMEOUT_S:  # its last acceptance was in time
                    missed += 1
                delays.append(min(refused_since, REVOCATION_TIMEOUT_S) * 1e3)
            if (status := a.get("/protected", headers=headers).status_code) != 401:
                raise RuntimeError(f"instance A answered {status} to the token it logged out")
            if missed >= REVOCATION_MAX_MISSES:
                break
    return {
        "sessions": len(delays),
        "p50_ms": statistics.median(delays),
        "p99_ms": percentile(delays, 0.99),
        "max_ms": max(delays),
        "missed": missed,
        "logout_ms": statistics.median(logouts),
    }


def copier_copy_seconds(work: Path, runs: int) -> float:
    """Median wall time of `copier copy --defaults` from the command line, from a clone of this
    repository as users copy it (a dirty work tree costs copier an extra commit per copy)."""
    template = work / "template"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(template)], check=True)
    times = []
    for run in range(runs):
        destination = work / f"copy-{run}"
        command = [str(PYTHON.parent / "copier"), "copy", "--defaults", "--quiet"]
        start = time.perf_counter()
        subprocess.run([*command, str(template), str(destination)], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_algorithms(project: Path) -> list[str]:
    """The project's algorithms that bare PyJWT implements too, in the project's order: the
    in-process table compares with PyJWT. (The service's "Ed25519" is EdDSA's signature under
    RFC 9864's name, which PyJWT does not know: the EdDSA row times that signature.)"""
    code = "from bench_service.core.keys import SUPPORTED_ALGORITHMS as a; print(','.join(a))"
    listed = subprocess.run(
        [str(PYTHON), "-c", code],
        env={**os.environ, "PYTHONPATH": str(project / "src")},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    known = jwt.algorithms.get_default_algorithms()
    return [algorithm for algorithm in listed.strip().split(",") if algorithm in known]


def in_process(project: Path, repeat: int, algorithms: list[str]) -> dict[str, Any]:
    """Run bench/inprocess.py against a rendered project; return its figures."""
    result = subprocess.run(
        [str(PYTHON), str(ROOT / "bench" / "inprocess.py"), str(repeat), ",".join(algorithms)],
        env={**os.environ, "PYTHONPATH": str(project / "src")},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"bench/inprocess.py failed:\n{result.stderr}")
    figures: dict[str, Any] = json.loads(result.stdout)
    return figures


@dataclass
class Run:
    """Everything one run measured, for the report."""

    apps: list[App]
    figures: dict[str, Any]  # bench/inprocess.py's, as JSON
    copy_seconds: float
    seconds: int
    rounds: int
    postgres: Postgres | str  # the server, or why there were no PostgreSQL rows
    delay_ms: float
    revocations: dict[str, dict[str, float]]  # by "framework, database"
    load_average: tuple[tuple[float, float, float], tuple[float, float, float]]
    flask_threads: str  # of our gunicorn.conf.py
    elapsed_s: float = 0.0

    def find(self, name: str, database: str) -> App | None:
        return next((a for a in self.apps if a.name == name and a.database == database), None)

    def reference(self, app: App) -> App | None:
        """The reference app of the same framework on the same database, if measured."""
        return next(
            (
                a
                for a in self.apps
                if not a.ours and a.framework == app.framework and a.database == app.database
            ),
            None,
        )

    def reference_of(self, app: App) -> App:
        """`reference` where there is always one: on SQLite, every run measures it."""
        reference = self.reference(app)
        if reference is None:
            raise RuntimeError(f"no reference app was measured for {app.label}")
        return reference

    @property
    def proxied(self) -> str:
        return f"{POSTGRES}, {self.delay_ms:g} ms away"


def p99_ratio(app: App, load: str) -> float:
    """/health p99 under `load` over /health p99 idle, measured in the same rounds."""
    return app.results[f"/health under {load}"]["p99_ms"] / app.results[IDLE]["p99_ms"]


def targets(run: Run) -> list[str]:
    """One row per target of the issues: what was measured, and whether it is met."""
    rows = []

    def row(target: str, measured: str, met: bool) -> None:
        rows.append(f"| {target} | {measured} | {'yes' if met else '**no**'} |")

    for app in run.apps:
        if not app.ours:
            continue
        protected = app.results["/protected"]["rps"]
        bare = protected / app.results["/health"]["rps"]
        row(f"{app.label}: /protected >= 0.8 x /health", f"{bare:.2f}", bare >= 0.8)
        if app.database == SQLITE:
            versus = protected / run.reference_of(app).results["/protected"]["rps"]
            row(f"{app.name}: /protected >= 1.3 x reference", f"{versus:.2f}", versus >= 1.3)
        else:
            local = run.find(app.name, SQLITE)
            if app.proxied and local is not None:
                ratio = app.results["/users/me"]["rps"] / local.results["/users/me"]["rps"]
                target = f"{app.label}: /users/me >= 0.5 x on SQLite"
                row(target, f"{ratio:.2f}", ratio >= 0.5)
        for load in ("logins", "/users/me"):
            if f"/health under {load}" in app.results:
                ratio = p99_ratio(app, load)
                shown = f"{ratio:.2f}"
                if load == "/users/me":
                    shown += (
                        " (the same clients on /protected, no database:"
                        f" {p99_ratio(app, '/protected'):.2f}; on /health:"
                        f" {p99_ratio(app, '/health'):.2f})"
                    )
                row(f"{app.label}: /health p99 under {load} < 2 x idle", shown, ratio < 2)
    for where, measured in run.revocations.items():
        p99, missed = measured["p99_ms"], measured["missed"]
        text = f"p99 {p99:.1f} ms ({measured['sessions']:.0f} logouts, {missed:.0f} missed)"
        met = p99 < 100 and missed == 0
        row(f"logout refused by a second instance within 100 ms p99 (ours {where})", text, met)
    tokens = run.figures["tokens"]
    if "RS256" in tokens:
        issue = tokens["RS256"]["issue_us"] / 1000
        row("RS256 token issue < 1 ms (2048-bit key)", f"{issue:.2f} ms", issue < 1)
    argon2 = run.figures["argon2"]
    owasp = (
        argon2["memory_kib"] >= 19456 and argon2["time_cost"] >= 2 and argon2["parallelism"] >= 1
    )
    parameters = f"{argon2['memory_kib']} KiB, t={argon2['time_cost']}, p={argon2['parallelism']}"
    row("Argon2id at or above OWASP's minimum (19456 KiB, t=2, p=1)", parameters, owasp)
    logins = [app.login_ms for app in run.apps if app.ours] + [run.figures["login_ms"]]
    row("login < 150 ms", f"{max(logins):.0f} ms at most", max(logins) < 150)
    copy_seconds = run.copy_seconds
    row("`copier copy` of the default variant < 1.5 s", f"{copy_seconds:.2f} s", copy_seconds < 1.5)
    return rows


def gthread_threads(apps_: list[App]) -> str:
    """The threads per worker of our Flask projects' gunicorn.conf.py (while they exist)."""
    for app in apps_:
        conf = app.cwd / "gunicorn.conf.py"
        if app.ours and conf.exists():
            found = re.search(r"^threads = (\d+)", conf.read_text(), re.M)
            if found:
                return f"{found[1]} threads each"
    return "its threads"


def report(run: Run) -> str:
    (start_1, start_5, _), (end_1, end_5, _) = run.load_average
    if isinstance(run.postgres, Postgres):
        where = make_url(run.postgres.url)
        databases = (
            f" PostgreSQL {run.postgres.version} at {where.host}:{where.port or 5432}, reached"
            f" directly and through scripts/faultproxy.py adding {run.delay_ms:g} ms per round"
            " trip (the proxy in a process of its own, its CPU counted apart); one schema per"
            " app."
        )
    else:
        databases = f" PostgreSQL rows left out: {run.postgres}."
    lines = [
        "# Benchmark results",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}: {os.cpu_count()} cores,"
        f" {platform.machine()}, Python {platform.python_version()}, {platform.platform()};"
        f" {run.elapsed_s / 60:.1f} minutes. Load average (1 min, 5 min): {start_1:.2f},"
        f" {start_5:.2f} before the run, {end_1:.2f}, {end_5:.2f} after it.",
        f"wrk: 1 thread, {CONNECTIONS} connections, {run.seconds} s per route, median of"
        f" {run.rounds} rounds that interleave the apps. FastAPI: uvicorn, 1 worker. Flask:"
        " gunicorn, 2 workers: ours with the project's gunicorn.conf.py (gthread,"
        f" {run.flask_threads}), the reference with gunicorn's defaults (sync, one"
        " request at a time per worker). SQLite databases unless the row"
        f" says otherwise;{databases} Ratios compare figures of this one run; absolute figures"
        " depend on the machine and what else it was doing.",
    ]
    cores = os.cpu_count() or 1
    if start_1 >= cores / 2:
        lines.append("")
        lines.append(
            f"**Other work was running when the run began** (load average {start_1:.2f} on"
            f" {cores} cores): every figure is disturbed, tails (p99) most; ratios of rows"
            " measured in the same rounds suffer least."
        )
    lines += [
        "",
        "## Requests over HTTP",
        "",
        "| app | route | req/s | p50 ms | p99 ms | server CPU us/req | vs /health | vs reference |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for app in run.apps:
        if app.database != SQLITE:
            continue
        bare = app.results["/health"]["rps"]
        for route in ROUTES:
            r = app.results[route]
            reference_rps = run.reference_of(app).results[route]["rps"]
            versus = f"{r['rps'] / reference_rps:.2f}" if app.ours else ""
            lines.append(
                f"| {app.name} | {route} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f}"
                f" | {r['cpu_us']:.0f} | {r['rps'] / bare:.2f} | {versus} |"
            )
    postgres_rows = [app for app in run.apps if app.database != SQLITE]
    if postgres_rows:
        lines += [
            "",
            "## Requests over HTTP, PostgreSQL",
            "",
            "Proxy CPU: what scripts/faultproxy.py spent per request (a real network costs the"
            " host nothing of it); about 0 means no database round trip.",
            "",
            "| app | database | route | req/s | p50 ms | p99 ms | server CPU us/req"
            " | proxy CPU us/req | vs /health | vs SQLite | vs reference |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
    for app in postgres_rows:
        bare = app.results["/health"]["rps"]
        local = run.find(app.name, SQLITE)
        for route in ROUTES:
            r = app.results[route]
            reference = run.reference(app)
            versus = ""
            if app.ours and reference is not None:
                versus = f"{r['rps'] / reference.results[route]['rps']:.2f}"
            proxy = f"{r['proxy_cpu_us']:.0f}" if "proxy_cpu_us" in r else ""
            sqlite = f"{r['rps'] / local.results[route]['rps']:.2f}" if local else ""
            lines.append(
                f"| {app.name} | {app.database} | {route} | {r['rps']:.0f} | {r['p50_ms']:.2f}"
                f" | {r['p99_ms']:.2f} | {r['cpu_us']:.0f} | {proxy} | {r['rps'] / bare:.2f}"
                f" | {sqlite} | {versus} |"
            )
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    lines += targets(run)
    paired = (
        f"/health: {CONNECTIONS} clients, idle and beside each load in turn, {run.rounds}"
        f" rounds of {run.seconds} s; medians. Idle is measured in the same rounds as the"
        " loads, so the ratios compare figures taken seconds apart."
    )
    lines += ["", "## FastAPI: /health while logins run (Argon2id in the thread pool)", ""]
    lines += [
        paired,
        "",
        f"| app | /health p99 idle ms | p99 under {LOAD_CONNECTIONS} concurrent logins ms | ratio |",
        "|---|---:|---:|---:|",
    ]
    for app in run.apps:
        if "/health under logins" in app.results:
            idle_p99 = app.results[IDLE]["p99_ms"]
            busy_p99 = app.results["/health under logins"]["p99_ms"]
            lines.append(
                f"| {app.label} | {idle_p99:.2f} | {busy_p99:.2f} | {p99_ratio(app, 'logins'):.2f} |"
            )
    loaded = [app for app in run.apps if "/health under /users/me" in app.results]
    if loaded:
        lines += [
            "",
            f"## /health while {LOAD_CONNECTIONS} clients read /users/me ({run.proxied})",
            "",
            f"{paired} Two controls: the same {LOAD_CONNECTIONS} clients on /protected, which"
            " reads no database (what the load's CPU alone costs /health), and on /health itself"
            f" (what any {LOAD_CONNECTIONS} more clients cost /health when the load generators,"
            " the proxy, PostgreSQL and the server share the machine's cores). If /users/me"
            " costs /health no more than the controls do, its database waits cost nothing.",
            "",
            "| app | load | /health p99 idle ms | p99 under the load ms | ratio | /health req/s"
            " under the load | load req/s meanwhile | load non-2xx |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
    for app in loaded:
        idle_p99 = app.results[IDLE]["p99_ms"]
        for route in ("/users/me", "/protected", "/health"):
            busy = app.results[f"/health under {route}"]
            load = route if route == "/users/me" else f"control: {route}"
            lines.append(
                f"| {app.name} | {load} | {idle_p99:.2f} | {busy['p99_ms']:.2f}"
                f" | {p99_ratio(app, route):.2f} | {busy['rps']:.0f}"
                f" | {busy['load_rps']:.0f} | {busy['load_failed']:.0f} |"
            )
    if run.revocations:
        lines += [
            "",
            "## Logout seen by a second instance (ours EdDSA, two instances on one schema)",
            "",
            "From instance A's answer to the logout to the first of instance B's"
            f" {REFUSALS_IN_A_ROW} 401s in a row for that token (B had accepted it before), B"
            " asked without pause; a token B still accepts after"
            f" {REVOCATION_TIMEOUT_S:g} s counts as missed, at {REVOCATION_TIMEOUT_S:g} s."
            " FastAPI: uvicorn, one process each. Flask: gunicorn, two workers each, each"
            " with its own listener; B is asked on a new connection each time, so any of its"
            " workers may answer, and one asked that still accepts the token starts the row"
            " again.",
            "",
            "| app | database | logouts | p50 ms | p99 ms | max ms | missed | logout on A ms (p50) |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
    for pair, m in run.revocations.items():
        framework, database = pair.split(", ", 1)
        lines.append(
            f"| ours {framework} | {database} | {m['sessions']:.0f} | {m['p50_ms']:.2f}"
            f" | {m['p99_ms']:.2f}"
            f" | {m['max_ms']:.2f} | {m['missed']:.0f} | {m['logout_ms']:.1f} |"
        )
    lines += [
        "",
        "## Login over HTTP (median of 5, one client)",
        "",
        "| app | login ms |",
        "|---|---:|",
    ]
    lines += [f"| {app.label} | {app.login_ms:.1f} |" for app in run.apps]
    figures = run.figures
    a = figures["argon2"]
    lines += [
        "",
        "## In process (the rendered core)",
        "",
        f"- Argon2id parameters (the defaults; settings ARGON2_*): memory {a['memory_kib']} KiB,"
        f" time cost {a['time_cost']}, parallelism {a['parallelism']}; one hash"
        f" {figures['argon2_hash_ms']:.1f} ms; `AuthService.login` {figures['login_ms']:.1f} ms.",
        f"- Revocation check (one indexed read, SQLite, 2,000 rows): {figures['revocation_check_us']:.1f} us;"
        f" a whole check of a token seen before (times + revocation): {figures['authenticate_us']:.1f} us.",
        "- Refreshes per second (one client, SQLite): "
        + ", ".join(f"{name} {rate:.0f}" for name, rate in figures["refreshes_per_second"].items())
        + ".",
        f"- `copier copy --defaults` from the command line: {run.copy_seconds:.2f} s (median).",
        "",
        "Tokens: RSA keys of 2048 bits unless the row says otherwise; claims as the service"
        " issues them; PyJWT given the same key objects and the same checks.",
        "",
        "| algorithm | issue us | PyJWT encode us | verify, first time us | verify, seen before us | PyJWT decode us |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for algorithm, t in figures["tokens"].items():
        lines.append(
            f"| {algorithm} | {t['issue_us']:.0f} | {t['pyjwt_encode_us']:.0f} | {t['verify_first_us']:.0f}"
            f" | {t['verify_again_us']:.1f} | {t['pyjwt_decode_us']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per route")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every app and route")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="1 s per route, one round, one framework; on PostgreSQL one app behind the proxy"
        " and a few logouts across instances",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument(
        "--postgres",
        default=DEFAULT_POSTGRES,
        help="the PostgreSQL server of the PostgreSQL rows (a SQLAlchemy URL; default"
        " TEMPLATE_TEST_POSTGRES or the local server); the rows are left out if it is away",
    )
    parser.add_argument(
        "--pg-delay-ms", type=float, default=1.0, help="added per round trip by the proxy"
    )
    parser.add_argument(
        "--sessions", type=int, default=None, help="logouts timed across instances (100; smoke 10)"
    )
    args = parser.parse_args(argv)
    seconds, rounds = (1, 1) if args.smoke else (args.seconds, args.rounds)
    sessions = args.sessions or (10 if args.smoke else 100)
    load_before = os.getloadavg()
    binary = ensure_wrk()
    postgres = find_postgres(args.postgres)
    if not isinstance(postgres, Postgres):
        step(f"PostgreSQL rows left out: {postgres}")
    revocations: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as directory, ExitStack() as stack:
        work = Path(directory)
        step("Rendering variants ...")
        if args.smoke:  # keeps the benchmark working in CI: a few seconds, one framework
            servers = apps(work, ("fastapi",), ("HS256",))
        else:
            servers = apps(work, ("fastapi", "flask"), ("HS256", "EdDSA"))
        proxy = None
        if isinstance(postgres, Postgres):
            stack.callback(postgres.drop_schemas)
            proxy = stack.enter_context(latency_proxy(postgres.target, args.pg_delay_ms))
            proxied = f"{POSTGRES}, {args.pg_delay_ms:g} ms away"
            locations: list[tuple[str, Proxy | None]]
            if args.smoke:  # one app, behind the proxy, and a few logouts across instances
                locations, chosen = [(proxied, proxy)], (lambda app: app.ours)
            else:  # the EdDSA variants and the references, at both distances
                locations = [(POSTGRES, None), (proxied, proxy)]
                chosen = lambda app: not app.ours or app.name.endswith("EdDSA")  # noqa: E731
            servers = postgres_apps(servers, postgres, locations, work, chosen)
        step("Preparing databases, starting the apps ...")
        with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
            list(pool.map(prepare_database, servers))
        with ExitStack() as running:
            # SQLite apps all up at once (only the one under load works); PostgreSQL apps are
            # started for their turns (see load_routes), but for the smoke run's one.
            kept = [app for app in servers if app.database == SQLITE or args.smoke]
            # The smoke run also starts its second instance for the logouts now, with the rest.
            partners = {
                app.label: replace(app, results={})
                for app in kept
                if args.smoke and app.ours and app.database != SQLITE
            }
            start_together(running, kept + list(partners.values()))
            for app in kept:
                sign_in(app)

            def last_turn(app: App) -> None:
                """/health under a load (logins: FastAPI; /users/me: behind the proxy); on
                PostgreSQL, logouts across instances."""
                if app.database == SQLITE:
                    if app.framework == "fastapi":
                        health_under_logins(app, binary, seconds, rounds, work)
                    return
                if app.proxied and not args.smoke:
                    health_under_reads(app, binary, seconds, rounds)
                if app.ours:
                    step(f"Logging out across two instances ({app.label}) ...")
                    partner = partners.get(app.label)
                    where = f"{app.framework}, {app.database}"
                    revocations[where] = revocation_delays(app, sessions, partner)

            step(f"Loading each route for {seconds} s, {rounds} rounds ...")
            load_routes(servers, binary, seconds, rounds, proxy, last_turn)
        stack.close()  # the schemas and the proxy: not needed any more
        step("Measuring in process ...")
        algorithms = ["HS256", "EdDSA"] if args.smoke else timed_algorithms(servers[0].cwd)
        figures = in_process(servers[0].cwd, 20 if args.smoke else 300, algorithms)
        step("Timing copier copy ...")
        copy_seconds = copier_copy_seconds(work, 1 if args.smoke else 5)
        flask_threads = gthread_threads(servers)
    run = Run(
        servers,
        figures,
        copy_seconds,
        seconds,
        rounds,
        postgres,
        args.pg_delay_ms,
        revocations,
        (load_before, os.getloadavg()),
        flask_threads,
        time.monotonic() - _STARTED,
    )
    text = report(run)
    print(text)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
