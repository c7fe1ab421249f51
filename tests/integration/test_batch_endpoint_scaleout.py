"""Scale-out: a folder of part files scored in parallel (miniBatchSize, instanceCount, the worker pool),
the append_row merge in mini-batch completion order, the per-row scoring cost for benchmarks, and the
Azure ML run events published to an Event Grid topic (with the faults that drop or delay them)."""

from __future__ import annotations

import io
import itertools
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
import pytest

from localdev.azurite import Azurite
from localdev.batch_endpoint.__main__ import EVENTS_KEY_ENV, main
from localdev.batch_endpoint.config import WORKSPACE_ID
from localdev.batch_endpoint.runevents import RUN_COMPLETED, RUN_STATUS_CHANGED, RUN_TYPE, experiment_id
from localdev.demo.data import scoring_frame
from localdev.stack_procs import group_members
from tests.integration.batch_endpoint_support import (
    Emulator,
    demo_models,
    get_blob,
    model_body,
    put_blob,
    running_emulator,
    unique,
)
from tests.integration.eventgrid_support import TOPIC_KEY, EmulatorRunner, Webhook, wait_for
from tests.integration.eventgrid_support import Emulator as Topic

pytestmark = pytest.mark.integration

WORKERS = 3
ROW_COST_US = 2_500  # 2.5 ms a row: 200 rows cost 0.5 s, far more than scoring them
ENDPOINT = "local-endpoint"
WALK = ["Queued", "Preparing", "Running", "Finalizing", "Completed"]


@pytest.fixture(scope="module")
def mlflow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, _ = demo_models(tmp_path_factory.getbasetemp())
    return model


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture(scope="module")
def topic(webhook: Webhook, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topic]:
    """The local Event Grid emulator as the workspace's system topic: Event Grid schema in and out."""
    runner = EmulatorRunner(tmp_path_factory.mktemp("aml-topic"))
    try:
        yield runner.start([f"aml-runs={webhook.url}/aml"], name="aml", input_schema="eventgrid")
    finally:
        runner.stop_all()


@pytest.fixture(scope="module")
def emulator(
    azurite: Azurite, mlflow_model: Path, topic: Topic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Emulator]:
    with running_emulator(
        azurite,
        tmp_path_factory.mktemp("scaleout"),
        {"diamonds": mlflow_model},
        job_seconds=0.2,
        workers=WORKERS,
        row_cost_us=ROW_COST_US,
        events_topic=topic.endpoint,
        events_key=TOPIC_KEY,
    ) as running:
        running.wait_warm()
        yield running


@pytest.fixture(autouse=True)
def no_faults_left_behind(emulator: Emulator) -> Iterator[None]:
    emulator.set_faults("")
    yield
    emulator.set_faults("")


def put_parts(azurite: Azurite, folder: str, sizes: list[int]) -> dict[str, pd.DataFrame]:
    parts = {}
    for index, rows in enumerate(sizes):
        name = f"part-{index:03d}.csv"
        frame = scoring_frame(rows, seed=100 + index)
        put_blob(azurite, "incoming", f"{folder}/{name}", frame.to_csv(index=False).encode())
        parts[name] = frame
    return parts


def folder_job(folder: str, **overrides: Any) -> dict[str, Any]:
    body = model_body(
        f"azureml://datastores/inputs/paths/{folder}",
        f"azureml://datastores/workspaceblobstore/paths/{folder}/predictions.csv",
        input_type="UriFolder",
    )
    body["properties"].update(overrides)
    return body


def run_job(emulator: Emulator, body: dict[str, Any]) -> dict[str, Any]:
    job = emulator.run(body, timeout=120)
    assert job["properties"]["status"] == "Completed", job["properties"].get("error")
    return job


def predictions(azurite: Azurite, folder: str) -> pd.DataFrame:
    data = get_blob(azurite, "azureml-blobstore", f"{folder}/predictions.csv")
    return pd.read_csv(io.BytesIO(data), names=["row", "prediction", "file"], header=None)


def blocks(frame: pd.DataFrame) -> list[str]:
    """The file names in the order their runs of lines appear (a file split in two would show twice)."""
    return list(frame["file"].loc[frame["file"].shift() != frame["file"]])


