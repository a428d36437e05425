"""Build the Flask application from settings."""

from __future__ import annotations

from flask import Flask, Response, request

from ..core import events
from ..core.cors import CorsPolicy
from ..core.events import client_address
from ..core.headers import security_headers
from ..core.service import AuthService
from ..settings import Settings
from .errors import register_error_handlers
from .routes import auth, custom, docs, health, jwks, users


def create_app(settings: Settings) -> Flask:
    """Return a new app with its own keys and database; nothing is shared between apps."""
    app = Flask(__name__)
    # Werkzeug refuses larger bodies with 413 before reading them, chunked ones included.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    service = AuthService.from_settings(settings)
    events.configure()
    app.extensions["auth"] = service
    register_error_handlers(app)
    production = settings.environment != "development"
    headers = security_headers(docs_page=False, production=production)
    docs_headers = security_headers(docs_page=True, production=production)
    cors = CorsPolicy.from_setting(settings.cors_allowed_origins, service.cookie is not None)

    @app.before_request
    def note_client() -> Response | None:
        client_address.set(
            service.client_of(request.remote_addr, request.headers.getlist("X-Forwarded-For"))
        )
        asked = request.headers.get("Access-Control-Request-Method")
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS" and origin and asked:  # a browser's preflight
            answer = cors.preflight_headers(
                origin, request.path, asked, request.headers.get("Access-Control-Request-Headers")
            )
            return Response(status=204, headers=answer)
        return None

    @app.after_request
    def add_headers(response: Response) -> Response:
        if request.method == "OPTIONS" and not response.is_streamed and not response.get_data():
            # Flask's OPTIONS answer (and a preflight's) has no body, so no type (as FastAPI's).
            del response.headers["Content-Type"]
        page = request.path.startswith((docs.DOCS_PATH, docs.ASSETS_PATH))
        for name, value in (docs_headers if page else headers).items():
            response.headers.setdefault(name, value)
        if "Access-Control-Request-Method" not in request.headers:  # a preflight has its own
            origin = request.headers.get("Origin")
            for name, value in cors.response_headers(origin, request.path).items():
                response.headers.setdefault(name, value)
        return response

    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    if service.refresh_enabled:
        app.register_blueprint(auth.refresh_bp)
    if service.password_reset_enabled:
        app.register_blueprint(auth.reset_bp)
    app.register_blueprint(users.bp)
    app.register_blueprint(jwks.bp)
    app.register_blueprint(custom.bp)
    if settings.docs_enabled:
        app.register_blueprint(docs.bp)
    return app
