"""Every error as an RFC 9457 problem (application/problem+json), mapped once from
medfl's error tree; ``errors`` names each field at fault."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from medfl.errors import (
    ConflictError,
    DataError,
    MedflError,
    NotFoundError,
    RunNotFoundError,
    SitesDataError,
    SpecError,
    UsageError,
)

log = logging.getLogger("medfl.api")
PROBLEM = "application/problem+json"
# The most specific first: a subclass before its base.
STATUSES: tuple[tuple[type[MedflError], int, str], ...] = (
    (SpecError, 422, "invalid experiment"),
    (DataError, 422, "site data cannot be used"),
    (NotFoundError, 404, "not found"),
    (RunNotFoundError, 404, "not found"),
    (ConflictError, 409, "conflict"),
    (UsageError, 400, "bad request"),
    (MedflError, 400, "bad request"),
)


def problem(
    status: int,
    title: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    body["detail"] = detail
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _field_errors(exc: MedflError) -> list[dict[str, Any]] | None:
    if isinstance(exc, SpecError):
        return [{"field": path, "message": msg} for path, msg in exc.problems]
    if isinstance(exc, DataError):
        found = exc.errors if isinstance(exc, SitesDataError) else [exc]
        return [_site_error(e) for e in found]
    return None


def _site_error(exc: DataError) -> dict[str, Any]:
    return {"field": "sites", "site": exc.site, "column": exc.column, "message": str(exc)}


def from_medfl(exc: MedflError) -> JSONResponse:
    status, title = next((s, t) for kind, s, t in STATUSES if isinstance(exc, kind))
    return problem(status, title, str(exc), _field_errors(exc))


def _location(loc: tuple[Any, ...]) -> tuple[str, str]:
    where = str(loc[0]) if loc else "body"
    path = ""
    for part in loc[1:]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return where, path


def from_validation(exc: RequestValidationError) -> JSONResponse:
    errors = []
    for e in exc.errors():
        where, field = _location(tuple(e["loc"]))
        message = str(e["msg"]).removeprefix("Value error, ")
        errors.append({"field": field or where, "in": where, "message": message})
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(422, "invalid request", detail, errors)


def install(app: FastAPI) -> None:
    async def on_medfl(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, MedflError)
        return from_medfl(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return from_validation(exc)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        return problem(exc.status_code, _title(exc.status_code), str(exc.detail), headers=headers)

    async def on_internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return problem(500, "internal error", f"internal error ({type(exc).__name__})")

    app.add_exception_handler(MedflError, on_medfl)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_internal)


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"