def max_overlap(trace: list[dict[str, Any]]) -> int:
    """The most mini-batches that were running at one instant."""
    return max(sum(1 for other in trace if other["started"] <= entry["started"] < other["finished"]) for entry in trace)


# ---- folder inputs in parallel, the completion-order merge, the row cost ---------------------------


def test_parts_run_side_by_side_one_per_worker_and_merge_in_completion_order(
    emulator: Emulator, azurite: Azurite, mlflow_model: Path
) -> None:
    folder = unique("parallel")
    # The first part is the longest, the second the shortest: they finish in the order 1, 2, 0.
    parts = put_parts(azurite, folder, [300, 100, 200])
    job = run_job(emulator, folder_job(folder, miniBatchSize=1, compute={"instanceCount": WORKERS}))
    assert job["properties"]["miniBatchSize"] == 1
    assert job["properties"]["compute"]["instanceCount"] == WORKERS

    trace = emulator.mini_batches(job["name"])
    assert sorted(entry["files"][0] for entry in trace) == sorted(parts)
    assert all(entry["ok"] and len(entry["files"]) == 1 for entry in trace)
    # A positive sign of parallel work: three worker processes, and every part started before any ended.
    assert len({entry["pid"] for entry in trace}) == WORKERS
    assert max(entry["started"] for entry in trace) < min(entry["finished"] for entry in trace)
    for entry in trace:
        assert entry["finished"] - entry["started"] >= entry["rows"] * ROW_COST_US / 1e6

    # The trace lists the attempts as they completed, and predictions.csv follows it, file by file.
    completed = [entry["files"][0] for entry in trace]
    assert [entry["finished"] for entry in trace] == sorted(entry["finished"] for entry in trace)
    assert completed == ["part-001.csv", "part-002.csv", "part-000.csv"]
    got = predictions(azurite, folder)
    assert blocks(got) == completed
    model = mlflow.pyfunc.load_model(str(mlflow_model))
    for name, frame in parts.items():
        lines = got[got["file"] == name]
        assert lines["row"].tolist() == list(range(len(frame)))
        assert lines["prediction"].tolist() == model.predict(frame).tolist()


def test_one_instance_with_one_process_scores_the_parts_one_after_another(emulator: Emulator, azurite: Azurite) -> None:
    folder = unique("serial")
    put_parts(azurite, folder, [60, 60, 60])
    job = run_job(emulator, folder_job(folder, miniBatchSize=1))
    trace = emulator.mini_batches(job["name"])
    assert [entry["files"] for entry in trace] == [["part-000.csv"], ["part-001.csv"], ["part-002.csv"]]
    assert max_overlap(trace) == 1
    assert all(earlier["finished"] <= later["started"] for earlier, later in itertools.pairwise(trace))
    assert blocks(predictions(azurite, folder)) == ["part-000.csv", "part-001.csv", "part-002.csv"]


def test_concurrency_is_capped_by_the_worker_pool(emulator: Emulator, azurite: Azurite) -> None:
    folder = unique("capped")
    put_parts(azurite, folder, [80, 80, 80, 80])
    # 2 instances x 2 processes = 4 wanted; the pool has 3 workers.
    job = run_job(
        emulator, folder_job(folder, miniBatchSize=1, compute={"instanceCount": 2}, maxConcurrencyPerInstance=2)
    )
    trace = emulator.mini_batches(job["name"])
    assert len(trace) == 4
    assert max_overlap(trace) == WORKERS


def test_the_deployment_mini_batch_size_applies_without_an_override(emulator: Emulator, azurite: Azurite) -> None:
    folder = unique("default-size")
    put_parts(azurite, folder, [10, 10, 10])
    job = run_job(emulator, folder_job(folder, compute={"instanceCount": WORKERS}))
    # Azure's default mini_batch_size is 10 files: one mini-batch for the three parts, in folder order.
    [entry] = emulator.mini_batches(job["name"])
    assert entry["files"] == ["part-000.csv", "part-001.csv", "part-002.csv"]
    got = predictions(azurite, folder)
    assert blocks(got) == entry["files"]
    assert got["row"].tolist() == list(range(10)) * 3


