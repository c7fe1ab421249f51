"""dropscore's Azure Functions (Python v2 programming model).

Triggers only: each parses its binding, calls ONE use case in shared.usecases, and logs.
Settings are read on first use, never at import, so indexing works with no settings at all.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import TypeVar

import azure.functions as func

# The blob trigger's SDK-type binding (azurefunctions-extensions-bindings-blob): the host sends the worker the
# blob's connection, container and name, never its content. Imported here, not lazily: the worker sees the
# binding only if the extension is loaded when it indexes the functions (azure-functions-runtime checks
# sys.modules), so a lazy import would only move the same cost into indexing and lose the binding.
import azurefunctions.extensions.bindings.blob as blob_binding

from shared import httpapi, listquery, logcontext, runtime
from shared.core.naming import is_job_key, parse_completion_message
from shared.errors import ConfigError, Conflict, TransientError
from shared.usecases import cancel, complete, health, intake, poll, queries, redrive, runevents
from shared.usecases.deps import Deps

Outcome = TypeVar("Outcome")
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
log = logging.getLogger(logcontext.LOGGER)
logcontext.install()  # every record carries the job it is about (a dimension in Application Insights)


# Event Grid in Azure (the only source Flex Consumption runs); LogsAndContainerScan locally.
# Read at indexing because the binding needs a literal; a missing setting means Event Grid.
def _blob_source() -> func.BlobSource:
    text = os.environ.get("BLOB_TRIGGER_SOURCE", "").strip()
    for source in func.BlobSource:
        if source.value.lower() == text.lower():
            return source
    if text:
        logging.getLogger("dropscore").warning("BLOB_TRIGGER_SOURCE=%r is not EventGrid or LogsAndContainerScan", text)
    return func.BlobSource.EVENT_GRID


BLOB_SOURCE = _blob_source()


@app.function_name("on_input_blob")
@app.blob_trigger(
    arg_name="blob",
    path="%INPUT_CONTAINER%/{name}",
    connection="AzureWebJobsStorage",
    source=BLOB_SOURCE,
)
def on_input_blob(blob: blob_binding.BlobClient) -> None:
    """A CSV landed: record, validate (ranged read, never the whole blob), submit."""
    # Only names are taken from the binding's client: with no ETag given, accept_blob reads the version's ETag
    # and size in one properties call through the app's blob adapter (its identity, its error mapping).
    intake.accept_blob(
        runtime.deps(),
        container=blob.container_name,
        name=blob.blob_name,
        size=0,
        etag=None,
        url=blob.url.split("?", 1)[0],  # a SAS in the binding's connection never reaches the ledger or events
    )


@app.function_name("poll_jobs")
@app.timer_trigger(arg_name="timer", schedule="%POLL_SCHEDULE%", run_on_startup=False, use_monitor=True)
def poll_jobs(timer: func.TimerRequest) -> None:
    """Every %POLL_SCHEDULE%: look at the unfinished jobs only."""
    if timer.past_due:
        log.info("poll_jobs is running late (past due)")
    poll.poll(runtime.deps())


@app.function_name("complete_job")
@app.queue_trigger(arg_name="message", queue_name="%COMPLETIONS_QUEUE%", connection="AzureWebJobsStorage")
def complete_job(message: func.QueueMessage) -> None:
    """Deliver predictions (or file the failure), publish the event, leave the active index."""
    try:
        job_id = parse_completion_message(message.get_body().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        log.error("complete_job: dropped malformed message %s: %s", message.id, exc)
        return
    deps = runtime.deps()
    poll.admit_after_completion(deps, complete.complete(deps, job_id))


@app.function_name("aml_run_events")
@app.event_grid_trigger(arg_name="event")
def aml_run_events(event: func.EventGridEvent) -> None:
    """The Azure ML workspace's run events (its Event Grid system topic): a job of ours ended, so check it now
    instead of at the next poll tick. The poller stays the safety net for events lost or late."""
    data = event.get_json()
    runevents.on_run_event(runtime.deps(), event_type=event.event_type, data=data if isinstance(data, dict) else {})


@app.function_name("give_up_completion")
@app.queue_trigger(arg_name="message", queue_name="%COMPLETIONS_QUEUE%-poison", connection="AzureWebJobsStorage")
def give_up_completion(message: func.QueueMessage) -> None:
    """A completion message failed every delivery (the host moved it to the poison queue): one attempt
    spent. The poller queues another later; past COMPLETION_MAX_ATTEMPTS the job ends Failed
    (CompletionGaveUp), its input filed and JobFailed published. Never left alone there."""
    try:
        job_id = parse_completion_message(message.get_body().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        log.error("give_up_completion: dropped malformed poisoned message %s: %s", message.id, exc)
        return
    complete.poisoned(runtime.deps(), job_id)


@app.function_name("get_job")
@app.route(route="jobs/{id}", methods=["GET"])
def get_job(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/jobs/{id}: one job as JSON."""
    job_id = req.route_params.get("id", "")
    if not is_job_key(job_id):
        return _respond(httpapi.NOT_FOUND)
    try:
        return _respond(httpapi.job_reply(queries.get_job(runtime.deps(), job_id)))
    except ConfigError as exc:
        return _config_error(exc)


