"""The HTTP side: scoring URI routes, the ARM-shaped cancel, and the /_emulator admin routes."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from localdev.batch_endpoint.config import EmulatorConfig
from localdev.batch_endpoint.errors import NO_DEPLOYMENT_MESSAGE, ApiError
from localdev.batch_endpoint.faults import Faults, FaultSpec, InvokeFault
from localdev.batch_endpoint.hangup import HUNG_UP_STATUS, OpenConnections
from localdev.batch_endpoint.jobs import JobManager
from localdev.batch_endpoint.request import parse_job_request
from localdev.batch_endpoint.stats import RouteStats
from localdev.batch_endpoint.workspace import ARM_WORKSPACE, add_workspace_routes, publish_models

ARM_JOB = ARM_WORKSPACE + "/jobs/{name}"

log = logging.getLogger("batch_endpoint")


def _error(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _check_token(request: Request, token: str) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise ApiError(
            401,
            "Unauthorized",
            "Authentication failed: the request has no 'Authorization: Bearer <token>' header.",
            {"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(presented.strip().encode(), token.encode()):
        raise ApiError(
            401,
            "InvalidAuthenticationToken",
            "The access token is invalid or has expired.",
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


def _injected_refusal(status: int, retry_after: int) -> ApiError:
    """An injected 429 or 503: the request was not processed, and Retry-After says when to try again."""
    code, message = {
        429: ("TooManyRequests", "Too many requests; retry later."),
        503: ("ServiceUnavailable", "The service is temporarily unavailable; retry later."),
    }[status]
    return ApiError(status, code, message, {"Retry-After": str(retry_after)})


def _injected_error() -> ApiError:
    return ApiError(500, "InternalServerError", "The service encountered an internal error (injected).")


def create_app(config: EmulatorConfig, *, connections: OpenConnections | None = None) -> FastAPI:
    """The emulator's routes. `connections` is how the "answer dropped" fault hangs up; `serve` attaches
    uvicorn's connections to it (without them that fault answers 500 instead, saying why)."""
    faults = Faults()
    faults.replace(config.faults)
    manager = JobManager(config, faults)
    stats = RouteStats()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        publish_models(config)
        manager.start()
        yield
        manager.stop()

    app = FastAPI(title="Azure ML batch endpoint emulator", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.manager = manager

    @app.middleware("http")
    async def count_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        stats.add(f"{request.method} {getattr(route, 'path', 'unmatched')}", response.status_code)
        if response.status_code == 429:
            manager.counters.throttled()
        return response

    _add_error_handlers(app)
    _add_job_routes(app, config, manager, faults, connections or OpenConnections())
    add_workspace_routes(app, config, _check_token, _require_api_version)
    _add_admin_routes(app, config, manager, faults, stats)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "BadRequest")
        return _error(ApiError(exc.status_code, code, str(exc.detail)))


