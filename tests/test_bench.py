"""The benchmark keeps working: its smoke run (one framework, 1 s per route) prints the report."""

from __future__ import annotations

import re
import subprocess

from conftest import PYTHON, ROOT


def test_benchmark_smoke_run_writes_the_report(tmp_path) -> None:
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
        (who, route)
        for who in ("ours", "reference")
        for route in ("/health", "/protected", "/users/me")
    }
    assert all(int(rate) > 0 for _, _, rate in rows)
    for figure in ("/health p99 idle", "Argon2id parameters", "Revocation check", "copier copy"):
        assert figure in report
    assert re.search(r"^\| EdDSA \| \d+ \|", report, re.M)
