"""Drift on the local stack: `up` uploads the demo model's reference (its training data's profile) and names it in
DRIFT_REFERENCE; the demo file scores with no drift, the shifted one (heavier stones, other cuts) drifts and a
DropScore.DriftDetected event announces it. Both files go in at once, on the session's stack."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from localdev.demo.model import REFERENCE_FILE
from localdev.eventgrid.eventlog import read_records
from localdev.stack_demo import SHIFTED_CSV
from localdev.stack_parts import DEMO_REFERENCE
from tests.e2e.support import DEMO_CSV, StackClient, unique_name
from tests.eventschemas import assert_valid

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COMPLETED = "DropScore.JobCompleted"
DRIFT_DETECTED = "DropScore.DriftDetected"
# What localdev/demo/data.py shifts: the weight (and so the size) and the cut; the rest is drawn as in training.
SHIFTED_FEATURES = {"carat", "cut", "x", "y", "z"}
FEATURES = 9


@pytest.fixture(scope="module")
def dropped(stack: StackClient) -> dict[str, str]:
    """The demo file and the shifted file, uploaded together (their jobs run side by side)."""
    names = {"demo": unique_name("drift-demo"), "shifted": unique_name("drift-shifted")}
    stack.upload(names["demo"], DEMO_CSV.read_bytes())
    stack.upload(names["shifted"], SHIFTED_CSV.read_bytes())
    return names


def _report(stack: StackClient, drift: dict[str, Any], name: str) -> dict[str, Any]:
    """The `<input>.drift.json` the summary names, beside the predictions."""
    output = stack.env["OUTPUT_CONTAINER"]
    assert drift["report"] == {"container": output, "name": f"{name}.drift.json"}
    assert stack.read_blob(output, f"{name}.predictions.csv") is not None
    raw = stack.read_blob(output, f"{name}.drift.json")
    assert raw is not None, f"no {output}/{name}.drift.json"
    report: dict[str, Any] = json.loads(raw)
    return report


def _received(stack: StackClient, event: dict[str, Any]) -> datetime:
    """When the Event Grid emulator accepted the event (its first copy)."""
    records = read_records(Path(stack.env["EVENTS_LOG"]))
    moment = next(record["receivedAt"] for record in records if record["event"]["id"] == event["id"])
    return datetime.fromisoformat(str(moment).replace("Z", "+00:00"))


def test_up_uploads_the_demo_models_reference_and_names_it(stack: StackClient, models_dir: Path) -> None:
    assert stack.env["DRIFT_REFERENCE"] == DEMO_REFERENCE
    settings = json.loads(stack.paths.local_settings.read_text())["Values"]
    assert settings["DRIFT_REFERENCE"] == DEMO_REFERENCE
    container, name = DEMO_REFERENCE.split("/", 1)
    assert stack.read_blob(container, name) == (models_dir / REFERENCE_FILE).read_bytes()


def test_the_demo_file_scores_with_no_drift(stack: StackClient, dropped: dict[str, str]) -> None:
    name = dropped["demo"]

    [completed] = stack.wait_event(COMPLETED, name, timeout=60)

    assert_valid(completed)
    drift = completed["data"]["drift"]
    assert drift["verdict"] == "no_drift", drift
    assert (drift["driftedFeatures"], drift["rowsProfiled"], drift["reason"]) == ([], 300, None)
    assert all(top["psi"] < drift["threshold"]["psi"] for top in drift["top"]), drift["top"]
    report = _report(stack, drift, name)
    assert report["verdict"] == "no_drift"
    assert report["rows"] == {"scored": 300, "profiled": 300, "sampled": False}
    assert sorted(feature["feature"] for feature in report["features"]) == sorted(
        DEMO_CSV.read_text().splitlines()[0].split(",")
    )
    assert report["reference"]["container"] + "/" + report["reference"]["name"] == DEMO_REFERENCE
    assert stack.events(DRIFT_DETECTED, name) == []


def test_the_shifted_file_drifts_and_drift_detected_announces_it(stack: StackClient, dropped: dict[str, str]) -> None:
    name = dropped["shifted"]

    [completed] = stack.wait_event(COMPLETED, name, timeout=60)

    # Published before JobCompleted (or in the same batch): a finalized job has every event out.
    [detected] = stack.events(DRIFT_DETECTED, name)
    assert_valid(detected)
    assert_valid(completed)
    assert _received(stack, detected) <= _received(stack, completed)
    drift = detected["data"]["drift"]
    assert drift["verdict"] == "drift", drift
    assert set(drift["driftedFeatures"]) == SHIFTED_FEATURES
    assert drift["driftedShare"] == pytest.approx(len(SHIFTED_FEATURES) / FEATURES)
    assert drift["prediction"]["drifted"] is True  # heavier stones cost more
    assert completed["data"]["drift"] == drift
    for key in ("jobId", "attempt", "input", "output"):
        assert detected["data"][key] == completed["data"][key], key
    assert detected["subject"] == completed["subject"]
    report = _report(stack, drift, name)
    assert report["verdict"] == "drift"
    assert sorted(report["driftedFeatures"]) == sorted(SHIFTED_FEATURES)