def test_row_cost_makes_a_job_take_at_least_rows_times_cost(emulator: Emulator, azurite: Azurite) -> None:
    name = unique("cost")
    rows = 400
    put_blob(azurite, "incoming", f"{name}.csv", scoring_frame(rows, seed=5).to_csv(index=False).encode())
    body = model_body(
        f"azureml://datastores/inputs/paths/{name}.csv", f"azureml://datastores/workspaceblobstore/paths/{name}/p.csv"
    )
    started = time.monotonic()
    job = run_job(emulator, body)
    elapsed = time.monotonic() - started
    cost = rows * ROW_COST_US / 1e6
    assert elapsed >= cost
    [entry] = emulator.mini_batches(job["name"])
    assert entry["rows"] == rows
    assert entry["finished"] - entry["started"] >= cost
    assert emulator.health()["rowCostUs"] == ROW_COST_US


# ---- Azure ML run events ---------------------------------------------------------------------------


def delivered(webhook: Webhook, run_id: str) -> list[dict[str, Any]]:
    events = [event for received in webhook.notifications("/aml") for event in received.json()]
    return [event for event in events if event["data"]["runId"] == run_id]


def accepted(topic: Topic, run_id: str) -> list[dict[str, Any]]:
    """The events as the topic accepted them (what the emulator published)."""
    events = [record["event"] for record in topic.logged_events()]
    return [event for event in events if event["data"].get("runId") == run_id]


def settled(emulator: Emulator, run_id: str, count: int) -> list[dict[str, Any]]:
    """The emulator's record of the run's events once `count` of them are no longer pending."""

    def done() -> list[dict[str, Any]] | None:
        events = emulator.run_events(run_id)["events"]
        finished = [event for event in events if event["outcome"] != "pending"]
        return events if len(finished) == count == len(events) else None

    return list(wait_for(done, timeout=30, what=f"{count} settled events of {run_id}"))