def _add_job_routes(
    app: FastAPI, config: EmulatorConfig, manager: JobManager, faults: Faults, connections: OpenConnections
) -> None:
    @app.post("/jobs")
    async def invoke(request: Request) -> Response:
        _check_token(request, config.token)
        fault = faults.invoke_fault()
        if fault is InvokeFault.THROTTLED:
            raise _injected_refusal(429, faults.spec.retry_after)
        if fault is InvokeFault.FAILED:
            raise _injected_error()
        raw = await request.body()
        try:
            body = json.loads(raw or b"null")
        except ValueError as exc:
            raise ApiError(
                400, "BadRequest", f"The request body is not valid JSON: {getattr(exc, 'msg', exc)}."
            ) from None
        job_request = parse_job_request(body, config.datastores)
        deployment_name = request.headers.get("azureml-model-deployment") or config.default_deployment
        deployment = config.deployments.get(deployment_name or "")
        if deployment is None:
            raise ApiError(400, "UserError", NO_DEPLOYMENT_MESSAGE)
        resource = await asyncio.to_thread(manager.create, job_request, deployment)
        if fault is InvokeFault.FAILED_AFTER_CREATE:
            log.info("job %s created; its invoke is answered 500 (fault)", resource["name"])
            raise _injected_error()
        if fault is InvokeFault.DROPPED_AFTER_CREATE:
            log.info("job %s created; its invoke is left unanswered (fault)", resource["name"])
            if await connections.hang_up(request.scope.get("client")):
                return Response(status_code=HUNG_UP_STATUS)  # never sent: only /_emulator/stats sees it
            log.error("cannot hang up on %s: the app is not run by `serve`; answering 500", request.client)
            raise _injected_error()
        return JSONResponse(resource, status_code=200)

    @app.get("/jobs")
    async def list_jobs(request: Request) -> dict[str, Any]:
        _check_token(request, config.token)
        return {"value": manager.list_jobs()}

    @app.get("/jobs/{name}")
    async def job_status(name: str, request: Request) -> dict[str, Any]:
        _check_token(request, config.token)
        manager.counters.status_call(name)
        refusal = faults.status_fault()
        if refusal is not None:
            raise _injected_refusal(refusal, faults.spec.retry_after)
        if faults.spec.slow_status > 0:
            await asyncio.sleep(faults.spec.slow_status)
        return _job_or_404(manager, name)

    @app.get(ARM_JOB)
    async def arm_job(name: str, request: Request) -> dict[str, Any]:
        _check_token(request, config.token)
        _require_api_version(request)
        return _job_or_404(manager, name)

    @app.post(ARM_JOB + "/cancel")
    async def cancel(name: str, request: Request) -> Response:
        _check_token(request, config.token)
        _require_api_version(request)
        if not manager.cancel(name):
            raise _not_found(name)
        location = str(request.url_for("job_status", name=name))
        return Response(status_code=202, headers={"Location": location, "Retry-After": "1"})


def _add_admin_routes(
    app: FastAPI, config: EmulatorConfig, manager: JobManager, faults: Faults, stats: RouteStats
) -> None:
    @app.get("/_emulator/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "deployments": list(config.deployments),
            "datastores": config.datastores,
            "workers": {"size": manager.pool.size, "warm": manager.pool.warm()},
            "rowCostUs": config.row_cost_us,
            "maxActiveJobs": config.max_active_jobs,
            "eventsTopic": manager.events.safe_topic,
        }

    @app.get("/_emulator/events")
    async def run_events(job: str | None = None) -> dict[str, Any]:
        return manager.events.snapshot(job)

    @app.get("/_emulator/jobs/{name}/minibatches")
    async def mini_batches(name: str) -> dict[str, Any]:
        trace = manager.scorer.trace.get(name)
        if trace is None:
            raise ApiError(404, "NotFound", f"No mini-batch trace for job '{name}' (not scored since the start).")
        return {"value": trace}

    @app.get("/_emulator/stats")
    async def get_stats() -> dict[str, Any]:
        jobs: dict[str, int] = defaultdict(int)
        for job in manager.list_jobs():
            jobs[job["properties"]["status"]] += 1
        return {**manager.counters.snapshot(), "routes": stats.snapshot(), "jobs": dict(jobs)}

    @app.delete("/_emulator/stats")
    async def reset_stats() -> Response:
        stats.reset()
        manager.counters.reset()
        return Response(status_code=204)

    @app.get("/_emulator/faults")
    async def get_faults() -> dict[str, Any]:
        return faults.snapshot()

    @app.put("/_emulator/faults")
    async def put_faults(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
            spec = FaultSpec.parse(body["spec"]) if isinstance(body.get("spec"), str) else FaultSpec.from_mapping(body)
        except (ValueError, AttributeError, TypeError) as exc:
            raise ApiError(400, "BadRequest", f"Invalid fault spec: {exc}") from None
        faults.replace(spec)
        return faults.snapshot()


def _not_found(name: str) -> ApiError:
    return ApiError(404, "UserError", f"Job '{name}' was not found.")


def _job_or_404(manager: JobManager, name: str) -> dict[str, Any]:
    job = manager.get(name)
    if job is None:
        raise _not_found(name)
    return job


def _require_api_version(request: Request) -> None:
    if not request.query_params.get("api-version"):
        raise ApiError(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
