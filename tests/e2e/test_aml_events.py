"""Azure ML run events on the local stack: the aml-events topic (the workspace's system topic, emulated) ends a
job within seconds of Azure ML ending it, long before a poll tick would; with every run event lost, the poller's
backstop (AML_EVENTS_BACKSTOP_SECONDS) still ends it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from localdev.eventgrid.eventlog import read_records
from localdev.stack import StackOptions, down, load_stack, read_parts, start_part, stop_part, up
from localdev.stack_amlevents import SUBSCRIPTION
from localdev.stack_procs import group_members, processes_mentioning
from tests.e2e.support import StackClient, demo_rows, run_cli, unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COMPLETED = "DropScore.JobCompleted"
EVERY_MINUTE = "0 */1 * * * *"
EVERY_2_SECONDS = "*/2 * * * * *"
BACKSTOP_SECONDS = 10
# From Azure ML's Completed to the app's Scored through the event: delivery, one status call, one ledger write.
EVENT_LATENCY_LIMIT = timedelta(seconds=5)


def _start(directory: Path, models_dir: Path, **options: Any) -> StackOptions:
    stack_options = StackOptions(directory=directory, models_dir=models_dir, job_seconds=1.0, **options)
    up(stack_options, on_progress=lambda _text: None)
    return stack_options


def _stop(directory: Path) -> None:
    down(directory)
    assert processes_mentioning(str(directory)) == []


@pytest.fixture(scope="module")
def events_stack(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[StackOptions]:
    """Run events on (the default), and a poll tick only once a minute."""
    directory = Path(tmp_path_factory.mktemp("aml-events"))
    options = _start(directory, models_dir, app_settings={"POLL_SCHEDULE": EVERY_MINUTE})
    try:
        yield options
    finally:
        _stop(directory)


@pytest.fixture(scope="module")
def lost_events_stack(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[StackOptions]:
    """Every run event dropped by the batch endpoint emulator; a tick every 2 s, asking Azure ML every 10 s."""
    directory = Path(tmp_path_factory.mktemp("aml-events-lost"))
    settings = {"POLL_SCHEDULE": EVERY_2_SECONDS, "AML_EVENTS_BACKSTOP_SECONDS": str(BACKSTOP_SECONDS)}
    options = _start(directory, models_dir, app_settings=settings, faults="events_drop=1")
    try:
        yield options
    finally:
        _stop(directory)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _azure_ml_job(client: StackClient, name: str) -> dict[str, Any]:
    [job] = client.emulator_jobs(name)
    assert job["properties"]["status"] == "Completed"
    return job


def _run_events_published(client: StackClient, run_id: str) -> list[dict[str, Any]]:
    """What the batch endpoint emulator did with the run events of `run_id` (published, dropped, ...)."""
    base = client.env["BATCH_ENDPOINT_URI"].removesuffix("/jobs")
    response = requests.get(f"{base}/_emulator/events", params={"job": run_id}, timeout=10)
    response.raise_for_status()
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def _aml_topic(client: StackClient, route: str) -> dict[str, Any]:
    base = client.env["AML_EVENTS_TOPIC_ENDPOINT"].removesuffix("/api/events")
    response = requests.get(f"{base}/_emulator/{route}", timeout=10)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def _accepted_run_events(client: StackClient, run_id: str) -> list[dict[str, Any]]:
    return [
        record["event"]
        for record in read_records(Path(client.env["AML_EVENTS_LOG"]))
        if record["event"]["data"].get("runId") == run_id
    ]


def test_a_run_event_ends_the_job_seconds_after_azure_ml_does(events_stack: StackOptions) -> None:
    client = StackClient.load(events_stack.directory)
    stack = load_stack(events_stack.directory)
    assert json.loads(stack.paths.local_settings.read_text())["Values"]["AML_RUN_EVENTS"] == "on"
    name = unique_name("run-event")
    client.upload(name, demo_rows(12))

    [event] = client.wait_event(COMPLETED, name, timeout=30)

    assert event["data"]["state"] == "Completed"
    job = _azure_ml_job(client, name)
    azure_ml_done = _at(job["systemData"]["lastModifiedAt"])
    timings = event["data"]["timings"]
    seen_done = _at(timings["finishedAt"])
    assert timedelta(0) <= seen_done - azure_ml_done <= EVENT_LATENCY_LIMIT, (azure_ml_done, timings)
    # ... which only the event can explain: the tick runs once a minute, and with run events on it asks
    # Azure ML about a job only every AML_EVENTS_BACKSTOP_SECONDS (300 s).
    run_id = event["data"]["aml"]["jobName"]
    accepted = _accepted_run_events(client, run_id)
    [completed] = [e for e in accepted if e["data"].get("runStatus") == "Completed"]
    assert completed["topic"].endswith("/providers/Microsoft.MachineLearningServices/workspaces/local-ws")
    delivered = {d["eventId"] for d in _aml_topic(client, "deliveries")["finished"] if d["state"] == "Delivered"}
    assert completed["id"] in delivered  # and the dev host answered 200: aml_run_events succeeded
    # The subscription filters as infra's: the job's Queued/Running events (and RunCompleted) reach no one.
    assert {e["data"].get("runStatus") for e in accepted} >= {"Queued", "Running", "Completed"}
    assert [e["id"] for e in accepted if e["id"] in delivered] == [completed["id"]]


def test_the_aml_events_key_and_the_webhook_key_are_on_no_command_line(events_stack: StackOptions) -> None:
    client = StackClient.load(events_stack.directory)
    keys = json.loads(client.paths.keys_file.read_text())
    secrets = {
        "the aml-events topic key": client.env["AML_EVENTS_TOPIC_KEY"],
        "the eventgrid_extension key": keys["systemKeys"]["eventgrid_extension"],
    }
    pids = {pid for part in read_parts(client.paths) for pid in (part.pid, *group_members(part.pid))}
    for pid in sorted(pids):
        try:
            command_line = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue  # ended between the listing and the read
        for what, secret in secrets.items():
            assert secret not in command_line, f"{what} is in the command line of pid {pid}"
    subscription = _aml_topic(client, "health")["subscriptions"][0]
    assert subscription["url"].endswith("/runtime/webhooks/eventgrid")  # shown without its code=


def test_the_aml_events_topic_comes_back_on_its_endpoint_and_subscribed(events_stack: StackOptions) -> None:
    client = StackClient.load(events_stack.directory)
    before = stop_part(events_stack.directory, "aml-events")
    after = start_part(events_stack, "aml-events")

    assert after.pid != before.pid
    assert after.url == before.url == client.env["AML_EVENTS_TOPIC_ENDPOINT"]
    assert load_stack(events_stack.directory).part("aml-events").pid == after.pid  # recorded for `down`
    [subscription] = _aml_topic(client, "health")["subscriptions"]
    assert (subscription["name"], subscription["validated"]) == (SUBSCRIPTION, True)
    # ... and still ends jobs.
    name = unique_name("after-restart")
    client.upload(name, demo_rows(3))
    [event] = client.wait_event(COMPLETED, name, timeout=30)
    finished = _at(event["data"]["timings"]["finishedAt"])
    assert finished - _at(_azure_ml_job(client, name)["systemData"]["lastModifiedAt"]) <= EVENT_LATENCY_LIMIT


def test_with_every_run_event_lost_the_poller_backstop_ends_the_job(lost_events_stack: StackOptions) -> None:
    client = StackClient.load(lost_events_stack.directory)
    name = unique_name("events-lost")
    client.upload(name, demo_rows(7))

    [event] = client.wait_event(COMPLETED, name, timeout=45)

    assert event["data"]["state"] == "Completed"
    assert event["data"]["output"]["rows"] == 7
    timings = event["data"]["timings"]
    waited = _at(timings["finishedAt"]) - _at(timings["submittedAt"])
    # Not before the backstop was due (the job itself took about a second), and not much after: a tick every 2 s
    # (a loaded machine has delayed ticks and the completion by several seconds, hence the margin).
    assert timedelta(seconds=BACKSTOP_SECONDS) <= waited <= timedelta(seconds=BACKSTOP_SECONDS + 20), timings
    run_id = event["data"]["aml"]["jobName"]
    outcomes = {(e["runStatus"], e["outcome"]) for e in _run_events_published(client, run_id)}
    assert ("Completed", "dropped") in outcomes
    assert {outcome for _, outcome in outcomes} == {"dropped"}
    # The topic never got one, so aml_run_events never ran.
    assert _accepted_run_events(client, run_id) == []
    assert _aml_topic(client, "deliveries") == {"pending": [], "finished": []}


def test_no_aml_events_starts_no_topic_and_leaves_run_events_off(tmp_path: Path, models_dir: Path) -> None:
    directory = tmp_path / "stack"
    model = str(models_dir / "diamonds-mlflow")
    try:
        started = run_cli("up", "--dir", str(directory), "--model-dir", model, "--no-aml-events")
        assert started.returncode == 0, started.stderr
        names = [part.name for part in read_parts(StackClient.load(directory).paths)]
        assert names == ["azurite", "batch-endpoint", "eventgrid", "functions-host"]
        assert "aml-events" not in started.stdout
        values = json.loads((directory / "local.settings.json").read_text())["Values"]
        assert values.get("AML_RUN_EVENTS", "off") == "off"
        assert "AML_EVENTS_TOPIC_ENDPOINT" not in (directory / "stack.env").read_text()
    finally:
        stopped = run_cli("down", "--dir", str(directory))
        assert stopped.returncode == 0, stopped.stderr
        assert processes_mentioning(str(directory)) == []
