"""Drift during completion, against the fakes: the report beside the predictions, data.drift, DriftDetected,
the metrics, and every way a reference can be unusable without failing the job."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable

import pytest

from shared.drift.build import build_profile
from shared.drift.profile import profile_to_json
from shared.events import cloudevent_json
from shared.models import EventType, InvokeRequest, JobState, RemoteStatus
from shared.usecases import complete, drift, poll
from tests.eventschemas import assert_valid
from tests.fakes import SimulatedCrash, World, make_world, write_predictions
from tests.unit.test_usecases import drop, only_job, run_completions

REFERENCE = "references/model.json"
CUTS = ["Ideal", "Premium", "Good", "Fair"]


def rows_csv(count: int, *, seed: int, carat: tuple[float, float] = (0.2, 1.2), cuts: list[str] = CUTS) -> bytes:
    pick = random.Random(seed)
    lines = [f"{pick.uniform(*carat):.3f},{pick.choice(cuts)}" for _ in range(count)]
    return ("carat,cut\n" + "\n".join(lines) + "\n").encode()


@pytest.fixture(autouse=True)
def _fresh_warnings() -> None:
    drift._warned.clear()


@pytest.fixture
def reference_bytes(tmp_path) -> bytes:
    training = tmp_path / "training.csv"
    pick = random.Random(1)
    lines = [f"{pick.uniform(0.2, 1.2):.3f},{pick.choice(CUTS)},{pick.uniform(300, 900):.1f}" for _ in range(2000)]
    training.write_text("carat,cut,price\n" + "\n".join(lines) + "\n")
    profile = build_profile(training, prediction_column="price")
    return json.dumps(profile_to_json(profile)).encode()


def scored(world: World, data: bytes, *, name: str = "batch/day1.csv", predictions: list[str] | None = None) -> str:
    """Drop `data`, let Azure ML complete it, run the completion; the job id."""
    rows = data.count(b"\n") - 1
    values = predictions if predictions is not None else [f"{500 + index % 300}" for index in range(rows)]
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, values)
    before = set(world.store.rows)
    drop(world, name=name, data=data)
    (job_id,) = set(world.store.rows) - before
    poll.poll(world.deps)
    run_completions(world)
    return job_id


def report_of(world: World, name: str = "batch/day1.csv") -> dict:
    return json.loads(world.blobs.data("predictions", f"{name}.drift.json"))


def with_reference(content: bytes | None, **settings: str) -> World:
    world = make_world(DRIFT_REFERENCE=REFERENCE, **settings)
    if content is not None:
        world.blobs.put("references", "model.json", content)
    return world


def test_no_reference_means_no_drift_work_and_a_null_in_the_event() -> None:
    world = make_world()
    job_id = scored(world, rows_csv(50, seed=2))
    assert world.store.rows[job_id].state is JobState.COMPLETED
    assert world.blobs.properties("predictions", "batch/day1.csv.drift.json") is None
    completed = world.events.published[-1]
    assert completed.type == EventType.JOB_COMPLETED.value
    assert completed.data["drift"] is None
    assert world.metrics.recorded == []


def test_a_file_like_the_training_data_gets_a_report_and_no_drift(reference_bytes: bytes) -> None:
    world = with_reference(reference_bytes)
    job_id = scored(world, rows_csv(400, seed=3))
    report = report_of(world)
    assert report["verdict"] == "no_drift"
    assert report["jobId"] == job_id
    assert report["rows"] == {"scored": 400, "profiled": 400, "sampled": False}
    assert [feature["feature"] for feature in report["features"]] == ["carat", "cut"]
    assert report["prediction"]["feature"] == "prediction"
    assert report["reference"]["container"] == "references"
    summary = json.loads(world.store.rows[job_id].drift)
    assert summary["verdict"] == "no_drift"
    assert summary["report"] == {"container": "predictions", "name": "batch/day1.csv.drift.json"}
    assert world.events.types() == [EventType.JOB_SUBMITTED.value, EventType.JOB_COMPLETED.value]
    assert world.events.published[-1].data["drift"] == summary
    ((recorded, job, route),) = world.metrics.recorded
    assert (recorded["verdict"], job, route) == ("no_drift", job_id, "default")
    assert [feature["feature"] for feature in recorded["features"]] == ["carat", "cut"]
    for event in world.events.published:
        assert_valid(cloudevent_json(event))


def test_a_shifted_file_publishes_drift_detected_before_job_completed(reference_bytes: bytes) -> None:
    world = with_reference(reference_bytes)
    job_id = scored(world, rows_csv(400, seed=4, carat=(1.5, 3.0), cuts=["Fair"]))
    assert world.events.types() == [
        EventType.JOB_SUBMITTED.value,
        EventType.DRIFT_DETECTED.value,
        EventType.JOB_COMPLETED.value,
    ]
    detected = world.events.published[1]
    assert detected.data["drift"]["verdict"] == "drift"
    assert sorted(detected.data["drift"]["driftedFeatures"]) == ["carat", "cut"]
    assert detected.data["jobId"] == job_id
    assert report_of(world)["verdict"] == "drift"
    for event in world.events.published:
        assert_valid(cloudevent_json(event))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "no reference profile at references/model.json"),
        (b"{not json", "not JSON"),
        (b'{"format": "something else"}', "not a dropscore profile"),
    ],
)
def test_an_unusable_reference_never_fails_the_job(
    content: bytes | None, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    world = with_reference(content)
    with caplog.at_level(logging.WARNING, logger="dropscore"):
        job_id = scored(world, rows_csv(20, seed=5))
        scored_again = scored(world, rows_csv(20, seed=6), name="batch/day2.csv")
    assert world.store.rows[job_id].state is JobState.COMPLETED
    assert world.store.rows[scored_again].state is JobState.COMPLETED
    report = report_of(world)
    assert report["verdict"] == "not_computed"
    assert reason in report["reason"]
    assert world.events.published[-1].data["drift"]["verdict"] == "not_computed"
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING and "drift:" in record.message]
    assert len(warnings) == 1  # once per reference version, not once per job


def test_a_reference_of_another_schema_says_which_columns_were_not_compared(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    training = tmp_path / "other.csv"
    training.write_text("carat,color\n" + "\n".join(f"{0.2 + i / 100},D" for i in range(100)) + "\n")
    world = with_reference(json.dumps(profile_to_json(build_profile(training))).encode())
    with caplog.at_level(logging.WARNING, logger="dropscore"):
        scored(world, rows_csv(50, seed=7))
    report = report_of(world)
    assert {"column": "color", "reason": "not in the input"} in report["notCompared"]
    assert {"column": "cut", "reason": "not in the reference"} in report["notCompared"]
    assert [feature["feature"] for feature in report["features"]] == ["carat"]
    assert any("not compared: color (not in the input)" in record.message for record in caplog.records)


def test_text_in_a_numeric_column_is_counted_not_a_crash(reference_bytes: bytes) -> None:
    world = with_reference(reference_bytes)
    data = b"carat,cut\n0.5,Ideal\nheavy,Good\n,Fair\n0.7,Premium\n"
    job_id = scored(world, data)
    assert world.store.rows[job_id].state is JobState.COMPLETED
    (carat,) = [feature for feature in report_of(world)["features"] if feature["feature"] == "carat"]
    assert carat["invalid"] == 1
    assert carat["nullShare"]["current"] == pytest.approx(1 / 4)


def test_a_route_can_turn_drift_off(reference_bytes: bytes) -> None:
    routes = [{"name": "raw", "prefix": "raw/", "endpointUri": world_uri(), "driftReference": ""}]
    world = with_reference(reference_bytes, ROUTES=json.dumps(routes))
    raw_endpoint = world._scorer(world_uri())
    raw_endpoint.script = [RemoteStatus.COMPLETED]
    raw_endpoint.on_complete = write_predictions(world, ["500"] * 30)
    scored(world, rows_csv(30, seed=8), name="raw/day1.csv")
    assert world.blobs.properties("predictions", "raw/day1.csv.drift.json") is None
    assert world.events.published[-1].data["drift"] is None


def world_uri() -> str:
    return "https://raw-ep.westeurope.inference.ml.azure.com/jobs"


def shuffled_predictions(world: World, count: int) -> Callable[[InvokeRequest], None]:
    """Azure ML's mini-batches out of row order: the join falls back to an index and runs a second time."""

    def hook(request: InvokeRequest) -> None:
        path = request.output_uri.split("/paths/", 1)[1]
        rows = list(range(count))
        rows.reverse()
        lines = "".join(f"{index},{500 + index},input.csv\n" for index in rows)
        world.blobs.put(world.settings.aml_output_container, path, lines.encode())

    return hook


