"""The app's Event Grid adapter (real azure-eventgrid SDK) publishing to the local Event Grid emulator.

Whole job lives run through the use cases (fakes for everything but the topic), and every event
that reaches the topic's log validates against its JSON Schema in docs/events/.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.credentials import AzureKeyCredential
from azure.eventgrid import EventGridPublisherClient

from shared.adapters.eventgrid import EventGridPublisher
from shared.drift.build import build_profile
from shared.drift.profile import profile_to_json
from shared.errors import ScoringAuthError
from shared.models import EventType, RemoteStatus
from shared.usecases import complete, intake, poll
from tests.eventschemas import assert_valid
from tests.fakes import World, make_world, write_predictions
from tests.integration.eventgrid_support import TOPIC_KEY, Emulator, EmulatorRunner, wait_for

pytestmark = pytest.mark.integration

CSV = b"carat,cut\n0.3,Ideal\n0.4,Good\n"


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[EmulatorRunner]:
    runner = EmulatorRunner(tmp_path)
    yield runner
    runner.stop_all()


def with_publisher(world: World, emulator: Emulator, schema: str) -> World:
    client = EventGridPublisherClient(emulator.endpoint, AzureKeyCredential(TOPIC_KEY))
    world.events = EventGridPublisher(client, schema=schema)  # type: ignore[assignment]
    return world


def drop(world: World, name: str, data: bytes = CSV) -> None:
    etag = world.blobs.put("incoming", name, data)
    intake.accept_blob(
        world.deps, container="incoming", name=name, size=len(data), etag=etag, url=world.blobs.url("incoming", name)
    )


def live_a_few_jobs(world: World) -> None:
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["101.5", "202"])
    drop(world, "good.csv")
    drop(world, "bad.csv", b"carat;cut\n0.3;Ideal\n")
    world.scoring.invoke_errors = [ScoringAuthError("HTTP 403. Grant AzureML Data Scientist")]
    drop(world, "denied.csv")
    poll.poll(world.deps)
    for job_id in world.queue.drain():
        complete.complete(world.deps, job_id)


def test_every_published_cloudevent_lands_in_the_log_and_validates(runner: EmulatorRunner) -> None:
    emulator = runner.start()
    world = with_publisher(make_world(EVENT_SOURCE="/dropscore/test"), emulator, "cloudevents")
    live_a_few_jobs(world)
    lines = wait_for(lambda: len(emulator.logged_events()) >= 4 and emulator.logged_events())
    logged = [line["event"] for line in lines]
    assert sorted(event["type"] for event in logged) == sorted(
        [
            EventType.JOB_SUBMITTED.value,
            EventType.JOB_COMPLETED.value,
            EventType.INPUT_REJECTED.value,
            EventType.JOB_FAILED.value,
        ]
    )
    for event in logged:
        assert_valid(event)
        assert event["source"] == "/dropscore/test"
    completed = next(e for e in logged if e["type"] == EventType.JOB_COMPLETED.value)
    assert completed["data"]["output"]["rows"] == 2
    assert completed["subject"] == "/blobServices/default/containers/incoming/blobs/good.csv"
    ids = [event["id"] for event in logged]
    assert len(set(ids)) == len(ids)


def test_a_drifted_file_publishes_drift_detected_and_job_completed_both_valid(
    runner: EmulatorRunner, tmp_path: Path
) -> None:
    pick = random.Random(7)
    training = tmp_path / "training.csv"
    rows = [f"{pick.uniform(0.2, 1.2):.3f},{pick.choice(['Ideal', 'Good', 'Fair'])}" for _ in range(1000)]
    training.write_text("carat,cut\n" + "\n".join(rows) + "\n")
    emulator = runner.start()
    world = with_publisher(make_world(DRIFT_REFERENCE="references/model.json"), emulator, "cloudevents")
    world.blobs.put("references", "model.json", json.dumps(profile_to_json(build_profile(training))).encode())
    shifted = [f"{pick.uniform(2.0, 3.0):.3f},Fair" for _ in range(200)]
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["1"] * len(shifted))
    drop(world, "shifted.csv", ("carat,cut\n" + "\n".join(shifted) + "\n").encode())
    poll.poll(world.deps)
    for job_id in world.queue.drain():
        complete.complete(world.deps, job_id)
    lines = wait_for(lambda: len(emulator.logged_events()) >= 3 and emulator.logged_events())
    logged = [line["event"] for line in lines]
    assert [event["type"] for event in logged] == [
        EventType.JOB_SUBMITTED.value,
        EventType.DRIFT_DETECTED.value,
        EventType.JOB_COMPLETED.value,
    ]
    for event in logged:
        assert_valid(event)
    detected, completed = logged[1], logged[2]
    assert detected["data"]["drift"] == completed["data"]["drift"]
    assert detected["data"]["drift"]["verdict"] == "drift"
    assert detected["data"]["drift"]["report"] == {"container": "predictions", "name": "shifted.csv.drift.json"}


def test_event_grid_schema_topics_get_event_grid_events(runner: EmulatorRunner) -> None:
    emulator = runner.start(input_schema="eventgrid", name="eg-schema")
    world = with_publisher(make_world(), emulator, "eventgrid")
    drop(world, "bad.csv", b"")  # zero bytes: a committed empty file, rejected like any other
    drop(world, "bad.txt", b"x")
    lines = wait_for(lambda: len(emulator.logged_events()) >= 2 and emulator.logged_events())
    events = [line["event"] for line in lines]
    assert {event["eventType"] for event in events} == {EventType.INPUT_REJECTED.value}
    assert {event["dataVersion"] for event in events} == {"1.0"}
    assert sorted(event["data"]["error"]["code"] for event in events) == ["Empty", "NotCsv"]


def test_a_wrong_key_keeps_events_pending_not_lost(runner: EmulatorRunner) -> None:
    emulator = runner.start(name="eg-key")
    world = make_world()
    client = EventGridPublisherClient(emulator.endpoint, AzureKeyCredential("d3Jvbmc="))
    world.events = EventGridPublisher(client)  # type: ignore[assignment]
    drop(world, "x.csv")
    (job,) = world.store.rows.values()
    assert job.events_pending == (EventType.JOB_SUBMITTED.value,)
    assert job.events_published == ()
    assert emulator.logged_events() == []
    with_publisher(world, emulator, "cloudevents")
    world.clock.advance(seconds=60)  # past OUTBOX_GRACE_SECONDS: the poller takes over the outbox
    poll.poll(world.deps)
    (job,) = world.store.rows.values()
    assert job.events_published == (EventType.JOB_SUBMITTED.value,)
    assert [line["event"]["type"] for line in emulator.logged_events()] == [EventType.JOB_SUBMITTED.value]


def test_the_topic_key_is_not_on_the_emulators_command_line(runner: EmulatorRunner) -> None:
    emulator = runner.start(name="eg-argv")
    cmdline = Path(f"/proc/{emulator.service.pid}/cmdline").read_bytes().decode(errors="replace")
    assert "localdev.eventgrid" in cmdline
    assert TOPIC_KEY not in cmdline
