"""What the template's tooling knows about each framework, in one table.

A third framework is a new directory under `template/` (its `web/` and entry module) and a row
here; the tests, the live servers, the benchmark and the demo read these facts from nowhere
else. The rendered projects name the same facts once, as computed variables in copier.yml.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Framework:
    """One framework the template renders, and how its production server is started."""

    name: str  # the `framework` answer, and the distribution the project depends on
    entry: str  # the module under the package that holds `app`
    server: str  # the production server, run as `python -m <server>`
    bind: tuple[str, ...]  # the server's options for a loopback port ({port})
    options: tuple[str, ...] = ()  # the rendered README's production options
    reference_options: tuple[str, ...] = ()  # for an app that is not a rendered project

    def app(self, package: str) -> str:
        """The server's app argument for a rendered package: `orders.asgi:app`."""
        return f"{package}.{self.entry}:app"

    def command(self, port: int, app: str, *extra: str) -> list[str]:
        """`python -m` arguments that serve `app` on the loopback `port`, with `extra` options."""
        bind = (part.format(port=port) for part in self.bind)
        return [self.server, *bind, *self.options, *extra, app]


#: The options of the rendered README's production uvicorn command: h11 bounds request heads
#: (16 KiB), a bounded number of connections, short keep-alive; the client's address is the
#: socket's (the service reads `X-Forwarded-For` itself, from `TRUSTED_PROXIES` only).
UVICORN_OPTIONS = (
    *("--http", "h11", "--h11-max-incomplete-event-size", "16384"),
    *("--limit-concurrency", "1000", "--timeout-keep-alive", "5"),
    *("--no-server-header", "--no-proxy-headers"),
)

TABLE = (
    Framework(
        "fastapi",
        entry="asgi",
        server="uvicorn",
        bind=("--host", "127.0.0.1", "--port", "{port}", "--no-access-log"),
        options=UVICORN_OPTIONS,
    ),
    # gunicorn reads the rendered project's gunicorn.conf.py (gthread workers, one per core);
    # an app without one gets two sync workers.
    Framework(
        "flask",
        entry="wsgi",
        server="gunicorn",
        bind=("--bind", "127.0.0.1:{port}"),
        reference_options=("--workers", "2"),
    ),
)

#: The `framework` answers, in the table's order.
FRAMEWORKS = tuple(framework.name for framework in TABLE)


def framework(name: str) -> Framework:
    """The table's row for the `framework` answer `name`."""
    return next(row for row in TABLE if row.name == name)
