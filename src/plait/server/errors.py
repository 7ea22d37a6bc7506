"""Errors as JSON: ``{"error": {"code", "message", "details"}}`` with the right status.

No stack trace ever reaches a client: unexpected exceptions are logged with the request
id and answered with a 500 that carries only that id.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from plait.errors import (
    ConflictError,
    ExpressionError,
    InputError,
    NotFound,
    PlaitError,
    StoreError,
    StoreUnavailable,
    ValidationError,
)

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}


class ApiError(Exception):
    """Raise from a route to answer with a specific status, code and details."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.details = details
        self.headers = headers


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "error": {
            "code": code or _CODES.get(status, "error"),
            "message": message,
            "details": details,
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


def problems_details(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {
            "line": p.line,
            "col": p.col,
            "message": p.message,
            "text": p.short(),
            "path": list(p.path),
        }
        for p in exc.problems
    ]


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the JSON error shape."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            exc.status, exc.message, code=exc.code, details=exc.details, headers=exc.headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": [str(p) for p in e.get("loc", ())], "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        first = details[0] if details else {"loc": [], "message": "invalid request"}
        where = ".".join(first["loc"])
        return error_response(422, f"{where}: {first['message']}", details=details)

    @app.exception_handler(InputError)
    async def _inputs(request: Request, exc: InputError) -> JSONResponse:
        return error_response(
            422, "invalid inputs", code="invalid_inputs", details=problems_details(exc)
        )

    @app.exception_handler(ValidationError)
    async def _workflow(request: Request, exc: ValidationError) -> JSONResponse:
        return error_response(
            422, "the workflow is not valid", code="invalid_workflow", details=problems_details(exc)
        )

    @app.exception_handler(NotFound)
    async def _missing(request: Request, exc: NotFound) -> JSONResponse:
        return error_response(404, str(exc))

    @app.exception_handler(ConflictError)
    async def _conflict(request: Request, exc: ConflictError) -> JSONResponse:
        return error_response(409, str(exc))

    @app.exception_handler(ExpressionError)
    async def _expression(request: Request, exc: ExpressionError) -> JSONResponse:
        return error_response(422, str(exc), code="invalid_expression")

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> JSONResponse:
        # a number beyond what the store can hold (e.g. an id of 2**70) is bad input
        return error_response(422, "a number in the request is out of range")

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        # the database restarts or the connection was cut: the client may try again
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return error_response(
            503, "the database is unavailable; try again shortly", headers={"Retry-After": "5"}
        )

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError) -> JSONResponse:
        # The driver's own message names tables and SQL: it goes to the log, never to
        # the client (most such refusals are a value the database cannot take).
        if not str(exc).startswith("database error:"):
            return error_response(400, str(exc))
        request_id = getattr(request.state, "request_id", None)
        log.warning("%s %s (request %s): %s", request.method, request.url.path, request_id, exc)
        return error_response(
            400,
            "the database refused a value of this request",
            details={"request_id": request_id},
        )

    @app.exception_handler(PlaitError)
    async def _plait(request: Request, exc: PlaitError) -> JSONResponse:
        return error_response(400, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = request.headers.get("x-request-id") or getattr(
            request.state, "request_id", None
        )
        log.exception(
            "unexpected error handling %s %s (request %s)",
            request.method,
            request.url.path,
            request_id,
        )
        return error_response(500, "internal error", details={"request_id": request_id})
