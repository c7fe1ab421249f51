"""Write docs/events/examples/<type>.json (and <type>.<variant>.json) from the real event builder (shared/events.py).

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

from shared.core.completion import drift_column  # noqa: E402
from shared.core.naming import drift_report_name, job_key  # noqa: E402
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


def _drift_summary(name: str, *, drifted: bool) -> dict[str, object]:
    """A summary as `shared.drift.compare.DriftReport.summary` makes it, with the report the use case wrote."""
    if drifted:
        top = [("carat", 0.612, 0.377), ("color", 0.341, 0.284), ("clarity", 0.208, 0.219)]
        features = ["carat", "color", "clarity", "x", "y"]
        prediction = {"psi": 0.473, "jsDistance": 0.331, "drifted": True}
    else:
        top = [("depth", 0.041, 0.098), ("carat", 0.027, 0.081), ("cut", 0.012, 0.054)]
        features = []
        prediction = {"psi": 0.019, "jsDistance": 0.068, "drifted": False}
    return {
        "verdict": "drift" if drifted else "no_drift",
        "reason": None,
        "driftedFeatures": features,
        "driftedShare": round(len(features) / 9, 4),
        "threshold": {"psi": 0.2, "share": 0.5},
        "rowsProfiled": 500,
        "top": [{"feature": feature, "psi": psi, "jsDistance": js} for feature, psi, js in top],
        "prediction": prediction,
        "report": {"container": "predictions", "name": drift_report_name(name)},
    }


def example_jobs() -> dict[str, tuple[EventType, Job]]:
    """Each example's file name stem (its event type, or `<type>.<variant>`) -> the type and the ledger row."""
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
        drift=drift_column(_drift_summary(submitted.name, drifted=False)),
    )
    drifted = replace(completed, drift=drift_column(_drift_summary(submitted.name, drifted=True)))
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
        EventType.JOB_SUBMITTED.value: (EventType.JOB_SUBMITTED, submitted),
        # The file's features were like the reference's (no reference at all: "drift": null).
        EventType.JOB_COMPLETED.value: (EventType.JOB_COMPLETED, completed),
        # They drifted: DriftDetected, then JobCompleted with the same summary.
        f"{EventType.JOB_COMPLETED.value}.drift": (EventType.JOB_COMPLETED, drifted),
        EventType.DRIFT_DETECTED.value: (EventType.DRIFT_DETECTED, drifted),
        EventType.JOB_FAILED.value: (EventType.JOB_FAILED, failed),
        EventType.INPUT_REJECTED.value: (EventType.INPUT_REJECTED, rejected),
    }


def render() -> dict[str, str]:
    files = {}
    for stem, (event_type, job) in example_jobs().items():
        moment = job.finished_at or job.updated_at
        event = cloudevent_json(build_event(job, event_type, SOURCE, moment))
        files[f"{stem}.json"] = json.dumps(event, indent=2) + "\n"
    return files


def _written(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def main(argv: list[str]) -> int:
    files = render()
    if "--check" in argv:
        stale = [name for name, text in files.items() if _written(EXAMPLES / name) != text]
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
