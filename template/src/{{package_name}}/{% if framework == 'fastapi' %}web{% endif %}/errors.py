"""Map every error to the contract's JSON envelope, in one place."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..core.errors import (
    Problem,
    ServiceError,
    ValidationFailed,
    problem_for,
    problem_for_status,
)
from ..core.schemas import describe_errors

log = logging.getLogger(__name__)


def _response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.body, problem.status, headers={**(headers or {}), **problem.headers}
    )


async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
    return _response(problem_for(exc))


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    return _response(problem_for(ValidationFailed(describe_errors(list(exc.errors())))))


async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
    return _response(problem_for_status(exc.status_code), exc.headers)


async def _unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("Unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _response(problem_for_status(500))


def register_error_handlers(app: FastAPI) -> None:
    """Install the handlers so no framework default (HTML, list-shaped 422) reaches a client."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled_error)
