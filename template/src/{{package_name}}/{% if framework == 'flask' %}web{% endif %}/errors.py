"""Map every error to the contract's JSON envelope, in one place."""

from __future__ import annotations

from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from ..core.errors import BodyTooLarge, Problem, ServiceError, problem_for, problem_for_status

#: The body of a refused request was not read: the connection cannot carry another request.
CLOSE = {"Connection": "close"}


def _response(problem: Problem, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(problem.body)
    response.status_code = problem.status
    response.headers.update({**(headers or {}), **problem.headers})
    return response


def _service_error(exc: ServiceError) -> Response:
    return _response(problem_for(exc), CLOSE if isinstance(exc, BodyTooLarge) else None)


def _http_error(exc: HTTPException) -> Response:
    if isinstance(exc, RequestEntityTooLarge):
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        return _response(problem_for(BodyTooLarge.over(limit)), CLOSE)
    headers = {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(exc.valid_methods)
    return _response(problem_for_status(exc.code or 500), headers)


def _unhandled_error(exc: Exception) -> Response:
    current_app.logger.error("Unhandled error", exc_info=exc)
    return _response(problem_for_status(500))


def register_error_handlers(app: Flask) -> None:
    """Install the handlers so Flask's HTML error pages never reach a client."""
    app.register_error_handler(ServiceError, _service_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unhandled_error)
