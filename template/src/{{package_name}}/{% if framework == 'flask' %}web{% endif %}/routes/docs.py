"""The API's description (`/openapi.json`, built by the core as for FastAPI) and interactive
docs (`/docs`: Swagger UI, its files served from this service, not a CDN). Registered only
when `API_DOCS` (or development) says so."""

from __future__ import annotations

import html
import json
from pathlib import Path
from string import Template
from typing import Any

import swagger_ui
from flask import Blueprint, Response, abort, current_app, send_from_directory

from ... import TITLE, version
from ..deps import auth_service
from . import custom

bp = Blueprint("docs", __name__)

DOCS_PATH = "/docs"
#: Where Swagger UI's own files are served from.
ASSETS_PATH = "/docs-assets"
ASSETS = Path(swagger_ui.__file__).parent / "static"
ASSET_FILES = frozenset({"swagger-ui-bundle.js", "swagger-ui.css"})

PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>$title - Swagger UI</title>
<link rel="stylesheet" href="$assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="$assets/swagger-ui-bundle.js"></script>
<script>
SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  persistAuthorization: false,
  presets: [SwaggerUIBundle.presets.apis],
});
</script>
</body>
</html>
""")


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI description of this service's routes."""
    return Response(_document(), mimetype="application/json")


@bp.get(DOCS_PATH)
def docs() -> Response:
    """Swagger UI: its Authorize button logs in at the token endpoint."""
    page = PAGE.substitute(title=html.escape(TITLE), assets=ASSETS_PATH)
    return Response(page, mimetype="text/html")


@bp.get(f"{ASSETS_PATH}/<name>")
def asset(name: str) -> Any:
    """One of Swagger UI's files."""
    if name not in ASSET_FILES:
        abort(404)
    return send_from_directory(ASSETS, name, max_age=86400)


def _document() -> str:
    """The description, made once per app (it depends only on the app's settings), with your
    routes' (`routes/custom.py`, `OPENAPI_PATHS`)."""
    extensions = current_app.extensions
    if "openapi" not in extensions:
        document = auth_service().openapi(TITLE, version())
        for path, operations in getattr(custom, "OPENAPI_PATHS", {}).items():
            document["paths"].setdefault(path, operations)
        extensions["openapi"] = json.dumps(document)
    described: str = extensions["openapi"]
    return described
