"""Run rendered projects' test suites in forks of one process that has already imported their
third-party dependencies (FastAPI, Flask, SQLAlchemy, pydantic, PyJWT, cryptography, pytest).

Importing those costs about 2.5 s per suite; the template's matrix runs 78 suites. Each suite
still gets a process of its own, forked before anything of the project is imported, with the
project's working directory, environment and `sys.path`. What the fork shares is only modules
already imported from this environment; the rendered projects are also installed and tested in
fresh interpreters by tests/test_fresh_install.py and tests/test_update.py.

Protocol (one JSON object per line): the parent writes {"cwd", "env", "args", "output"}; the
runner forks, the child runs `pytest.main(args)` with stdout and stderr in the file `output`,
and the runner answers {"returncode": N}.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

PRELOAD = (
    "pytest",
    "_pytest.assertion.rewrite",
    "fastapi",
    "fastapi.security",
    "fastapi.testclient",
    "starlette.testclient",
    "flask",
    "flask.testing",
    "sqlalchemy",
    "sqlalchemy.orm",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql",
    "pydantic",
    "pydantic_settings",
    "jwt",
    "jwt.algorithms",
    "cryptography.hazmat.primitives.asymmetric.rsa",
    "cryptography.hazmat.primitives.asymmetric.ec",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "pwdlib",
    "argon2",
    "httpx",
)


def preload() -> None:
    for name in PRELOAD:
        # A framework this environment lacks: the suites that need it import it and fail.
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def run_child(request: dict[str, Any]) -> None:
    """In the forked child: become the project's test process, run pytest, exit with its code."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    paths = [path for path in request["env"].get("PYTHONPATH", "").split(os.pathsep) if path]
    sys.path[:0] = [request["cwd"], *paths]
    output = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(output, 1)
    os.dup2(output, 2)
    sys.argv = ["pytest", *request["args"]]
    import pytest

    code = pytest.main(request["args"])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code))


class SuiteRunner:
    """The parent's side: start the runner once, then run suites in it one at a time."""

    def __init__(self, python: Path) -> None:
        self._python = python
        self._process: subprocess.Popen[str] | None = None

    def run(
        self, cwd: Path, env: dict[str, str], args: list[str], timeout: float
    ) -> tuple[int, str]:
        """Run `pytest args` in `cwd` with exactly `env`; return its exit code and output."""
        requests, answers = _pipes(self._started())
        with tempfile.NamedTemporaryFile(suffix=".log") as output:
            request = {"cwd": str(cwd), "env": env, "args": args, "output": output.name}
            requests.write(json.dumps(request) + "\n")
            requests.flush()
            ready, _, _ = select.select([answers], [], [], timeout)
            answer = answers.readline() if ready else ""
            text = Path(output.name).read_text(errors="replace")
        if not answer:
            self.close()
            return -1, text + f"\n[suite runner: no result within {timeout} s]"
        return json.loads(answer)["returncode"], text

    def close(self) -> None:
        """Stop the runner and any suite it is running (they share its process group)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()
        for pipe in _pipes(self._process):
            pipe.close()
        self._process = None

    def _started(self) -> subprocess.Popen[str]:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [str(self._python), __file__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            if not _pipes(self._process)[1].readline():
                raise RuntimeError("the suite runner did not start")
        return self._process


def _pipes(process: subprocess.Popen[str]) -> tuple[IO[str], IO[str]]:
    """The runner's stdin and stdout (it is always started with both)."""
    if process.stdin is None or process.stdout is None:
        raise RuntimeError("the suite runner has no pipes")
    return process.stdin, process.stdout


def main() -> None:
    # Nothing of this folder may shadow a project's modules (a package named `demo`, say).
    here = Path(__file__).resolve().parent
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != here]
    preload()
    # Out of the collector's sight: its passes in each fork would otherwise walk (and copy)
    # every object imported here.
    gc.freeze()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                run_child(request)
            finally:
                os._exit(70)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
