"""Schemathesis against live servers: every check, against the OpenAPI description each server
serves at /openapi.json, for each framework and each variant whose description differs: the
default (EdDSA, rotating refresh tokens) has every route; HS256 without refresh has no
/auth/refresh, no JWK Set and a token endpoint with one grant.

Each variant's server starts once for this module, in development (so /openapi.json is served
and the password-reset routes exist, mail going to the log), with cheap Argon2 and throttling
far above what one fuzzer sends. Each test is one `st run` (both of a variant start together
when its server is up) with a fixed seed, bounded examples and the examples, coverage and
fuzzing phases (the description has no links, so there is no stateful phase to run):

* without a token: every operation of the default variant (the secured ones must answer their
  documented 401), and in the variant that differs, the operations its description changes;
* with a real bearer token: the secured operations, in every variant (the algorithm and the
  refresh strategy change the token and what a new login answers; in the variant that
  differs, only the fuzzing phase: its descriptions of them are the default's, and so would
  be the coverage phase's cases). `GET /users/me` and
  `PUT /users/me/email` share one user's token; the operations that end the token's session
  or its user (`/auth/logout`, `/auth/logout-all`, `/auth/password`, `DELETE /users/me`) get a
  user of their own for every request, so every example reaches the authenticated code instead
  of a 401 after the first success. Every other valid body sends that user's real password
  where one is asked for (and every fourth a new password the policy takes), so the successes
  (a changed address, a new password, a deleted account) are fuzzed too, not only the 403 of
  a wrong password; a run where a secured operation never succeeded fails. Schemathesis's
  ignored_auth check knows API keys and HTTP schemes, not OAuth2's: `only_a_valid_token_gets_in`
  makes it here (the request again without the token, and with a forged signature).

A failure names the check and the request (a curl command line). This module is also the
hooks module of those runs (`SCHEMATHESIS_HOOKS`): in the `st` process `FUZZ_BASE_URL` is set,
and `register_hooks` adds the checks and the auth provider below.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from liveserver import RunningServer, server_process
from projects import BIN, PYTHON, ROOT, Render
from servers import TEST_SERVER_SETTINGS, server_env
from variants import FRAMEWORKS, variant_id

if TYPE_CHECKING:
    from schemathesis import AuthContext, Case, CheckContext, Response

#: The seed of every run, so that a failure comes back on the next run.
SEED = 20240611
#: Examples per operation in the fuzzing phase (the coverage phase's deterministic cases come on
#: top): enough to find what the description gets wrong, few enough for CI on two cores.
MAX_EXAMPLES = 5
PASSWORD = "correct horse battery"

#: Each framework's default first (its description has every route), then the one that differs.
VARIANTS = [
    {"framework": framework, "jwt_algorithm": algorithm, "refresh_strategy": strategy}
    for algorithm, strategy in (("EdDSA", "rotating"), ("HS256", "none"))
    for framework in FRAMEWORKS
]

#: Secured operations that end the bearer token's session or its user: a user per request.
SESSION_ENDING = frozenset(
    {"POST /auth/logout", "POST /auth/logout-all", "POST /auth/password", "DELETE /users/me"}
)
#: The secured operations, by operationId: two that keep the session, and the four above.
SECURED = (
    "get_users_me",
    "put_users_me_email",
    "post_auth_logout",
    "post_auth_logout_all",
    "post_auth_password",
    "delete_users_me",
)

#: Refusals of schema-valid input for what a JSON Schema cannot say: an unknown user, password
#: or token (OAuth2's invalid_grant at the token endpoint), a password the policy finds easy to
#: guess, a reset token that was never issued. (operation, status): the codes allowed.
VALID_INPUT_REFUSALS: dict[tuple[str, int], frozenset[str]] = {
    ("POST /auth/login", 400): frozenset({"invalid_grant"}),
    ("POST /auth/refresh", 400): frozenset({"invalid_grant"}),
    ("POST /auth/register", 422): frozenset({"weak_password"}),
    ("POST /auth/password", 422): frozenset({"weak_password"}),
    ("POST /auth/password-reset/confirm", 400): frozenset({"invalid_reset_token"}),
    ("POST /auth/password-reset/confirm", 422): frozenset({"weak_password"}),
}
POSITIVE_DATA_ACCEPTANCE = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]


# -- The hooks, in the `st` process ---------------------------------------------------------


def register_hooks(base_url: str, authenticated: bool) -> None:
    """Register the checks (both runs) and the auth provider (the authenticated run)."""
    import schemathesis
    from schemathesis.core.parameters import ParameterLocation

    @schemathesis.check
    def valid_input_refused_only_for_what_a_schema_cannot_say(
        ctx: CheckContext, response: Response, case: Case[Any]
    ) -> None:
        """Schema-valid input refused with 400 or 422 is refused for a reason no schema can
        express (`VALID_INPUT_REFUSALS`); positive_data_acceptance lets those statuses through
        on these operations only, and this check holds them to their reason."""
        if case.meta is None or not case.meta.generation.mode.is_positive:
            return
        allowed = VALID_INPUT_REFUSALS.get((case.operation.label, response.status_code))
        if allowed is None:
            return
        body = response.json()
        reason = body.get("error") or body.get("code")  # OAuth2's `error` at the token endpoint
        if reason not in allowed:
            raise AssertionError(
                f"Schema-valid input refused with {response.status_code} {reason!r}; only "
                f"{sorted(allowed)} may refuse valid input here: the description is looser than "
                f"the service (or the service refuses what it should accept): {body}"
            )

    @schemathesis.check
    def a_refused_logout_body_is_reported(
        ctx: CheckContext, response: Response, case: Case[Any]
    ) -> None:
        """Logout ends the session whatever its body says, and reports a body it cannot use in
        a 200 (`LogoutReport`): it never refuses one, so negative_data_rejection is off for
        it and this check holds an invalid body to that report."""
        if case.operation.label != "POST /auth/logout" or case.meta is None:
            return
        if case.meta.is_negative_at(ParameterLocation.BODY) and 200 <= response.status_code < 300:
            report = response.json() if response.status_code == 200 else {}
            if not report.get("refresh_token_error", {}).get("code"):
                raise AssertionError(
                    f"An invalid logout body was answered {response.status_code} without "
                    f"`refresh_token_error` saying why it was not used: {response.text[:200]}"
                )

    if not authenticated:
        return

    @schemathesis.check
    class EverySecuredOperationSucceeds:
        """Each secured operation answered 2xx at least once: the token worked, and so did the
        real password where one is asked for (else the run fuzzed only refusals)."""

        def __init__(self) -> None:
            self.tested: set[str] = set()
            self.succeeded: set[str] = set()

        def after_response(self, ctx: CheckContext, response: Response, case: Case[Any]) -> None:
            if case.method.upper() != case.operation.method.upper():
                return  # the coverage phase's other methods
            self.tested.add(case.operation.label)
            if 200 <= response.status_code < 300:
                self.succeeded.add(case.operation.label)

        def after_run(self, ctx: CheckContext) -> None:
            never = sorted(self.tested - self.succeeded)
            if never:
                raise AssertionError(f"never answered 2xx with a real token: {', '.join(never)}")

    client = httpx.Client(base_url=base_url, timeout=30)
    lock = threading.Lock()
    shared: dict[str, str] = {}
    turns: dict[str, itertools.count[int]] = {}
    probed: set[str] = set()

    @schemathesis.check
    def only_a_valid_token_gets_in(ctx: CheckContext, response: Response, case: Case[Any]) -> None:
        """What ignored_auth checks for the schemes it knows (not OAuth2's, this one): the first
        time a secured operation succeeds, the same request without the token, and with the
        token's signature forged, is answered 401 with a Bearer challenge."""
        if case.method.upper() != case.operation.method.upper():
            return  # the coverage phase's other methods (OPTIONS answers 200 with Allow)
        if not 200 <= response.status_code < 300:
            return
        with lock:
            if case.operation.label in probed:
                return
            probed.add(case.operation.label)
        token = case.headers["Authorization"].removeprefix("Bearer ")
        signed, _, signature = token.rpartition(".")
        for authorization in (None, f"Bearer {signed}.{'A' * len(signature)}"):
            headers = case.headers.copy()
            headers.pop("Authorization")
            if authorization is not None:
                headers["Authorization"] = authorization
            answer = case.derive(headers=headers).call()
            challenge = answer.headers.get("www-authenticate", [""])[0]
            if answer.status_code != 401 or not challenge.startswith("Bearer"):
                sent = "no token" if authorization is None else f"`{authorization}`"
                raise AssertionError(
                    f"{case.operation.label} with {sent} answered {answer.status_code} "
                    f"(WWW-Authenticate: {challenge!r}), not 401 with a Bearer challenge, after "
                    f"it succeeded with the real token: {answer.text[:200]}"
                )

    def sign_up() -> str:
        username = f"fuzz-{uuid.uuid4().hex[:16]}"
        credentials = {"username": username, "password": PASSWORD}
        registered = client.post("/auth/register", json=credentials)
        assert registered.status_code == 201, registered.text
        login = client.post("/auth/login", data={"grant_type": "password", **credentials})
        assert login.status_code == 200, login.text
        token: str = login.json()["access_token"]
        return token

    @schemathesis.auth(refresh_interval=None)
    class FreshUserPerSessionEndingRequest:
        """A real user's bearer token: one user for the run, or a new one per request for the
        operations that end the session or the user."""

        def get(self, case: Case[Any], context: AuthContext) -> str:
            if case.operation.label in SESSION_ENDING:
                return sign_up()
            with lock:
                if "token" not in shared:
                    shared["token"] = sign_up()
                return shared["token"]

        def set(self, case: Case[Any], token: str, context: AuthContext) -> None:
            case.headers["Authorization"] = f"Bearer {token}"
            meta = case.meta
            valid = (
                meta is not None
                and meta.generation.mode.is_positive
                and not meta.is_negative_at(ParameterLocation.BODY)
            )
            if not (valid and isinstance(case.body, dict)):
                return
            with lock:  # the n-th valid body of this operation (one worker: the same each run)
                turn = next(turns.setdefault(case.operation.label, itertools.count()))
            if turn % 2:
                return  # the generated password: wrong, a 403
            body = dict(case.body)
            for name in ("password", "current_password"):
                if isinstance(body.get(name), str):
                    body[name] = PASSWORD
            if turn % 4 == 0 and isinstance(body.get("new_password"), str):
                body["new_password"] = f"{uuid.uuid4().hex} {PASSWORD}"  # one the policy takes
            case.body = body


if "FUZZ_BASE_URL" in os.environ:
    register_hooks(os.environ["FUZZ_BASE_URL"], os.environ.get("FUZZ_AUTHENTICATED") == "1")


# -- The tests, in pytest --------------------------------------------------------------------


#: The description each framework's default variant serves (it has every route), kept when its
#: server starts: the variant that differs fuzzes what its description changes.
FULL_DESCRIPTIONS: dict[str, dict[str, Any]] = {}


def operations_of(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every operation of a description, by operationId."""
    return {
        operation["operationId"]: operation
        for item in document["paths"].values()
        for operation in item.values()
    }


@dataclass(frozen=True)
class FuzzTarget:
    """A variant's running server and the description it serves."""

    server: RunningServer
    answers: dict[str, Any]
    document: dict[str, Any]

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def framework(self) -> str:
        framework: str = self.answers["framework"]
        return framework

    @property
    def refresh(self) -> bool:
        strategy: str = self.answers["refresh_strategy"]
        return strategy != "none"

    def operations(self) -> dict[str, dict[str, Any]]:
        return operations_of(self.document)

    def changed_operations(self) -> list[str]:
        """The operations whose description differs from the default variant's, or all of them
        (the default variant itself, or when its description was not fetched in this run)."""
        full = FULL_DESCRIPTIONS.get(self.framework)
        if (
            full is None
            or full == self.document
            or full["components"] != self.document["components"]
        ):
            return list(self.operations())
        before = operations_of(full)
        return [
            name for name, operation in self.operations().items() if before.get(name) != operation
        ]


@dataclass(frozen=True)
class FuzzRun:
    """One `st run`, started in the background: the two runs of a variant go at once, so that
    they use both cores (each `st` is one process, busy one core at a time)."""

    process: subprocess.Popen[bytes]
    log: Path
    operations: tuple[str, ...]

    def report(self, timeout: float = 600) -> tuple[int, str]:
        """Wait for the run; return its exit status and what it printed."""
        try:
            status = self.process.wait(timeout=timeout)
        finally:
            self.stop()
        return status, self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def config_toml(target: FuzzTarget, authenticated: bool) -> str:
    """The run's schemathesis.toml: which warnings fail it, per-operation check settings, and
    no coverage phase, in the variant that differs, for the operations its description leaves
    as the default's: that phase derives its cases from the description alone, so they are
    those of the default's run (the fuzzing phase still sends its examples to this server)."""
    fail_on = ["rate_limited", "unsupported_regex", "unresolvable_reference"]
    if authenticated:
        fail_on.append("missing_auth")  # the token did not work
    # Every check (the built-in ones and those registered above): what `--checks all` turns
    # on, said here so that an operation's section below can still turn one off.
    lines = ["[checks]\nenabled = true\n"]
    lines.append(f"[warnings]\nfail-on = {fail_on!r}\n".replace("'", '"'))
    widened: dict[str, list[str]] = {}
    for label, status in VALID_INPUT_REFUSALS:
        widened.setdefault(label.split(" ", 1)[1], []).append(str(status))
    if not target.refresh:
        widened.pop("/auth/refresh")
    for path, statuses in widened.items():
        expected = [*POSITIVE_DATA_ACCEPTANCE, *statuses]
        lines.append(
            f'[[operations]]\ninclude-path = "{path}"\n'
            f"checks.positive_data_acceptance.expected-statuses = {expected!r}\n".replace("'", '"')
        )
    # Logout ends the session even when it cannot use the body, and answers 200 with a report
    # of why (a_refused_logout_body_is_reported): an invalid body is never refused there.
    lines.append(
        '[[operations]]\ninclude-path = "/auth/logout"\n'
        "checks.negative_data_rejection.enabled = false\n"
    )
    unchanged = sorted(set(target.operations()) - set(target.changed_operations()))
    if unchanged:
        lines.append(
            f"[[operations]]\ninclude-operation-id = {unchanged!r}\n"
            "phases.coverage.enabled = false\n".replace("'", '"')
        )
    return "\n".join(lines)


def start_fuzzing(
    target: FuzzTarget, directory: Path, authenticated: bool, operations: list[str]
) -> FuzzRun:
    """Start `st run` against the target's `operations`, its report going to a file."""
    directory.mkdir()
    config = directory / "schemathesis.toml"
    config.write_text(config_toml(target, authenticated))
    command = [
        str(BIN / "st"),
        "--config-file",
        str(config),
        "run",
        f"{target.url}/openapi.json",
        f"--seed={SEED}",
        f"--max-examples={MAX_EXAMPLES}",
        "--phases=examples,coverage,fuzzing",
        "--workers=1",
        "--generation-database=none",
        "--suppress-health-check=too_slow",  # the only one that depends on the machine's load
        "--request-timeout=30",
        "--output-sanitize=false",  # throwaway users on loopback: show the real requests
        "--no-color",
        *(f"--include-operation-id={operation}" for operation in operations),
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": Path(__file__).stem,  # imported from PYTHONPATH
        "FUZZ_BASE_URL": target.url,
        "FUZZ_AUTHENTICATED": "1" if authenticated else "0",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(ROOT / "scripts")]),
    }
    log = directory / "report.txt"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=directory, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    return FuzzRun(process, log, tuple(operations))


