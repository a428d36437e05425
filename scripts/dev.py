"""Set up the template's tooling in .venv and run the demo or the test suite.

    python3 scripts/dev.py demo     render a project with the default answers and show it working
    python3 scripts/dev.py test     run the template's full test suite (extra args go to pytest)
    python3 scripts/dev.py bench    benchmark the rendered services (bench/run.py; --help)

Needs only Python 3.11+ and git; everything else is installed into .venv from pyproject.toml.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def ensure_environment() -> None:
    """Create .venv and install the `dev` dependency group, skipping work already done."""
    requirements = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    stamp = VENV / ".dev-requirements.sha256"
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    if not (BIN / "python").exists():
        print("Creating .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    print("Installing the template's development tools into .venv ...", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "-U", "pip"], check=True)
    subprocess.run([*pip, "install", *requirements], check=True)
    stamp.write_text(digest)


#: The browser the browser tests drive (Debian's package; Playwright's own download is not used).
CHROMIUM = "/usr/bin/chromium"
#: The connection pooler tests/test_pooler.py puts between a service and PostgreSQL.
PGBOUNCER = "/usr/sbin/pgbouncer"
#: Debian's packages the tests drive, by the file each one installs.
SYSTEM_PACKAGES = {CHROMIUM: "chromium", PGBOUNCER: "pgbouncer"}


def ensure_system_packages() -> None:
    """Install the Debian packages of SYSTEM_PACKAGES that are missing, when this machine can
    (root, apt-get). Elsewhere the tests that need them skip with the reason (and fail under
    CI)."""
    missing = [name for path, name in SYSTEM_PACKAGES.items() if not os.path.exists(path)]
    if not missing or shutil.which("apt-get") is None or os.geteuid() != 0:
        return
    print(f"Installing {', '.join(missing)} (Debian's packages) for the tests ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", *missing]
    result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0:  # stale package lists: read them again, once
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"Could not install {', '.join(missing)}; the tests that need them will say why.")
        print(result.stderr[-2000:])


def main(argv: list[str]) -> int:
    """Dispatch to the demo or the tests."""
    if not argv or argv[0] not in {"demo", "test", "bench"}:
        print(__doc__, file=sys.stderr)
        return 2
    ensure_environment()
    if argv[0] == "test":
        ensure_system_packages()
        # One xdist worker more than cores, unless the caller chose (`-n 0` runs serially):
        # live-server tests wait on their servers, and the extra worker fills those gaps
        # (measured on 2 cores: `-m matrix` 3:16-3:38 with 3 workers, 4:18 with 2).
        cores = os.cpu_count() or 1
        workers = [] if any(arg.startswith("-n") for arg in argv[1:]) else ["-n", str(cores + 1)]
        pytest = [str(BIN / "python"), "-m", "pytest", *workers, *argv[1:]]
        return subprocess.run(pytest, cwd=ROOT).returncode
    script = ROOT / ("scripts/demo.py" if argv[0] == "demo" else "bench/run.py")
    return subprocess.run([str(BIN / "python"), str(script), *argv[1:]]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
