"""The template's own tooling is formatted and lint-clean, like the code it renders."""

from __future__ import annotations

import subprocess

from conftest import BIN, ROOT


def test_ruff_clean() -> None:
    for command in (["format", "--check"], ["check"]):
        result = subprocess.run(
            [BIN / "ruff", *command, "--no-cache", "scripts", "tests", "bench"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
