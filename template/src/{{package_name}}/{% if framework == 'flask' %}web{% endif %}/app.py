"""Build the Flask application from settings."""

from __future__ import annotations

from flask import Flask

from ..core.service import AuthService
from ..settings import Settings
from .errors import register_error_handlers
from .routes import auth, health, jwks, users

MAX_BODY_BYTES = 64 * 1024


def create_app(settings: Settings) -> Flask:
    """Return a new app with its own keys and database; nothing is shared between apps."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    service = AuthService.from_settings(settings)
    app.extensions["auth"] = service
    register_error_handlers(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    if service.refresh_enabled:
        app.register_blueprint(auth.refresh_bp)
    app.register_blueprint(users.bp)
    app.register_blueprint(jwks.bp)
    return app
