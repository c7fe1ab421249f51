"""The HTTP API's shapes: request parsing and the public JSON view of a job (what function_app's routes send).

Pure: no I/O, no azure.functions. No keys, tokens or query strings ever reach a response.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import ConfigError
from shared.events import iso
from shared.models import HealthReport, Job, JobState

MAX_LIST_LIMIT = 1000
DEFAULT_LIST_LIMIT = 100


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


NOT_FOUND = Reply(404, {"error": {"code": "NotFound", "message": "no such job"}})


@dataclass(frozen=True)
class ListQuery:
    state: JobState | None
    limit: int


def parse_list_query(values: Mapping[str, str]) -> ListQuery:
    """`?state=<state>&limit=<1..1000>`; ValueError saying what is wrong."""
    state_text = values.get("state")
    state = None
    if state_text:
        matches = [s for s in JobState if s.value.lower() == state_text.lower()]
        if not matches:
            raise ValueError(f"state must be one of {', '.join(s.value for s in JobState)}")
        state = matches[0]
    limit_text = values.get("limit") or str(DEFAULT_LIST_LIMIT)
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIST_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}")
    return ListQuery(state, int(limit_text))


def bad_request(message: str) -> Reply:
    return Reply(400, {"error": {"code": "BadRequest", "message": message}})


def config_error(exc: ConfigError) -> Reply:
    """The details go to the log (operators), not to HTTP callers."""
    message = "the app's settings are invalid; the function log lists every problem"
    return Reply(500, {"error": {"code": exc.code, "message": message}})


def job_reply(job: Job | None) -> Reply:
    return NOT_FOUND if job is None else Reply(200, job_view(job))


def jobs_reply(jobs: list[Job]) -> Reply:
    return Reply(200, {"jobs": [job_view(job) for job in jobs], "count": len(jobs)})


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
    }
    if job.predictions_name:
        view["output"] = {
            "container": job.predictions_container,
            "name": job.predictions_name,
            "rows": job.rows_out,
            "rowsMissing": job.rows_missing,
        }
    if job.parts:
        view["input"]["parts"] = job.parts
    if job.error_code:
        view["error"] = {"code": job.error_code, "message": job.error_message}
    return view