@app.function_name("list_jobs")
@app.route(route="jobs", methods=["GET"])
def list_jobs(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/jobs?state=<state>&prefix=<name prefix>&limit=<1..200>&continuation=<token>: newest first."""
    try:
        query = listquery.parse_list_query(req.params)
    except ValueError as exc:
        return _respond(httpapi.bad_request(str(exc)))
    try:
        page = queries.list_jobs(
            runtime.deps(), state=query.state, prefix=query.prefix, limit=query.limit, after=query.after
        )
        return _respond(listquery.jobs_reply(page, state=query.state))
    except ConfigError as exc:
        return _config_error(exc)


@app.function_name("job_summary")
@app.route(route="summary", methods=["GET"])
def job_summary(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/summary: the last 24 hours' jobs by state, and completions and failures by the hour."""
    try:
        return _respond(listquery.summary_reply(queries.summary(runtime.deps())))
    except ConfigError as exc:
        return _config_error(exc)


@app.function_name("dashboard")
@app.route(route="dashboard", methods=["GET"])
def dashboard_page(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/dashboard?code=<function key>: the operator page (the page then calls the API with that key)."""
    from shared import dashboard  # here, not at the top: off `import function_app`'s path (cold starts)

    page = dashboard.page()
    return func.HttpResponse(page.body, status_code=200, headers=page.headers, mimetype="text/html")


@app.function_name("redrive_job")
@app.route(route="jobs/{id}/redrive", methods=["POST"])
def redrive_job(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/jobs/{id}/redrive: a Failed, TimedOut, Canceled or Rejected job's filed input runs again as a new
    job linked to it. 202 {jobId, previousJobId, run, job}; 200 with the same body once done; 409 with the reason."""
    return _act_on_job(req, redrive.redrive_job, _redrive_reply)


def _redrive_reply(outcome: redrive.RedriveOutcome) -> httpapi.Reply:
    return httpapi.redrive_reply(outcome.previous, job_id=outcome.job_id, run=outcome.run, started=outcome.started)


@app.function_name("cancel_job")
@app.route(route="jobs/{id}/cancel", methods=["POST"])
def cancel_job(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/jobs/{id}/cancel: a job with no outcome yet ends Canceled (CanceledByOperator), its Azure ML job is
    canceled, its input filed in the failed container. 202 <job>; 200 when already canceled; 409 once finished."""
    return _act_on_job(req, cancel.cancel_job, _cancel_reply)


def _cancel_reply(outcome: cancel.CancelOutcome) -> httpapi.Reply:
    return httpapi.cancel_reply(outcome.job, changed=outcome.changed)


def _act_on_job(
    req: func.HttpRequest, act: Callable[[Deps, str], Outcome | None], reply: Callable[[Outcome], httpapi.Reply]
) -> func.HttpResponse:
    """An operator's action on one job: 404 for a malformed or unknown id, 409 when the job's state forbids it, 503
    when storage or Azure ML cannot answer now (calling again is safe)."""
    job_id = req.route_params.get("id", "")
    if not is_job_key(job_id):
        return _respond(httpapi.NOT_FOUND)
    with logcontext.about_job(job_id):
        try:
            outcome = act(runtime.deps(), job_id)
        except Conflict as exc:
            return _respond(httpapi.conflict_reply(exc))
        except TransientError as exc:
            return _unavailable(exc)
        except ConfigError as exc:
            return _config_error(exc)
    return _respond(httpapi.NOT_FOUND if outcome is None else reply(outcome))


@app.function_name("health")
@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def health_check(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/health (admin key): every check with the app's own identity and settings; 503 when one fails."""
    report = health.check_all(runtime.deps)
    return _respond(httpapi.health_reply(report))


def _unavailable(exc: TransientError) -> func.HttpResponse:
    log.warning("%s", exc.message)
    return _respond(httpapi.unavailable(exc))


def _config_error(exc: ConfigError) -> func.HttpResponse:
    log.error("%s", exc.message)
    return _respond(httpapi.config_error(exc))


def _respond(reply: httpapi.Reply) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(reply.body), status_code=reply.status, mimetype="application/json")
