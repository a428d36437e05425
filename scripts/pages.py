"""A tiny static page server on loopback, for browser tests: fixed HTML pages by path.

    with serve_pages({"/": "<!doctype html>..."}) as port:
        page.goto(f"http://127.0.0.1:{port}/")  # or http://localhost:{port}/, another site

Every page is answered with `Cache-Control: no-store`; any other path is a 404. One thread
serves the requests; the server is shut down and its socket closed on the way out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from liveserver import in_thread


@contextmanager
def serve_pages(pages: Mapping[str, str], host: str = "127.0.0.1") -> Iterator[int]:
    """Serve `pages` (path -> HTML) on a free port of `host` (loopback only); yield the port."""
    if host not in ("127.0.0.1", "::1"):
        raise ValueError(f"loopback only, not {host!r}")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            html = pages.get(urlsplit(self.path).path)
            body = (html or "not found").encode()
            self.send_response(200 if html is not None else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    with in_thread(server) as port:
        yield port