@dataclass(frozen=True)
class Fuzzed:
    """A variant's server and its two runs."""

    target: FuzzTarget
    without_token: FuzzRun
    with_token: FuzzRun


@pytest.fixture(scope="module", params=VARIANTS, ids=[variant_id(variant) for variant in VARIANTS])
def fuzzed(
    request: pytest.FixtureRequest, render: Render, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fuzzed]:
    """The variant's production server (uvicorn or gunicorn) on SQLite, in development, and
    both runs against it, started together."""
    project = render(**request.param)
    state = tmp_path_factory.mktemp("fuzz")
    env = server_env(
        project,
        state,
        **TEST_SERVER_SETTINGS,
        # One user takes every wrong password of the run with a token: never throttle it.
        THROTTLE_ACCOUNT_FREE_FAILURES="1000000",
    )
    with server_process(
        project.path, project.framework, project.package, PYTHON, env=env
    ) as server:
        document = httpx.get(f"{server.url}/openapi.json", timeout=30).raise_for_status().json()
        if request.param == VARIANTS[FRAMEWORKS.index(project.framework)]:
            FULL_DESCRIPTIONS[project.framework] = document
        target = FuzzTarget(server, project.answers, document)
        runs = [
            start_fuzzing(target, state / "without-token", False, target.changed_operations()),
            start_fuzzing(target, state / "with-token", True, list(SECURED)),
        ]
        try:
            yield Fuzzed(target, *runs)
        finally:
            for run in runs:
                run.stop()


