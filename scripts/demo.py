"""The README's demo: render the default project, install it, start it, use it, stop it.

Run through `python3 scripts/dev.py demo`, which provides copier and httpx.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import httpx
import yaml
from liveserver import running_server

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo"
BIN = Path(sys.executable).parent


def show(response: httpx.Response) -> None:
    """Print one exchange the way a person reads it."""
    request = response.request
    print(f"\n> {request.method} {request.url.path}")
    if request.content:
        print(f"> {request.content.decode()}")
    print(f"< {response.status_code} {response.reason_phrase}")
    if "WWW-Authenticate" in response.headers:
        print(f"< WWW-Authenticate: {response.headers['WWW-Authenticate']}")
    if response.content:
        print(f"< {json.dumps(response.json())}")


def main() -> None:
    """Render, install, serve and exercise the default project."""
    shutil.rmtree(DEMO, ignore_errors=True)
    print(f"Rendering the template with the default answers into {DEMO} ...", flush=True)
    subprocess.run(
        [BIN / "copier", "copy", "--defaults", "--quiet", str(ROOT), str(DEMO)], check=True
    )
    answers = yaml.safe_load((DEMO / ".copier-answers.yml").read_text())
    print("Installing it into its own virtual environment (demo/.venv) ...", flush=True)
    venv.create(DEMO / ".venv", with_pip=True)
    python = DEMO / ".venv" / "bin" / "python"
    pip: list[str | Path] = [python, "-m", "pip", "--disable-pip-version-check", "-q", "install"]
    subprocess.run([*pip, "-e", str(DEMO)], check=True)
    framework, package = answers["framework"], answers["package_name"]
    print(f"Starting its {framework} production server ...", flush=True)
    with running_server(DEMO, framework, package, python) as url:
        print(f"Serving on {url}")
        credentials = {"username": "alice", "password": "correct horse battery"}
        with httpx.Client(base_url=url) as client:
            show(client.post("/auth/register", json=credentials))
            login = client.post("/auth/login", data={"grant_type": "password", **credentials})
            show(login)
            tokens = login.json()
            auth = {"Authorization": f"Bearer {tokens['access_token']}"}
            show(client.get("/users/me", headers=auth))
            show(client.get("/users/me"))
            if "refresh_token" in tokens:
                refreshed = client.post(
                    "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
                )
                show(refreshed)
                auth = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
                body = {"refresh_token": refreshed.json()["refresh_token"]}
                show(client.post("/auth/logout", headers=auth, json=body))
                show(client.get("/users/me", headers=auth))
    print("\nServer stopped. The project is in demo/; its README says what to do next.")


if __name__ == "__main__":
    main()
