"""The HTTP side: the topic's publish endpoint and the emulator's admin routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from localdev.eventgrid.auth import authenticate
from localdev.eventgrid.config import EmulatorConfig
from localdev.eventgrid.delivery import DeliveryEngine
from localdev.eventgrid.errors import PublishError, bad_request, too_large
from localdev.eventgrid.eventlog import EventLog
from localdev.eventgrid.schema import HARD_BODY_LIMIT, MAX_BATCH_BYTES, Event, event_type, parse_publish

log = logging.getLogger("localdev.eventgrid")
EVENTS_PATH = "/api/events"


class Topic:
    """The accepting side: authenticate, validate, log durably, then hand over to delivery."""

    def __init__(self, config: EmulatorConfig, engine: DeliveryEngine) -> None:
        self.config = config
        self.engine = engine
        self.log = EventLog(config.events_log)

    def accept(self, events: list[Event]) -> None:
        received_at = self.log.append(events)
        queued = self.engine.enqueue(events, self.config.input_schema, received_at)
        kinds = sorted({event_type(event) for event in events})
        log.info("accepted %d event(s) %s; %d delivery(ies) queued", len(events), ", ".join(kinds), queued)


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > HARD_BODY_LIMIT:
        raise too_large(
            f"The request has {declared} bytes; the maximum size of a publish request is {MAX_BATCH_BYTES} bytes."
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > HARD_BODY_LIMIT:
            raise too_large(f"The request exceeds the maximum size of a publish request ({MAX_BATCH_BYTES} bytes).")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(config: EmulatorConfig, engine: DeliveryEngine) -> FastAPI:
    topic: dict[str, Topic] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        topic["it"] = Topic(config, engine)
        engine.start()
        log.info(
            "Event Grid emulator on http://%s:%d%s (input schema %s, %d subscription(s))",
            config.host,
            config.port,
            EVENTS_PATH,
            config.input_schema,
            len(config.subscriptions),
        )
        yield
        engine.stop()
        topic["it"].log.close()

    app = FastAPI(title="localdev Event Grid topic", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.post(EVENTS_PATH)
    async def publish(request: Request) -> Response:
        try:
            headers = {name.lower(): value for name, value in request.headers.items()}
            authenticate(headers, config.keys, EVENTS_PATH)
            if not request.query_params.get("api-version"):
                raise bad_request(
                    "The api-version query parameter (?api-version=) is required for all requests.",
                    "MissingApiVersionParameter",
                )
            body = await _read_body(request)
            events = parse_publish(body, request.headers.get("content-type"), config.input_schema)
        except ClientDisconnect:
            # The publisher went away mid-request (a killed process, a client timeout): nothing was accepted,
            # and the publisher that retries sends it again. Nobody is left to answer.
            log.warning("publish request abandoned by the client before its body arrived; nothing accepted")
            return Response(status_code=499)
        except PublishError as exc:
            log.warning("rejected publish request: %d %s", exc.status, exc.message)
            return JSONResponse(exc.body(), status_code=exc.status)
        await run_in_threadpool(topic["it"].accept, events)
        return Response(status_code=200)

    @app.get("/_emulator/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "inputSchema": config.input_schema,
            "topic": config.topic_id,
            "eventsLog": str(config.events_log),
            "subscriptions": engine.subscriptions(),
        }

    @app.get("/_emulator/deliveries")
    def deliveries() -> dict[str, Any]:
        return engine.snapshot()

    @app.post("/_emulator/handshake")
    def handshake(subscription: str | None = None) -> JSONResponse:
        waiting = engine.retry_handshakes(subscription)
        if waiting is None:
            return JSONResponse({"error": f"unknown subscription {subscription!r}"}, status_code=404)
        return JSONResponse({"retrying": waiting})

    @app.get("/_emulator/validate")
    def validate(subscription: str, code: str) -> JSONResponse:
        if engine.validate_manually(subscription, code):
            return JSONResponse({"validated": True, "subscription": subscription})
        return JSONResponse({"validated": False, "error": "unknown subscription or code"}, status_code=400)

    return app
