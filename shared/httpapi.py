"""The HTTP API's shapes: request parsing and the public JSON view of a job (what function_app's routes send).

Pure: no I/O, no azure.functions. No keys, tokens or query strings ever reach a response.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.core.naming import event_id
from shared.core.operator import may_cancel, may_redrive
from shared.errors import ConfigError, Conflict, TransientError
from shared.events import iso, strip_query
from shared.models import HealthReport, Job


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


NOT_FOUND = Reply(404, {"error": {"code": "NotFound", "message": "no such job"}})


def bad_request(message: str) -> Reply:
    return Reply(400, {"error": {"code": "BadRequest", "message": message}})


def config_error(exc: ConfigError) -> Reply:
    """The details go to the log (operators), not to HTTP callers."""
    message = "the app's settings are invalid; the function log lists every problem"
    return Reply(500, {"error": {"code": exc.code, "message": message}})


def job_reply(job: Job | None) -> Reply:
    return NOT_FOUND if job is None else Reply(200, job_view(job))


def health_reply(report: HealthReport) -> Reply:
    """200 when nothing failed (skips are fine), 503 otherwise: a load balancer or a script can read the code."""
    checks = [
        {"name": c.name, "status": c.status.value, "detail": c.detail, **({"fix": c.fix} if c.fix else {})}
        for c in report.checks
    ]
    return Reply(200 if report.healthy else 503, {"healthy": report.healthy, "checks": checks})


def job_view(job: Job) -> dict[str, Any]:
    """The public JSON view of a job."""
    view: dict[str, Any] = {
        "jobId": job.job_id,
        "state": job.state.value,
        "stage": job.stage.value,
        "finalized": job.finalized,
        "attempt": job.attempt,
        "route": job.route or "default",
        "input": {"container": job.container, "name": job.name, "etag": job.blob_etag, "size": job.size},
        "aml": {
            "jobName": job.aml_job_name or None,
            "status": job.aml_status or None,
            "deployment": job.deployment or None,
            "studioUrl": job.studio_url or None,
        },
        "createdAt": iso(job.created_at),
        "updatedAt": iso(job.updated_at),
        "run": job.run,
        "previousJobId": job.previous_job_id or None,
        "redrivenTo": job.redriven_to or None,
        "timeline": {
            "receivedAt": iso(job.created_at),
            "submittedAt": _iso_or_none(job.submitted_at),
            "startedAt": _iso_or_none(job.started_at),
            "finishedAt": _iso_or_none(job.finished_at),
        },
        "durations": _durations(job),
        "actions": {"redrive": may_redrive(job), "cancel": may_cancel(job)},
        "events": _events(job),
    }
    if job.predictions_name:
        view["output"] = {
            "container": job.predictions_container,
            "name": job.predictions_name,
            "rows": job.rows_out,
            "rowsMissing": job.rows_missing,
            "url": strip_query(job.predictions_url) or None,
        }
    if job.parts:
        view["input"]["parts"] = job.parts
    if job.error_code:
        view["error"] = {"code": job.error_code, "message": job.error_message}
    return view


def _iso_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else iso(moment)


def _durations(job: Job) -> dict[str, float | None]:
    """Seconds queued (received → started, or → finished when it never started), running (started → finished)
    and in total (received → finished); None while not known yet."""

    def seconds(start: datetime | None, end: datetime | None) -> float | None:
        return None if start is None or end is None else round((end - start).total_seconds(), 3)

    return {
        "queuedSeconds": seconds(job.created_at, job.started_at or job.finished_at),
        "runningSeconds": seconds(job.started_at, job.finished_at),
        "totalSeconds": seconds(job.created_at, job.finished_at),
    }


def _events(job: Job) -> list[dict[str, Any]]:
    """The job's events in the order they were queued, with their ids (what subscribers dedupe on)."""
    names = dict.fromkeys((*job.events_pending, *job.events_published))
    return [
        {"type": name, "id": event_id(job.job_id, name, job.attempt), "published": name in job.events_published}
        for name in names
    ]


# ---- the operator's actions (POST /api/jobs/{id}/redrive and /cancel) -----------------------------------------


def redrive_reply(previous: Job, *, job_id: str, run: int, started: bool) -> Reply:
    """202 when this call started the new run; 200 when an earlier (or concurrent) call had: the same body."""
    body = {"jobId": job_id, "previousJobId": previous.job_id, "run": run, "job": job_view(previous)}
    return Reply(202 if started else 200, body)


def cancel_reply(job: Job, *, changed: bool) -> Reply:
    """202 when this call canceled the job; 200 when an operator already had."""
    return Reply(202 if changed else 200, job_view(job))


def unavailable(exc: TransientError) -> Reply:
    """503: storage or a race kept the action from finishing now; calling again is safe (both are idempotent)."""
    message = "the action could not finish now; call again (it is safe to repeat): the function log says why"
    return Reply(503, {"error": {"code": exc.code, "message": message}})


def conflict_reply(exc: Conflict) -> Reply:
    """409: the action does not fit the job's state (which the body names)."""
    return Reply(409, {"error": {"code": exc.code, "message": exc.message, "state": exc.state}})
