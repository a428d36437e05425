"""Build the Flask application from settings."""

from __future__ import annotations

from flask import Flask, Response, request

from ..core import events
from ..core.events import client_address
from ..core.headers import security_headers
from ..core.service import AuthService
from ..settings import Settings
from .errors import register_error_handlers
from .routes import auth, custom, health, jwks, users


def create_app(settings: Settings) -> Flask:
    """Return a new app with its own keys and database; nothing is shared between apps."""
    app = Flask(__name__)
    # Werkzeug refuses larger bodies with 413 before reading them, chunked ones included.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    service = AuthService.from_settings(settings)
    events.configure()
    app.extensions["auth"] = service
    register_error_handlers(app)
    headers = security_headers(docs_page=False, production=settings.environment != "development")

    @app.before_request
    def note_client() -> None:
        client_address.set(request.remote_addr)

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response

    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    if service.refresh_enabled:
        app.register_blueprint(auth.refresh_bp)
    app.register_blueprint(users.bp)
    app.register_blueprint(jwks.bp)
    app.register_blueprint(custom.bp)
    return app
