"""Toy app: HTTP routes and auth levels, an Event Grid trigger, and non-HTTP functions to run by hand."""

from __future__ import annotations

import json

import azure.functions as func
from record import record

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="items/{id:int}", methods=["GET"])
def get_item(req: func.HttpRequest) -> func.HttpResponse:
    body = {"id": int(req.route_params["id"]), "q": req.params.get("q")}
    return func.HttpResponse(json.dumps(body), mimetype="application/json", headers={"X-Toy": "1"})


@app.route(route="items/{name:alpha}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def get_named(req: func.HttpRequest) -> str:
    return f"named {req.route_params['name']}"


@app.route(route="echo", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def echo(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.get_body(), status_code=201)


@app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("boom")


@app.route(route="admin-only", auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin ok")


@app.event_grid_trigger(arg_name="event")
def on_event(event: func.EventGridEvent) -> None:
    record(
        "on_event",
        kind=type(event).__name__,
        id=event.id,
        subject=event.subject,
        data=event.get_json(),
    )


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", use_monitor=False)
def manual_timer(timer: func.TimerRequest) -> None:
    record("manual_timer", past_due=timer.past_due)


@app.queue_trigger(arg_name="msg", queue_name="%MANUAL_QUEUE%", connection="AzureWebJobsStorage")
def manual_queue(msg: func.QueueMessage) -> None:
    record("manual_queue", body=msg.get_body().decode())


@app.blob_trigger(
    arg_name="blob", path="%MANUAL_CONTAINER%/{name}", connection="AzureWebJobsStorage", source="EventGrid"
)
def manual_blob(blob: func.InputStream) -> None:
    record("manual_blob", name=blob.name, body=blob.read().decode())


@app.route(route="disabled-fn", auth_level=func.AuthLevel.ANONYMOUS)
def disabled_fn(req: func.HttpRequest) -> str:
    return "should not run"
