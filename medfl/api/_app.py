"""``create_app(settings)``: the API under /api/, the page at /, OpenAPI at /docs.
Everything is built here, nothing at import time."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medfl.api import _problems
from medfl.api._db import Database, migrate
from medfl.api._events import last_event_id, run_events
from medfl.api._requests import parse_yaml
from medfl.api._schemas import (
    ArtifactPublic,
    ExperimentCreate,
    ExperimentPublic,
    HealthPublic,
    RoundPublic,
    RunCreate,
    RunPublic,
    SchemaPublic,
    SitePublic,
    ValidationPublic,
)
from medfl.api._service import Service
from medfl.api._settings import Settings, checked_token
from medfl.api._sites import ServedSite, load_sites, shared_columns, summary
from medfl.api._worker import FastLaunch, KubernetesLaunch, Launch, Worker, mark_interrupted
from medfl.errors import NotFoundError, SpecError

STATIC = Path(__file__).parent / "static"
# The page loads nothing but this service's own files (and the blob: URLs of the plots
# it fetched with the token); no inline script, no framing.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


PROBLEMS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {_problems.PROBLEM: {}}} for code in (401, 404, 422)
}


def _service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


ServiceDep = Annotated[Service, Depends(_service)]


_bearer = HTTPBearer(auto_error=False, description="MEDFL_API_TOKEN, or the one printed")


def _auth(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    token: str = request.app.state.token
    given = credentials.credentials if credentials else ""
    if not secrets.compare_digest(given.encode(), token.encode()):
        raise HTTPException(
            401,
            "a valid bearer token is required (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )


class _SizeLimit:
    """Refuses a body over the limit: by its Content-Length at once, and while it is
    read when it has none (chunked)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            response = _problems.problem(413, "request too large", self._said())
            return await response(scope, receive, send)
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, self._said())
            return message

        await self.app(scope, counted, send)

    def _said(self) -> str:
        return f"the body is over the limit of {self.limit} bytes"


def _launches(settings: Settings, sites: dict[str, ServedSite]) -> dict[str, Launch]:
    policies = tuple((n, s.policy_file) for n, s in sites.items() if s.policy_file)
    launches: dict[str, Launch] = {"fast": FastLaunch(policies)}
    if settings.kubernetes:
        launches["kubernetes"] = KubernetesLaunch(
            settings.kubernetes_namespace, settings.kubernetes_poll_s
        )
    return launches


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service. Reads the sites file, migrates the database, marks runs a stopped
    service left in flight as interrupted; the run worker starts with the app."""
    settings = settings or Settings()
    token, generated = checked_token(settings)
    sites = load_sites(settings.sites_file)
    db = Database(settings.url())
    migrate(db.engine)
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    mark_interrupted(db, settings.runs_dir)
    launches = _launches(settings, sites)
    worker = Worker(db, settings.runs_dir, launches)
    service = Service(db, sites, worker, settings.runs_dir, tuple(launches))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            worker.stop()
            db.engine.dispose()

    app = FastAPIOffline(  # /docs' Swagger UI from the package: hospitals' networks are closed
        title="medfl",
        version=version("medfl"),
        description="Federated experiments over the sites this service serves.",
        lifespan=lifespan,
    )
    app.state.service, app.state.token, app.state.token_generated = service, token, generated
    app.state.settings = settings
    _problems.install(app)
    app.add_middleware(_SizeLimit, limit=settings.max_upload_bytes)
    app.include_router(_public())
    app.include_router(_api(settings))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _public() -> APIRouter:
    router = APIRouter()

    @router.get("/api/health", tags=["health"])
    def health() -> HealthPublic:
        return HealthPublic(version=version("medfl"))

    @router.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(
            STATIC / "index.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS
        )

    return router


def _api(settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(_auth)], responses=PROBLEMS)
    _site_routes(router)
    _experiment_routes(router, settings.max_upload_bytes)
    _run_routes(router)
    return router


def _site_public(served: ServedSite, with_summary: bool = True) -> SitePublic:
    source = served.site.data.source
    if not with_summary:
        return SitePublic(name=served.name, source=source)
    return SitePublic(name=served.name, source=source, **summary(served))


def _served(service: Service, name: str) -> ServedSite:
    if name not in service.sites:
        raise NotFoundError(f"no site {name!r}; this service serves: {', '.join(service.sites)}")
    return service.sites[name]


def _site_routes(router: APIRouter) -> None:
    @router.get("/backends", tags=["runs"])
    def backends(service: ServiceDep) -> list[str]:
        """Where this service can run an experiment (RunCreate.backend)."""
        return list(service.backends)

    @router.get("/sites", tags=["sites"])
    def sites(service: ServiceDep) -> list[SitePublic]:
        """The sites this service serves, with their data summaries (counts, aggregates)."""
        return [_site_public(s) for s in service.sites.values()]

    @router.get("/sites/{name}", tags=["sites"])
    def site(name: str, service: ServiceDep) -> SitePublic:
        return _site_public(_served(service, name))

    @router.get("/schema", tags=["sites"])
    def schema(
        service: ServiceDep, site: Annotated[list[str] | None, Query(max_length=100)] = None
    ) -> SchemaPublic:
        """The columns the chosen sites (default: all) share: outcome and feature choices."""
        chosen = site or list(service.sites)
        found = [summary(_served(service, n)) for n in chosen]
        return SchemaPublic(sites=chosen, columns=shared_columns(found))  # type: ignore[arg-type]


def _experiment_routes(router: APIRouter, limit: int) -> None:
    @router.post("/experiments", status_code=201, tags=["experiments"])
    def create(body: ExperimentCreate, service: ServiceDep) -> ExperimentPublic:
        """A new experiment from its spec (JSON); its sites by name."""
        return service.create_experiment(body.spec)

    @router.post("/experiments/upload", status_code=201, tags=["experiments"])
    async def upload(
        service: ServiceDep, file: Annotated[UploadFile, File(description="experiment.yaml")]
    ) -> ExperimentPublic:
        """A new experiment from an uploaded YAML file (safe YAML, size-limited)."""
        text = await file.read(limit + 1)
        if len(text) > limit:
            raise SpecError([("file", f"over the upload limit of {limit} bytes")])
        return service.create_experiment(parse_yaml(text))

    @router.post("/experiments/validate", tags=["experiments"])
    def validate_draft(body: ExperimentCreate, service: ServiceDep) -> ValidationPublic:
        """Check a spec and every site's data, without saving anything."""
        return service.validate(service.parse(body.spec))

    @router.get("/experiments", tags=["experiments"])
    def experiments(service: ServiceDep) -> list[ExperimentPublic]:
        return service.experiments()

    @router.get("/experiments/{experiment_id}", tags=["experiments"])
    def experiment(experiment_id: str, service: ServiceDep) -> ExperimentPublic:
        return service.experiment(experiment_id)

    @router.delete("/experiments/{experiment_id}", status_code=204, tags=["experiments"])
    def delete(experiment_id: str, service: ServiceDep) -> Response:
        """The experiment, its runs and their folders (not while a run is in flight)."""
        service.delete_experiment(experiment_id)
        return Response(status_code=204)

    @router.post("/experiments/{experiment_id}/validate", tags=["experiments"])
    def validate(experiment_id: str, service: ServiceDep) -> ValidationPublic:
        return service.validate(service.stored(experiment_id))

    @router.post("/experiments/{experiment_id}/runs", status_code=202, tags=["runs"])
    def launch(experiment_id: str, body: RunCreate, service: ServiceDep) -> RunPublic:
        """Queue a run; the service runs one at a time."""
        return service.launch(experiment_id, body.backend)


