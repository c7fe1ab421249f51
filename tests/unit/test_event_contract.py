"""The documented event contract matches what the code builds."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from docs.events.make_examples import SOURCE, example_jobs
from shared.core.completion import DRIFT_MAX_CHARS, drift_column
from shared.events import build_event, cloudevent_json
from shared.models import EventType, Job
from tests.eventschemas import SCHEMAS, assert_valid

EXAMPLES = sorted((SCHEMAS / "examples").glob("*.json"))
NOW = datetime(2026, 11, 22, 9, 8, tzinfo=UTC)


def example_type(path: Path) -> str:
    """`DropScore.JobCompleted.drift.json` is an example of DropScore.JobCompleted (a variant of it)."""
    return ".".join(path.name.split(".")[:2])


def test_every_event_type_has_a_schema_and_an_example() -> None:
    schema_types = {p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json")}
    example_types = {example_type(p) for p in EXAMPLES}
    assert schema_types == example_types == {event_type.value for event_type in EventType}


def test_the_examples_show_completed_without_and_with_drift() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"DropScore.JobCompleted.json", "DropScore.JobCompleted.drift.json", "DropScore.DriftDetected.json"} <= names
    plain = json.loads((SCHEMAS / "examples" / "DropScore.JobCompleted.json").read_text())
    drifted = json.loads((SCHEMAS / "examples" / "DropScore.JobCompleted.drift.json").read_text())
    detected = json.loads((SCHEMAS / "examples" / "DropScore.DriftDetected.json").read_text())
    assert plain["data"]["drift"]["verdict"] == "no_drift"
    assert drifted["data"]["drift"] == detected["data"]["drift"]
    assert detected["data"]["drift"]["verdict"] == "drift"
    assert detected["data"]["output"] == drifted["data"]["output"]
    assert detected["data"]["input"]["rows"] == drifted["data"]["input"]["rows"]
    assert detected["id"].removesuffix("DriftDetected") == drifted["id"].removesuffix("JobCompleted")


def completed_job(*, drift: str) -> Job:
    _, job = example_jobs()[EventType.JOB_COMPLETED.value]
    return replace(job, drift=drift)


@pytest.mark.parametrize("event_type", list(EventType), ids=lambda t: t.value)
def test_each_type_built_from_each_example_row_validates(event_type: EventType) -> None:
    """Every type the builder makes validates against its schema, from every example row that may send it."""
    rows = [job for kind, job in example_jobs().values() if kind == event_type]
    assert rows
    for job in rows:
        assert_valid(cloudevent_json(build_event(job, event_type, SOURCE, job.updated_at)))


def test_job_completed_without_a_reference_says_drift_null() -> None:
    event = cloudevent_json(build_event(completed_job(drift=""), EventType.JOB_COMPLETED, SOURCE, NOW))
    assert "drift" in event["data"]
    assert event["data"]["drift"] is None
    assert_valid(event)


def test_drift_detected_never_validates_without_a_drift_verdict() -> None:
    _, drifted = example_jobs()[EventType.DRIFT_DETECTED.value]
    event = cloudevent_json(build_event(drifted, EventType.DRIFT_DETECTED, SOURCE, NOW))
    assert_valid(event)
    event["data"]["drift"] = None
    with pytest.raises(AssertionError):
        assert_valid(event)
    event["data"]["drift"] = {**json.loads(drifted.drift), "verdict": "no_drift"}
    with pytest.raises(AssertionError):
        assert_valid(event)


def test_a_summary_cut_to_fit_the_ledger_still_validates() -> None:
    _, drifted = example_jobs()[EventType.DRIFT_DETECTED.value]
    summary = json.loads(drifted.drift)
    summary["driftedFeatures"] = [f"feature_{index:05d}_{'x' * 40}" for index in range(2000)]
    job = replace(drifted, drift=drift_column(summary))
    assert len(job.drift) <= DRIFT_MAX_CHARS
    for event_type in (EventType.DRIFT_DETECTED, EventType.JOB_COMPLETED):
        event = cloudevent_json(build_event(job, event_type, SOURCE, NOW))
        assert event["data"]["drift"]["driftedFeaturesOmitted"] > 0
        assert_valid(event)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_validate_against_their_schema(path: Path) -> None:
    assert_valid(json.loads(path.read_text()))


def test_examples_are_what_the_code_builds_today() -> None:
    script = SCHEMAS / "make_examples.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_query_string_in_a_url_breaks_the_schema() -> None:
    event = json.loads((SCHEMAS / "examples" / "DropScore.JobCompleted.json").read_text())
    event["data"]["output"]["url"] += "?sv=2024&sig=abc"
    with pytest.raises(AssertionError):
        assert_valid(event)
