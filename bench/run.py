"""Benchmark the rendered services against what users would otherwise write, in one run.

    python3 scripts/dev.py bench [--seconds N] [--rounds N] [--smoke] [--output FILE]

Renders four variants (FastAPI and Flask, each with HS256 and EdDSA), starts each under its
production server (uvicorn with one worker; gunicorn with two sync workers) beside the two
reference apps in bench/ on the same settings, and loads each route with wrk, in rounds that
interleave the apps (figures are medians over the rounds). Then measures /health under a login
load (FastAPI), and in process: token issue and verify per algorithm against bare PyJWT, the
revocation check, login and refresh; and `copier copy` of the default variant. Prints a
Markdown report with a table of the targets and writes it to bench/RESULTS.md (or --output).

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
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from copier import run_copy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from liveserver import server_process  # noqa: E402

PYTHON = Path(sys.executable)
PASSWORD = "correct horse battery"
ROUTES = ("/health", "/protected", "/users/me")
CONNECTIONS = 32


@dataclass
class App:
    """One server under test."""

    name: str
    framework: str
    app: str
    cwd: Path
    env: dict[str, str]
    ours: bool
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    login_ms: float = 0.0
    token: str = ""


def ensure_wrk() -> str:
    """Return wrk's path, installing Debian's package when it is missing and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("Installing wrk from Debian's packages ...", flush=True)
        quiet = {
            "stdout": subprocess.DEVNULL,
            "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        }
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, **quiet)
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update", "-q"], check=False, **quiet)
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, **quiet)
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
    """Our variants and the references, each with its own database."""
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


def wrk(binary: str, url: str, seconds: int, token: str | None) -> dict[str, float]:
    """Load `url` for `seconds`; return req/s, p50/p99 latency and the request count."""
    command = [binary, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}
    for percentile in ("50", "99"):
        value, unit = re.search(rf"\s{percentile}%\s+([\d.]+)(us|ms|s)", output).groups()
        figures[f"p{percentile}_ms"] = float(value) * _UNITS[unit]
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors or "Socket errors" in output:
        raise RuntimeError(f"{url}: wrk saw failed requests:\n{output}")
    figures["requests"] = requests
    return figures


def sign_in(url: str) -> tuple[str, float]:
    """Register a user, log in five times; return an access token and the median login time."""
    with httpx.Client(base_url=url, timeout=30) as client:
        credentials = {"username": "bench", "password": PASSWORD}
        client.post("/auth/register", json=credentials).raise_for_status()
        times, token = [], ""
        for _ in range(5):
            start = time.perf_counter()
            response = client.post("/auth/login", data={"grant_type": "password", **credentials})
            times.append((time.perf_counter() - start) * 1e3)
            response.raise_for_status()
            token = response.json()["access_token"]
        for route in ROUTES:
            response = client.get(route, headers={"Authorization": f"Bearer {token}"})
            if response.status_code != 200:
                raise RuntimeError(f"{url}{route}: {response.status_code} {response.text}")
    return token, statistics.median(times)


LOGIN_SCRIPT = """wrk.method = "POST"
wrk.body = "grant_type=password&username=bench&password=correct+horse+battery"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
"""


def load_routes(
    apps_: list[App], urls: dict[str, tuple[str, int]], binary: str, seconds: int, rounds: int
) -> None:
    """Every app's routes, in rounds that interleave the apps: slow drift of the machine's
    speed then spreads over all of them. Figures are the medians over the rounds."""
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    for round_ in range(rounds):
        for app in apps_:
            url, leader = urls[app.name]
            for route in ROUTES:
                before = group_cpu_seconds(leader)
                figures = wrk(binary, url + route, seconds, app.token)
                figures["cpu_us"] = (group_cpu_seconds(leader) - before) / figures["requests"] * 1e6
                runs.setdefault((app.name, route), []).append(figures)
        print(f"  round {round_ + 1} of {rounds} done", flush=True)
    for app in apps_:
        for route in ROUTES:
            measured = runs[(app.name, route)]
            app.results[route] = {
                name: statistics.median(run[name] for run in measured) for name in measured[0]
            }


