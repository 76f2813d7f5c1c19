"""One JSON error body for every failure, never a traceback: ``{"error": {"type", "message", "field"?}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from verilabel.errors import (
    ConfigError,
    ConflictError,
    DatasetImportError,
    ModelLoadError,
    NotFoundError,
    SampleError,
    StoreError,
    VerilabelError,
)

log = logging.getLogger("verilabel.server")

STATUS: list[tuple[type[VerilabelError], int]] = [
    (ConfigError, 422),
    (NotFoundError, 404),
    (ConflictError, 409),
    (DatasetImportError, 422),
    (ModelLoadError, 422),
    (SampleError, 422),
    (StoreError, 503),
]


def error_body(kind: str, message: str, field: str | None = None) -> dict[str, object]:
    error: dict[str, object] = {"type": kind, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def install(app: FastAPI) -> None:
    @app.exception_handler(VerilabelError)
    async def verilabel_error(request: Request, exc: VerilabelError) -> JSONResponse:
        status = next((code for kind, code in STATUS if isinstance(exc, kind)), 400)
        if isinstance(exc, ConfigError):
            return JSONResponse(error_body("ConfigError", exc.reason, exc.field), status)
        return JSONResponse(error_body(type(exc).__name__, str(exc)), status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body("HTTPError", str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path"))
        return JSONResponse(error_body("ConfigError", str(first.get("msg", "invalid request")), where or None), 422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("InternalError", "internal error: see the server's log"), 500)
