"""HTTP front end: admin API, Event Grid and blob extension webhooks, and HTTP-triggered functions."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from azure.functions import meta
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from localdev.functions_host.blob_trigger import BlobPattern, account_name
from localdev.functions_host.host import Host, event_grid_trigger_input, is_event_grid_source
from localdev.functions_host.indexing import FunctionSpec
from localdev.functions_host.invoker import TriggerInput
from localdev.functions_host.keys import BLOBS_EXTENSION_KEY, EVENTGRID_EXTENSION_KEY
from localdev.functions_host.settings import resolve_connection
from localdev.functions_host.storage import split_blob_url

log = logging.getLogger("functions_host")

VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
BLOB_CREATED = "Microsoft.Storage.BlobCreated"
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
# The system key each extension webhook takes (the master key opens both), as in Azure.
WEBHOOK_SYSTEM_KEYS = {"eventGridTrigger": EVENTGRID_EXTENSION_KEY, "blobTrigger": BLOBS_EXTENSION_KEY}


def request_key(request: Request) -> str | None:
    return request.headers.get("x-functions-key") or request.query_params.get("code")


def unauthorized() -> Response:
    return Response(status_code=401)


# -- admin --


async def host_status(request: Request) -> Response:
    host: Host = request.app.state.host
    return JSONResponse(host.status())


async def list_functions(request: Request) -> Response:
    host: Host = request.app.state.host
    if host.auth_enabled and not host.keys.is_master(request_key(request)):
        return unauthorized()
    name = request.path_params.get("name")
    if name is None:
        return JSONResponse([spec.describe() for spec in host.specs.values()])
    spec = host.specs.get(name)
    return JSONResponse(spec.describe()) if spec else Response(status_code=404)


async def run_function(request: Request) -> Response:
    """Core Tools' `POST /admin/functions/<name>` with `{"input": "..."}`: 202, the run happens afterwards."""
    host: Host = request.app.state.host
    if host.auth_enabled and not host.keys.is_master(request_key(request)):
        return unauthorized()
    spec = host.runnable(request.path_params["name"])
    if spec is None:
        return PlainTextResponse("no such function, or it is disabled or has errors", status_code=404)
    raw = await request.body()
    try:
        payload = json.loads(raw) if raw.strip() else {}
        text = payload.get("input") or ""
        host.run_by_hand(spec, text if isinstance(text, str) else json.dumps(text))
    except (ValueError, AttributeError) as exc:
        return PlainTextResponse(str(exc), status_code=400)
    return Response(status_code=202)


# -- Event Grid webhooks --


def abuse_protection(request: Request) -> Response:
    """CloudEvents v1.0 webhook validation: grant the origin that asks (OPTIONS handshake)."""
    origin = request.headers.get("webhook-request-origin", "*")
    return Response(
        status_code=200,
        headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*", "Allow": "POST"},
    )


async def read_events(request: Request) -> list[dict[str, Any]]:
    body = json.loads(await request.body() or b"[]")
    events = body if isinstance(body, list) else [body]
    return [event for event in events if isinstance(event, dict)]


def validation_response(request: Request, events: list[dict[str, Any]]) -> Response | None:
    header = request.headers.get("aeg-event-type", "")
    for event in events:
        if header == "SubscriptionValidation" or event.get("eventType") == VALIDATION_EVENT:
            code = (event.get("data") or {}).get("validationCode")
            return JSONResponse({"validationResponse": code})
    if header == "Unsubscribe":
        return Response(status_code=202)
    return None


def event_type(event: dict[str, Any]) -> str:
    return str(event.get("eventType") or event.get("type") or "")


async def _webhook_events(
    request: Request, host: Host, name: str, trigger_type: str
) -> Response | tuple[FunctionSpec, list[dict[str, Any]]]:
    """What both extension webhooks do first: the key, abuse protection, the function, the body, the handshake.

    The key comes first, for the handshakes too: Event Grid calls the subscription's URL, `code=` and all."""
    if host.auth_enabled and not host.keys.allows_system(WEBHOOK_SYSTEM_KEYS[trigger_type], request_key(request)):
        return unauthorized()
    if request.method == "OPTIONS":
        return abuse_protection(request)
    spec = host.runnable(name)
    if spec is None or spec.trigger_type != trigger_type:
        return PlainTextResponse(f"no {trigger_type} function {name!r}", status_code=404)
    if trigger_type == "blobTrigger" and not is_event_grid_source(spec):
        return PlainTextResponse(f"{name} is not an EventGrid-source blob trigger", status_code=400)
    try:
        events = await read_events(request)
    except ValueError:
        return PlainTextResponse("body is not JSON", status_code=400)
    handshake = validation_response(request, events)
    return handshake if handshake is not None else (spec, events)