def health_under_logins(app: App, url: str, binary: str, seconds: int, work: Path) -> None:
    """/health latency while four clients log in without pause (Argon2id at full cost)."""
    script = work / "login.lua"
    script.write_text(LOGIN_SCRIPT)
    logins = subprocess.Popen(
        [binary, "-t1", "-c4", f"-d{seconds + 1}s", "-s", str(script), url + "/auth/login"],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    app.results["/health under logins"] = wrk(binary, url + "/health", seconds, None)
    logins.wait()


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


def in_process(project: Path, repeat: int, algorithms: list[str]) -> dict:
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
    return json.loads(result.stdout)


def targets(
    apps_: list[App], references: dict[str, App], figures: dict, copy_seconds: float
) -> list[str]:
    """One row per target of the issue: what was measured, and whether it is met."""
    rows = []

    def row(target: str, measured: str, met: bool) -> None:
        rows.append(f"| {target} | {measured} | {'yes' if met else '**no**'} |")

    for app in apps_:
        if not app.ours:
            continue
        protected = app.results["/protected"]["rps"]
        bare = protected / app.results["/health"]["rps"]
        versus = protected / references[app.framework].results["/protected"]["rps"]
        row(f"{app.name}: /protected >= 0.8 x /health", f"{bare:.2f}", bare >= 0.8)
        row(f"{app.name}: /protected >= 1.3 x reference", f"{versus:.2f}", versus >= 1.3)
        if "/health under logins" in app.results:
            ratio = app.results["/health under logins"]["p99_ms"] / app.results["/health"]["p99_ms"]
            row(f"{app.name}: /health p99 under logins < 2 x idle", f"{ratio:.2f}", ratio < 2)
    tokens = figures["tokens"]
    if "RS256" in tokens:
        issue = tokens["RS256"]["issue_us"] / 1000
        row("RS256 token issue < 1 ms (2048-bit key)", f"{issue:.2f} ms", issue < 1)
    argon2 = figures["argon2"]
    owasp = (
        argon2["memory_kib"] >= 19456 and argon2["time_cost"] >= 2 and argon2["parallelism"] >= 1
    )
    parameters = f"{argon2['memory_kib']} KiB, t={argon2['time_cost']}, p={argon2['parallelism']}"
    row("Argon2id at or above OWASP's minimum (19456 KiB, t=2, p=1)", parameters, owasp)
    logins = [app.login_ms for app in apps_ if app.ours] + [figures["login_ms"]]
    row("login < 150 ms", f"{max(logins):.0f} ms at most", max(logins) < 150)
    row("`copier copy` of the default variant < 1.5 s", f"{copy_seconds:.2f} s", copy_seconds < 1.5)
    return rows


def report(apps_: list[App], figures: dict, copy_seconds: float, seconds: int, rounds: int) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}: {os.cpu_count()} cores,"
        f" {platform.machine()}, Python {platform.python_version()}, {platform.platform()}.",
        f"wrk: 1 thread, {CONNECTIONS} connections, {seconds} s per route, median of {rounds} rounds"
        " that interleave the apps. FastAPI: uvicorn, 1 worker;"
        " Flask: gunicorn, 2 sync workers. SQLite databases. Ratios compare figures of this one run;"
        " absolute figures depend on the machine and what else it was doing.",
        "",
        "## Requests over HTTP",
        "",
        "| app | route | req/s | p50 ms | p99 ms | server CPU us/req | vs /health | vs reference |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    references = {app.framework: app for app in apps_ if not app.ours}
    for app in apps_:
        bare = app.results["/health"]["rps"]
        for route in ROUTES:
            r = app.results[route]
            reference = references[app.framework].results[route]["rps"]
            versus = f"{r['rps'] / reference:.2f}" if app.ours else ""
            lines.append(
                f"| {app.name} | {route} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f}"
                f" | {r['cpu_us']:.0f} | {r['rps'] / bare:.2f} | {versus} |"
            )
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    lines += targets(apps_, references, figures, copy_seconds)
    lines += ["", "## FastAPI: /health while logins run (Argon2id in the thread pool)", ""]
    lines += [
        "| app | /health p99 idle ms | p99 under 4 concurrent logins ms | ratio |",
        "|---|---:|---:|---:|",
    ]
    for app in apps_:
        if "/health under logins" in app.results:
            idle, busy = (
                app.results["/health"]["p99_ms"],
                app.results["/health under logins"]["p99_ms"],
            )
            lines.append(f"| {app.name} | {idle:.2f} | {busy:.2f} | {busy / idle:.2f} |")
    lines += [
        "",
        "## Login over HTTP (median of 5, one client)",
        "",
        "| app | login ms |",
        "|---|---:|",
    ]
    lines += [f"| {app.name} | {app.login_ms:.1f} |" for app in apps_]
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
        f"- `copier copy --defaults` from the command line: {copy_seconds:.2f} s (median).",
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
    parser.add_argument("--smoke", action="store_true", help="1 s per route, few repetitions")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    seconds, rounds = (1, 1) if args.smoke else (args.seconds, args.rounds)
    binary = ensure_wrk()
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        print("Rendering variants ...", flush=True)
        if args.smoke:  # keeps the benchmark working in CI: a few seconds, one framework
            servers = apps(work, ("fastapi",), ("HS256",))
        else:
            servers = apps(work, ("fastapi", "flask"), ("HS256", "EdDSA"))
        with ExitStack() as stack:
            urls = {}
            for app in servers:  # all up at once; only the one under load does work
                running = stack.enter_context(
                    server_process(app.cwd, app.framework, "", PYTHON, app.env, app=app.app)
                )
                urls[app.name] = (running.url, running.process.pid)
                app.token, app.login_ms = sign_in(running.url)
            print(f"Loading each route for {seconds} s, {rounds} rounds ...", flush=True)
            load_routes(servers, urls, binary, seconds, rounds)
            for app in servers:
                if app.framework == "fastapi":
                    health_under_logins(app, urls[app.name][0], binary, seconds, work)
        print("Measuring in process ...", flush=True)
        algorithms = ["HS256", "EdDSA"] if args.smoke else []
        figures = in_process(servers[0].cwd, 20 if args.smoke else 300, algorithms)
        copy_seconds = copier_copy_seconds(work, 1 if args.smoke else 5)
    text = report(servers, figures, copy_seconds, seconds, rounds)
    print(text)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