def by_time(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(events, key=lambda event: event["eventTime"])


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_a_job_publishes_run_status_changed_for_each_status_and_run_completed(
    emulator: Emulator, azurite: Azurite, topic: Topic, webhook: Webhook
) -> None:
    folder = unique("events")
    put_parts(azurite, folder, [20, 20])
    body = folder_job(folder, miniBatchSize=1, tags={"source": "dropscore"}, properties={"part": "2"})
    name = run_job(emulator, body)["name"]
    events = wait_for(
        lambda: (got := delivered(webhook, name)) and len(got) == len(WALK) + 1 and got,
        timeout=30,
        what="the run's events at the webhook",
    )
    changes = by_time([event for event in events if event["eventType"] == RUN_STATUS_CHANGED])
    assert [event["data"]["runStatus"] for event in changes] == WALK
    [completed] = [event for event in events if event["eventType"] == RUN_COMPLETED]
    assert completed["eventTime"] == changes[-1]["eventTime"]
    assert len({event["id"] for event in events}) == len(events)

    exp_id = experiment_id(ENDPOINT)
    for event in events:
        assert event["subject"] == f"experiments/{exp_id}/runs/{name}"
        assert event["dataVersion"] == "2"
        seconds(event["eventTime"])  # an ISO 8601 time
        data = {key: value for key, value in event["data"].items() if key != "runStatus"}
        assert data == {
            "experimentId": exp_id,
            "experimentName": ENDPOINT,
            "runId": name,
            "runType": RUN_TYPE,
            "runTags": {"source": "dropscore"},
            "runProperties": {"part": "2"},
        }
    assert "runStatus" not in completed["data"]
    # As published: `topic` is the workspace (the delivery above carries the local topic's own id).
    assert {event["topic"] for event in accepted(topic, name)} == {WORKSPACE_ID}
    assert len(accepted(topic, name)) == len(events)
    assert {event["outcome"] for event in settled(emulator, name, len(events))} == {"published"}


def test_a_failed_job_publishes_failed_and_no_run_completed(emulator: Emulator, azurite: Azurite, topic: Topic) -> None:
    folder = unique("events-fail")
    put_parts(azurite, folder, [5])
    emulator.set_faults(f"fail_match={folder}")
    job = emulator.run(folder_job(folder), timeout=60)
    assert job["properties"]["status"] == "Failed"
    settled(emulator, job["name"], 4)
    published = by_time(accepted(topic, job["name"]))
    assert [(event["eventType"], event["data"]["runStatus"]) for event in published] == [
        (RUN_STATUS_CHANGED, status) for status in ["Queued", "Preparing", "Running", "Failed"]
    ]


def test_dropped_events_never_reach_the_topic_and_the_job_is_unaffected(
    emulator: Emulator, azurite: Azurite, topic: Topic
) -> None:
    folder = unique("events-drop")
    put_parts(azurite, folder, [5])
    emulator.set_faults("events_drop=1")
    name = run_job(emulator, folder_job(folder))["name"]
    events = settled(emulator, name, len(WALK) + 1)
    assert {event["outcome"] for event in events} == {"dropped"}
    assert emulator.faults()["injected"]["event dropped"] == len(WALK) + 1
    assert accepted(topic, name) == []
    assert predictions(azurite, folder)["row"].tolist() == list(range(5))


def test_a_fraction_of_events_is_dropped_the_rest_arrive(emulator: Emulator, azurite: Azurite, topic: Topic) -> None:
    folder = unique("events-some")
    put_parts(azurite, folder, [5])
    emulator.set_faults("events_drop=0.5,seed=7")
    name = run_job(emulator, folder_job(folder))["name"]
    events = settled(emulator, name, len(WALK) + 1)
    outcomes = {event["id"]: event["outcome"] for event in events}
    assert set(outcomes.values()) == {"dropped", "published"}
    assert {event["id"] for event in accepted(topic, name)} == {i for i, o in outcomes.items() if o == "published"}


def test_delayed_events_reach_the_topic_late(emulator: Emulator, azurite: Azurite, topic: Topic) -> None:
    folder = unique("events-late")
    put_parts(azurite, folder, [5])
    emulator.set_faults("events_delay_seconds=1.5")
    name = run_job(emulator, folder_job(folder))["name"]
    settled(emulator, name, len(WALK) + 1)
    records = [record for record in topic.logged_events() if record["event"]["data"].get("runId") == name]
    assert len(records) == len(WALK) + 1
    for record in records:
        assert seconds(record["receivedAt"]) - seconds(record["event"]["eventTime"]) >= 1.5


def test_the_topic_key_travels_in_the_environment_only(emulator: Emulator) -> None:
    assert emulator.health()["eventsTopic"].endswith("/api/events")
    for pid in [emulator.service.pid, *group_members(emulator.service.pid)]:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert TOPIC_KEY not in command_line


def test_a_refused_publish_is_logged_and_never_fails_the_job(
    azurite: Azurite, mlflow_model: Path, topic: Topic, tmp_path: Path
) -> None:
    with running_emulator(
        azurite,
        tmp_path,
        {"diamonds": mlflow_model},
        job_seconds=0,
        workers=1,
        events_topic=topic.endpoint,
        events_key="not-the-topic-key",
    ) as wrong_key:
        folder = unique("events-refused")
        put_parts(azurite, folder, [5])
        name = run_job(wrong_key, folder_job(folder))["name"]
        events = settled(wrong_key, name, len(WALK) + 1)
        assert {event["outcome"] for event in events} == {"failed"}
        assert accepted(topic, name) == []
        assert predictions(azurite, folder)["row"].tolist() == list(range(5))
    log = next(tmp_path.glob("emulator-*.log")).read_text()
    assert "could not publish" in log
    assert "HTTP 401" in log


def test_events_topic_without_its_key_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(EVENTS_KEY_ENV, raising=False)
    argv = ["serve", "--port", "1", "--token", "t", "--storage-connection-string", "x", "--datastore", "a=b"]
    assert main([*argv, "--events-topic", "http://127.0.0.1:1/api/events"]) == 2
    assert EVENTS_KEY_ENV in capsys.readouterr().err
