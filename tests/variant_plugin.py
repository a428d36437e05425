"""A pytest plugin for the variant matrix: xdist runs each variant's checks on one worker, in
an order that keeps both workers busy, and the run ends with a table of every variant."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from variants import variant_check, variant_of
from xdist.scheduler import LoadScopeScheduling

# A table at the end of the run: every variant, what was checked, the result, the time spent.
_CHECKS: dict[str, dict[str, list[Any]]] = {}
_WORKERS: dict[str, set[str]] = {}
_SHORT = {
    "test_no_template_syntax_is_left": "no-jinja",
    "test_ruff_finds_nothing_to_change": "ruff",
    "test_rendered_suite_passes": "own suite",
    "test_rendered_suite_passes_on_postgresql": "own suite on postgresql",
    "test_dependencies_are_exactly_what_src_imports": "dependencies",
}


#: Modules of single tests that take tens of seconds: they start first, so that no worker
#: is left finishing one alone at the end of the run.
LONG_MODULES = ("test_fresh_install.py", "test_update.py", "test_bench.py")


@pytest.hookimpl(trylast=True)  # after pytest has ordered the items by their fixtures
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the run for xdist: the long single tests, then the variants (those with the most
    checks first), then the rest. A variant's checks stay together and in their order."""
    checks = Counter(variant_of(item.nodeid) for item in items)

    def rank(item: pytest.Item) -> tuple[int, int, str]:
        variant = variant_of(item.nodeid)
        if item.path.name in LONG_MODULES:
            return (0, 0, "")
        if variant is not None:
            return (1, -checks[variant], variant)
        return (2, 0, "")

    items.sort(key=rank)  # stable: the order within a rank stays pytest's


class VariantScheduling(LoadScopeScheduling):
    """xdist's load-scope scheduling with each variant's tests as one unit of work: a worker
    renders the variant once and starts its live server once. Any other test is a unit alone.

    (`--dist loadgroup` would do this with `xdist_group` marks, but with pytest 9.2 and
    pytest-xdist 3.8 it silently stops grouping: pytest-xdist issue 1386.)"""

    def _split_scope(self, nodeid: str) -> str:
        return variant_of(nodeid) or nodeid


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> VariantScheduling | None:
    """Schedule `-n N` runs by variant, in the order of the collection."""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    config.option.loadscopereorder = False
    return VariantScheduling(config, log)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Record each variant's checks (on the controller too, under xdist)."""
    checked = variant_check(report.nodeid)
    if checked is None:
        return
    module = report.nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
    function = report.nodeid.split("::")[-1].split("[")[0]
    # Render checks by name; a suite of HTTP tests as one check, counted.
    name = _SHORT.get(function) or module.removeprefix("test_")
    check = _CHECKS.setdefault(checked, {}).setdefault(name, [True, 0.0, 0])
    check[0] = check[0] and not report.failed
    check[1] += report.duration  # set-up (rendering, server start) and tear-down count too
    check[2] += report.when == "call"
    worker = getattr(getattr(report, "node", None), "gateway", None)
    if worker is not None:  # under xdist, on the controller
        _WORKERS.setdefault(variant_of(checked) or checked, set()).add(worker.id)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the variant table, slowest first."""
    if not _CHECKS:
        return
    rows = []
    for variant, checks in _CHECKS.items():
        seconds = sum(check[1] for check in checks.values())
        passed = all(check[0] for check in checks.values())
        names = ", ".join(
            f"{name} x{count}" if count > 1 else name
            for name, (_, _, count) in sorted(checks.items())
        )
        rows.append((seconds, variant, names, "pass" if passed else "FAIL"))
    write = terminalreporter.write_line
    terminalreporter.section("variants, slowest first")
    write(f"{'variant':<36} {'result':<6} {'seconds':>8}  checks")
    for seconds, variant, names, result in sorted(rows, reverse=True):
        write(f"{variant:<36} {result:<6} {seconds:>8.1f}  {names}")
    split = sorted(variant for variant, workers in _WORKERS.items() if len(workers) > 1)
    if split:  # each was rendered, and its server started, once per worker
        write(f"Variants run on more than one worker: {', '.join(split)}", yellow=True)
