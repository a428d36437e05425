"""Map every error to the contract's JSON envelope, in one place."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..core.errors import (
    BodyTooLarge,
    Problem,
    ServiceError,
    ValidationFailed,
    problem_for,
    problem_for_status,
)
from ..core.schemas import describe_errors


def _response(problem: Problem, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.body, problem.status, headers={**(headers or {}), **problem.headers}
    )


async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
    return _response(problem_for(exc))


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    return _response(problem_for(ValidationFailed(describe_errors(list(exc.errors())))))


async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
    if exc.status_code == BodyTooLarge.status:
        return _response(problem_for(BodyTooLarge(exc.detail)))
    return _response(problem_for_status(exc.status_code), exc.headers)


def register_error_handlers(app: FastAPI) -> None:
    """Install the handlers so no framework default (HTML, list-shaped 422) reaches a client.

    Unexpected exceptions are answered by the `Guard` middleware: logged once, JSON 500.
    (`exception_handler`, not Starlette's `add_exception_handler`, whose type admits only
    handlers of any `Exception`.)
    """
    app.exception_handler(ServiceError)(_service_error)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(HTTPException)(_http_error)