def test_a_second_join_through_the_index_profiles_each_row_once(reference_bytes: bytes) -> None:
    world = with_reference(reference_bytes)
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = shuffled_predictions(world, 300)
    drop(world, data=rows_csv(300, seed=9))
    poll.poll(world.deps)
    run_completions(world)
    report = report_of(world)
    assert report["rows"]["profiled"] == 300
    assert sum(report["features"][0]["bins"]["current"]) == 300


def test_a_crash_after_the_report_rewrites_it_and_announces_drift_once(reference_bytes: bytes) -> None:
    world = with_reference(reference_bytes)
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["500"] * 200)
    drop(world, data=rows_csv(200, seed=10, carat=(2.0, 3.0), cuts=["Fair"]))
    job_id = only_job(world).job_id
    poll.poll(world.deps)
    # the worker dies after the report and the archive move, before the ledger says Completed
    world.store.crash_on_update = lambda job: job.state is JobState.COMPLETED
    with pytest.raises(SimulatedCrash):
        run_completions(world)
    assert report_of(world)["verdict"] == "drift"
    assert world.events.types() == [EventType.JOB_SUBMITTED.value]
    world.store.crash_on_update = None
    complete.complete(world.deps, job_id)
    assert world.store.rows[job_id].state is JobState.COMPLETED
    assert world.events.types().count(EventType.DRIFT_DETECTED.value) == 1