def _run_routes(router: APIRouter) -> None:
    @router.get("/runs", tags=["runs"])
    def runs(
        service: ServiceDep,
        experiment_id: Annotated[str | None, Query(alias="experimentId")] = None,
    ) -> list[RunPublic]:
        return service.runs(experiment_id)

    @router.get("/runs/{run_id}", tags=["runs"])
    def run(run_id: str, service: ServiceDep) -> RunPublic:
        return service.run(run_id)

    @router.post("/runs/{run_id}/cancel", tags=["runs"])
    def cancel(run_id: str, service: ServiceDep) -> RunPublic:
        """Stops the run when its current round ends (a queued run at once)."""
        return service.cancel(run_id)

    @router.post("/runs/{run_id}/resume", tags=["runs"])
    def resume(run_id: str, service: ServiceDep) -> RunPublic:
        """An interrupted or cancelled run goes on from its last finished round."""
        return service.resume(run_id)

    @router.get("/runs/{run_id}/rounds", tags=["runs"])
    def rounds(run_id: str, service: ServiceDep) -> list[RoundPublic]:
        service.run(run_id)
        return service.rounds(run_id)

    @router.get(
        "/runs/{run_id}/events",
        tags=["runs"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    def events(run_id: str, request: Request, service: ServiceDep) -> StreamingResponse:
        """Server-Sent Events: ``round`` (one per finished round), ``status``, ``end``."""
        service.run(run_id)
        after = last_event_id(request.headers.get("last-event-id"))
        stream = run_events(service, run_id, after, request.is_disconnected)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)

    @router.get("/runs/{run_id}/result", tags=["runs"])
    def result(run_id: str, service: ServiceDep) -> JSONResponse:
        """result.json: per-round and per-site metrics, test metrics, baselines, privacy."""
        return JSONResponse(service.result(run_id))

    @router.get("/runs/{run_id}/artifacts", tags=["runs"])
    def artifacts(run_id: str, service: ServiceDep) -> list[ArtifactPublic]:
        """The run folder's downloads: result.json, report.md, the model, the plots."""
        return service.artifacts(run_id)

    @router.get(
        "/runs/{run_id}/artifacts/{name}",
        tags=["runs"],
        response_class=FileResponse,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    def artifact(run_id: str, name: str, service: ServiceDep) -> FileResponse:
        path, media_type = service.artifact(run_id, name)
        return FileResponse(path, media_type=media_type, filename=name)
