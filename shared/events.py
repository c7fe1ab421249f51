"""The outgoing event contract (CloudEvents 1.0), built from ledger rows. Pure: no I/O.

Every event of a job carries the same `data` shape; `output` and `drift` are present on JobCompleted
and DriftDetected, `error` on JobFailed and InputRejected. Schemas: docs/events/<type>.schema.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.core.naming import blob_subject, event_id
from shared.models import EventType, Job, JobState

DATA_VERSION = "1.0"
#: The events that announce the delivered predictions: both carry `output`, `input.rows`, `aml` and `drift`.
_DELIVERY_EVENTS = frozenset({EventType.JOB_COMPLETED, EventType.DRIFT_DETECTED})
_SAS_MARKERS = ("sig=", "se=", "sv=")


@dataclass(frozen=True)
class OutEvent:
    """One event, schema-neutral; the publisher adapter renders CloudEvents or Event Grid schema."""

    id: str
    type: str
    source: str
    subject: str
    time: datetime
    data: dict[str, Any]


def build_event(job: Job, event_type: EventType, source: str, now: datetime) -> OutEvent:
    return OutEvent(
        id=event_id(job.job_id, event_type, job.attempt),
        type=event_type.value,
        source=source,
        subject=blob_subject(job.container, job.name),
        time=now,
        data=event_data(job, event_type),
    )


def event_data(job: Job, event_type: EventType) -> dict[str, Any]:
    data: dict[str, Any] = {
        "jobId": job.job_id,
        "route": job.route or "default",
        # An event describes the moment it announces, even when the outbox sends it later.
        "state": JobState.SUBMITTED.value if event_type == EventType.JOB_SUBMITTED else job.state.value,
        "attempt": job.attempt,
        # Which run of this input (an operator's redrive starts run n+1, a new job linked to the one it redrives).
        "run": job.run,
        "input": {
            "url": strip_query(job.input_url),
            "container": job.container,
            "name": job.name,
            "etag": job.blob_etag,
            "size": job.size,
        },
        "timings": _timings(job),
    }
    if job.previous_job_id:
        data["previousJobId"] = job.previous_job_id
    if job.parts:
        data["input"]["parts"] = job.parts
    if job.aml_job_name or event_type in {EventType.JOB_SUBMITTED, *_DELIVERY_EVENTS}:
        data["aml"] = {
            "endpoint": strip_query(job.endpoint),
            "deployment": job.deployment or None,
            "jobName": job.aml_job_name,
            "studioUrl": job.studio_url or None,
            "status": job.aml_status or None,
        }
    if event_type in _DELIVERY_EVENTS:
        data["output"] = {
            "url": strip_query(job.predictions_url),
            "container": job.predictions_container,
            "name": job.predictions_name,
            "rows": job.rows_out or 0,
            "rowsMissing": job.rows_missing or 0,
        }
        data["input"]["rows"] = job.rows_in or 0
        # The summary (no URL in it: the report is named by container and name); null without a reference.
        data["drift"] = drift_summary(job)
    if event_type in {EventType.JOB_FAILED, EventType.INPUT_REJECTED}:
        data["error"] = {"code": job.error_code or "Unknown", "message": job.error_message}
    if job.archive_container:
        data["input"]["movedTo"] = job.archive_container
    elif job.input_not_moved:
        data["input"]["notMoved"] = job.input_not_moved
    return data


def drift_summary(job: Job) -> dict[str, Any] | None:
    """The drift summary the ledger row keeps (`Job.drift`), parsed; None when the job has none."""
    return json.loads(job.drift) if job.drift else None


def _timings(job: Job) -> dict[str, str]:
    stamps = {
        "receivedAt": job.created_at,
        "submittedAt": job.submitted_at,
        "startedAt": job.started_at,
        "finishedAt": job.finished_at,
    }
    return {key: iso(value) for key, value in stamps.items() if value is not None}


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def strip_query(url: str) -> str:
    """Never let a SAS token (or any query string) out in an event."""
    return url.split("?", 1)[0]


def cloudevent_json(event: OutEvent) -> dict[str, Any]:
    """The CloudEvents 1.0 JSON form of an event (what subscribers receive in CloudEvents mode)."""
    return {
        "specversion": "1.0",
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "subject": event.subject,
        "time": iso(event.time),
        "datacontenttype": "application/json",
        "data": event.data,
    }
