"""The template's own tooling is formatted, lint-clean and typed, like the code it renders."""

from __future__ import annotations

import subprocess
from pathlib import Path

from projects import BIN, ROOT
from variants import ALGORITHMS, FAMILIES, FRAMEWORKS, STRATEGIES, suite_variants, variant_of


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


def test_tooling_passes_mypy_strict(tmp_path: Path) -> None:
    """scripts/, tests/ and bench/, as this repository's pyproject.toml configures mypy
    (strict)."""
    result = subprocess.run(
        [BIN / "mypy", "--cache-dir", tmp_path / "mypy-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_scheduling_keeps_a_variants_checks_together() -> None:
    """A variant's checks in every module are one unit of work for xdist; other tests alone."""
    nodeids = [
        "tests/test_render.py::test_rendered_suite_passes[flask-ES384-stateless]",
        "tests/test_render.py::test_rendered_suite_passes_on_postgresql[flask-ES384-stateless-pg]",
        "tests/test_contract.py::test_register_validation[flask-ES384-stateless-body1]",
        "tests/test_live_sessions.py::test_replay_and_race[flask-ES384-stateless-postgresql]",
    ]
    assert {variant_of(nodeid) for nodeid in nodeids} == {"flask-ES384-stateless"}
    assert variant_of(nodeids[0].replace("flask", "fastapi")) == "fastapi-ES384-stateless"
    assert (
        variant_of("tests/test_render.py::test_only_the_chosen_framework_is_rendered[flask]")
        is None
    )


def test_the_suite_variants_cover_every_algorithm_and_every_family_with_every_strategy() -> None:
    """What README and `suite_variants` promise of the 19 own suites that stand for the 84."""
    chosen = [param.values[0] for param in suite_variants()]
    triples = {(a["framework"], a["jwt_algorithm"], a["refresh_strategy"]) for a in chosen}
    assert len(triples) == len(chosen) == 19
    assert {a for _, a, _ in triples} == set(ALGORITHMS)
    for family in FAMILIES:
        assert {s for _, a, s in triples if a in family} == set(STRATEGIES), family
    hmac = FAMILIES[0]
    for framework in FRAMEWORKS:
        assert (framework, "EdDSA", "rotating") in triples  # the default variant
        ran = {(a, s) for f, a, s in triples if f == framework}
        assert {s for a, s in ran if a in hmac} == set(STRATEGIES), framework
        assert {s for a, s in ran if a not in hmac} == set(STRATEGIES), framework
