"""The benchmark keeps working: its smoke run (one framework, 1 s per route) prints the report,
with one app on PostgreSQL behind the latency proxy and logouts across two instances when a
PostgreSQL server is there (CI has one)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import psycopg
from projects import PYTHON, ROOT
from servers import POSTGRES_ADMIN_URL

ROUTES = ("/health", "/protected", "/users/me")


def postgres_available() -> bool:
    """Whether the benchmark finds the PostgreSQL server the tests use (CI: it must)."""
    try:
        psycopg.connect(POSTGRES_ADMIN_URL.replace("+psycopg", ""), connect_timeout=3).close()
    except psycopg.OperationalError:
        assert not os.environ.get("CI"), f"CI needs PostgreSQL at {POSTGRES_ADMIN_URL}"
        return False
    return True


def test_benchmark_smoke_run_writes_the_report(tmp_path: Path) -> None:
    output = tmp_path / "results.md"
    result = subprocess.run(
        [PYTHON, ROOT / "bench" / "run.py", "--smoke", "--output", output],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = output.read_text()
    assert report in result.stdout
    rows = re.findall(r"^\| (ours|reference) fastapi[^|]*\| (/[\w/]+) \| (\d+) \|", report, re.M)
    assert {(who, route) for who, route, _ in rows} == {
        (who, route) for who in ("ours", "reference") for route in ROUTES
    }
    assert all(int(rate) > 0 for _, _, rate in rows)
    for figure in ("/health p99 idle", "Argon2id parameters", "Revocation check", "copier copy"):
        assert figure in report
    assert re.search(r"^\| EdDSA \| \d+ \|", report, re.M)

    if not postgres_available():
        assert "PostgreSQL rows left out" in report
        return
    # Every route served on PostgreSQL 1 ms away (wrk fails the run on any non-2xx answer).
    rows = re.findall(
        r"^\| ours fastapi \w+ \| PostgreSQL, 1 ms away \| (/[\w/]+) \| (\d+) \|", report, re.M
    )
    assert {route for route, _ in rows} == set(ROUTES)
    assert all(int(rate) > 0 for _, rate in rows)
    # Every logout on one instance refused by the other within the 2 s bound.
    revocation = re.search(
        r"^\| ours fastapi \| PostgreSQL, 1 ms away \| (\d+) \| [\d.]+ \| [\d.]+ \| [\d.]+"
        r" \| (\d+) \|",
        report,
        re.M,
    )
    assert revocation is not None, report
    assert (int(revocation[1]), int(revocation[2])) == (10, 0)