def failures_of(output: str) -> str:
    """The report's failures and summary, with long lines (bodies of 16 KiB) cut."""
    start = output.find("= FAILURES =")
    section = output[output.rfind("\n", 0, start) + 1 :] if start >= 0 else output[-6000:]
    return "\n".join(
        line if len(line) < 600 else line[:600] + " [...]" for line in section.split("\n")
    )


def assert_clean(fuzzed: Fuzzed, run: FuzzRun) -> None:
    """The run found nothing and tested every operation it was given; the server lived."""
    status, output = run.report()
    assert status == 0, f"schemathesis found failures:\n{failures_of(output)}"
    assert re.search(rf"Tested: +{len(run.operations)}\b", output), output[-3000:]
    assert fuzzed.target.server.process.poll() is None, fuzzed.target.server.output()


def test_without_a_token(fuzzed: Fuzzed) -> None:
    """Every operation (in the variant that differs, every operation its description changes),
    no token: no server error, no undocumented status, no schema violation, no invalid input
    accepted, and the secured operations answer their documented 401."""
    assert fuzzed.without_token.operations, "no operation differs from the default variant's"
    assert_clean(fuzzed, fuzzed.without_token)


def test_with_a_real_bearer_token(fuzzed: Fuzzed) -> None:
    """The secured operations with a real user's token (one per request where the request
    ends the session or the user), in every variant: the algorithm and the refresh strategy
    change what the token is and what logout ends."""
    assert set(SECURED) <= set(fuzzed.target.operations())
    assert_clean(fuzzed, fuzzed.with_token)
