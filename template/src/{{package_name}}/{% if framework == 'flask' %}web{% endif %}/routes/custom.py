"""Your own routes: add them to `bp`; `create_app` registers it. Made once by `copier copy`;
`copier update` never changes this file (README, "Protecting your own routes")."""

from flask import Blueprint

bp = Blueprint("custom", __name__)

#: Your routes' OpenAPI descriptions (path: {method: operation}), added to `/openapi.json`.
OPENAPI_PATHS: dict[str, dict[str, object]] = {}
