"""The answers that change a rendered project's code, and the variants the tests check."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import pytest
from frameworks import FRAMEWORKS

__all__ = ["ALGORITHMS", "FAMILY_REPRESENTATIVES", "FRAMEWORKS", "STRATEGIES"]

#: The signing algorithms by family (the first of each is its representative).
FAMILIES = (
    ("HS256", "HS384", "HS512"),
    ("RS256", "RS384", "RS512"),
    ("PS256", "PS384", "PS512"),
    ("ES256", "ES384", "ES512"),
    ("EdDSA", "Ed25519"),
)
ALGORITHMS = tuple(algorithm for family in FAMILIES for algorithm in family)
#: One algorithm per family, for the checks that start real servers.
FAMILY_REPRESENTATIVES = tuple(family[0] for family in FAMILIES)
STRATEGIES = ("rotating", "stateless", "none")

_VARIANT = re.compile(
    rf"(?P<variant>({'|'.join(FRAMEWORKS)})-[A-Za-z0-9]+-({'|'.join(STRATEGIES)}))"
    r"(-sqlite|-postgresql|-pg)?"
)


def variant_id(answers: dict[str, Any]) -> str:
    """Name a variant by the answers that change code: `fastapi-HS256-rotating`."""
    strategy = answers.get("refresh_strategy", "rotating")
    return f"{answers['framework']}-{answers['jwt_algorithm']}-{strategy}"


def variant_of(nodeid: str) -> str | None:
    """The variant a test checks (`flask-ES384-stateless`), if it checks one."""
    match = _VARIANT.search(nodeid)
    return None if match is None else match.group("variant")


def variant_check(nodeid: str) -> str | None:
    """The variant and database a test checks (`flask-ES384-stateless-pg`), if any."""
    match = _VARIANT.search(nodeid)
    return None if match is None else match.group(0)


def variants(
    algorithms: tuple[str, ...] = ALGORITHMS, strategies: tuple[str, ...] = ("rotating",)
) -> list[Any]:
    """Every framework with every algorithm and strategy given, as params named by variant."""
    return params((f, a, s) for f in FRAMEWORKS for a in algorithms for s in strategies)


def params(combos: Iterable[tuple[str, str, str]]) -> list[Any]:
    """(framework, algorithm, strategy) triples as answers, params named by variant."""
    answers = ({"framework": f, "jwt_algorithm": a, "refresh_strategy": s} for f, a, s in combos)
    return [pytest.param(combo, id=variant_id(combo)) for combo in answers]


def matrix() -> list[Any]:
    """Every combination of the answers that change code: framework x algorithm x strategy."""
    return variants(ALGORITHMS, STRATEGIES)


def suite_variants() -> list[Any]:
    """The variants whose own suites run, 19 of the 84: every family with every strategy, each
    on one framework (the frameworks alternate; the algorithms of a family take turns, so
    every algorithm runs); on each framework, every strategy with an HMAC algorithm and with
    a key pair; and the default variant on each framework. The core is the same file on both
    frameworks (tests/test_render.py), and the web layers never look at the algorithm, only at
    its kind (a key pair publishes a JWK Set): a suite of the same algorithm on the other
    framework would run the same core code, and web code with values already exercised. The
    other variants differ from these in literals only (tests/test_types.py keeps that true).
    `--every-suite` runs all 84."""
    chosen = set()
    for index, family in enumerate(FAMILIES):
        for turn, strategy in enumerate(STRATEGIES):
            framework = FRAMEWORKS[(index + turn) % len(FRAMEWORKS)]
            chosen.add((framework, family[turn % len(family)], strategy))
    hmac = FAMILIES[0]
    for framework in FRAMEWORKS:
        chosen.add((framework, "EdDSA", "rotating"))  # the default answers
        for turn, strategy in enumerate(STRATEGIES):
            for kind in (hmac, ALGORITHMS[len(hmac) :]):
                if not any(f == framework and a in kind and s == strategy for f, a, s in chosen):
                    chosen.add((framework, kind[(turn + 1) % len(kind)], strategy))
    return params(sorted(chosen, key=lambda c: (c[0], ALGORITHMS.index(c[1]), c[2])))
