"""Write docs/events/examples/<type>.json from the real event builder (shared/events.py).

Run `python docs/events/make_examples.py` after changing the contract; the tests fail when the
examples are stale (`--check`) or do not validate against their schema.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from shared.core.naming import job_key  # noqa: E402
from shared.events import build_event, cloudevent_json  # noqa: E402
from shared.models import EventType, Job, JobState  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent / "examples"
START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
SOURCE = "/subscriptions/0000/resourceGroups/dropscore/providers/Microsoft.Web/sites/dropscore-func"


def _base() -> Job:
    name = "sales/2026-11-22/diamonds.csv"
    job_id = job_key("dropscoredata", "incoming", name, "0x8DE2A1B3C4D5E6F")
    return Job(
        job_id=job_id,
        state=JobState.SUBMITTED,
        account="dropscoredata",
        container="incoming",
        name=name,
        blob_etag="0x8DE2A1B3C4D5E6F",
        size=48213,
        input_url=f"https://dropscoredata.blob.core.windows.net/incoming/{name}",
        created_at=START,
        updated_at=START + timedelta(seconds=2),
        attempt=1,
        endpoint="https://diamonds-ep.westeurope.inference.ml.azure.com/jobs",
        deployment="diamonds-mlflow",
        aml_job_name=f"dropscore-{job_id[:32]}-1",
        aml_status="Queued",
        studio_url=f"https://ml.azure.com/runs/dropscore-{job_id[:32]}-1?wsid=/subscriptions/0000/resourcegroups/ml/workspaces/ws",
        submitted_at=START + timedelta(seconds=2),
        route="default",
    )


def example_jobs() -> dict[EventType, Job]:
    submitted = _base()
    finished = START + timedelta(minutes=7, seconds=41)
    completed = replace(
        submitted,
        state=JobState.COMPLETED,
        aml_status="Completed",
        started_at=START + timedelta(minutes=3),
        finished_at=finished,
        predictions_container="predictions",
        predictions_name=f"{submitted.name}.predictions.csv",
        predictions_url=f"https://dropscoredata.blob.core.windows.net/predictions/{submitted.name}.predictions.csv",
        archive_container="processed",
        rows_in=500,
        rows_out=500,
        rows_missing=0,
    )
    failed = replace(
        submitted,
        state=JobState.FAILED,
        aml_status="Failed",
        started_at=START + timedelta(minutes=3),
        finished_at=finished,
        archive_container="failed",
        error_code="UserError",
        error_message="MlflowException: Failed to enforce schema of data: missing inputs ['clarity']",
    )
    rejected = replace(
        _base(),
        state=JobState.REJECTED,
        attempt=0,
        endpoint="",
        deployment="",
        aml_job_name="",
        aml_status="",
        studio_url="",
        submitted_at=None,
        finished_at=START + timedelta(seconds=1),
        archive_container="rejected",
        error_code="MissingColumns",
        error_message="missing required columns: clarity (REQUIRED_COLUMNS); the header has: carat, cut, color",
    )
    return {
        EventType.JOB_SUBMITTED: submitted,
        EventType.JOB_COMPLETED: completed,
        EventType.JOB_FAILED: failed,
        EventType.INPUT_REJECTED: rejected,
    }


def render() -> dict[str, str]:
    files = {}
    for event_type, job in example_jobs().items():
        moment = job.finished_at or job.updated_at
        event = cloudevent_json(build_event(job, event_type, SOURCE, moment))
        files[f"{event_type.value}.json"] = json.dumps(event, indent=2) + "\n"
    return files


def main(argv: list[str]) -> int:
    files = render()
    if "--check" in argv:
        stale = [name for name, text in files.items() if (EXAMPLES / name).read_text() != text]
        if stale:
            print(f"stale examples (run python docs/events/make_examples.py): {', '.join(stale)}")
            return 1
        return 0
    EXAMPLES.mkdir(exist_ok=True)
    for name, text in files.items():
        (EXAMPLES / name).write_text(text)
        print(f"wrote {EXAMPLES / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