async def event_grid_webhook(request: Request) -> Response:
    """`/runtime/webhooks/eventgrid?functionName=<fn>`: one invocation per event, 500 if any failed."""
    host: Host = request.app.state.host
    name = request.query_params.get("functionName", "")
    received = await _webhook_events(request, host, name, "eventGridTrigger")
    if isinstance(received, Response):
        return received
    spec, events = received
    failed = 0
    for event in events:
        detail = f"event id={event.get('id')} type={event_type(event)}"
        result = await host.invoker.invoke(spec, event_grid_trigger_input(event, detail))
        failed += not result.succeeded
    return Response(status_code=500 if failed else 200)


async def blob_webhook(request: Request) -> Response:
    """`/runtime/webhooks/blobs?functionName=Host.Functions.<fn>`: BlobCreated events, EventGrid-source."""
    host: Host = request.app.state.host
    name = request.query_params.get("functionName", "").removeprefix("Host.Functions.")
    received = await _webhook_events(request, host, name, "blobTrigger")
    if isinstance(received, Response):
        return received
    spec, events = received
    pattern = BlobPattern.parse(str(spec.trigger["path"]))
    account = account_name(resolve_connection(spec.trigger.get("connection")))
    for event in events:
        url = str((event.get("data") or {}).get("url") or "")
        if event_type(event) != BLOB_CREATED or not url:
            continue
        try:
            container, blob_name = split_blob_url(url, account)
        except ValueError:
            log.warning("Ignoring BlobCreated event %s: unusable url %s", event.get("id"), url)
            continue
        if pattern.match(container, blob_name) is None:
            continue
        host.spawn(host.blobs.process_event(spec, container, blob_name))
    return Response(status_code=202)


# -- HTTP triggers --


def http_trigger_input(request: Request, body: bytes, params: dict[str, str]) -> TriggerInput:
    value = {
        "method": meta.Datum(request.method, "string"),
        "url": meta.Datum(str(request.url), "string"),
        "headers": {k: meta.Datum(v, "string") for k, v in request.headers.items()},
        "query": {k: meta.Datum(v, "string") for k, v in request.query_params.items()},
        "params": {k: meta.Datum(v, "string") for k, v in params.items()},
        "body": meta.Datum(body, "bytes"),
    }
    detail = f"{request.method} {request.url.path}"
    return TriggerInput(meta.Datum(value, "http"), {}, dict(params), detail)


def to_response(value: Any) -> Response:
    if value is None:
        return Response(status_code=204)
    datum = meta.get_binding_registry().get("http").encode(value, expected_type=None)
    if datum.type == "string":
        return PlainTextResponse(datum.value)
    parts = datum.value
    headers = {k: v.value for k, v in parts["headers"].items()}
    media_type = headers.pop("content-type", None)
    return Response(
        content=parts["body"].value or b"",
        status_code=int(parts["status_code"].value),
        headers=headers,
        media_type=media_type,
    )


def authorized(host: Host, level: str, function_name: str, key: str | None) -> bool:
    if not host.auth_enabled or level == "anonymous":
        return True
    if level == "admin":
        return host.keys.is_master(key)
    return host.keys.allows_function(function_name, key)


async def http_trigger(request: Request) -> Response:
    host: Host = request.app.state.host
    path = request.url.path
    for route in host.routes:
        if route.methods is not None and request.method not in route.methods:
            continue
        params = route.template.match(path)
        if params is None:
            continue
        if not route.spec.runnable:
            return Response(status_code=404)
        if not authorized(host, route.auth_level, route.spec.name, request_key(request)):
            return unauthorized()
        body = await request.body()
        result = await host.invoker.invoke(route.spec, http_trigger_input(request, body, params))
        if not result.succeeded:
            return Response(status_code=500)
        try:
            return to_response(result.http_response)
        except Exception:
            log.exception("Function %s returned a value that is not an HTTP response", route.spec.name)
            return Response(status_code=500)
    return Response(status_code=404)


def build_app(host: Host) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await host.start()
        try:
            yield
        finally:
            await host.stop()

    routes = [
        Route("/admin/host/status", host_status, methods=["GET"]),
        Route("/admin/host/ping", host_status, methods=["GET", "POST"]),
        Route("/admin/functions", list_functions, methods=["GET"]),
        Route("/admin/functions/{name}", list_functions, methods=["GET"]),
        Route("/admin/functions/{name}", run_function, methods=["POST"]),
        Route("/runtime/webhooks/eventgrid", event_grid_webhook, methods=["POST", "OPTIONS"]),
        Route("/runtime/webhooks/blobs", blob_webhook, methods=["POST", "OPTIONS"]),
        Route("/{path:path}", http_trigger, methods=ALL_METHODS),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.host = host
    return app
