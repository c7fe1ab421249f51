"""Azure ML run events against fakes: one status call per event, the poller only as a backstop."""

from __future__ import annotations

import contextlib

import pytest

from shared.errors import EventTooEarly
from shared.models import JobState, RemoteStatus
from shared.usecases import intake, poll, runevents
from tests.fakes import SimulatedCrash, World, make_world, write_predictions

CSV = b"carat,cut\n0.3,Ideal\n0.4,Good\n"
STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"


def submitted(world: World, name: str = "day.csv") -> str:
    etag = world.blobs.put("incoming", name, CSV)
    job = intake.accept_blob(world.deps, container="incoming", name=name, size=len(CSV), etag=etag, url="u")
    assert job is not None
    assert job.state is JobState.SUBMITTED
    return job.job_id


def event(world: World, job_id: str, status: str = "Completed") -> str:
    run_id = world.store.rows[job_id].aml_job_name
    data = {"runId": run_id, "runStatus": status, "experimentName": "dropscore-ep"}
    return runevents.on_run_event(world.deps, event_type=STATUS_CHANGED, data=data)


def events_world() -> World:
    world = make_world(AML_RUN_EVENTS="on", AML_EVENTS_BACKSTOP_SECONDS="300")
    world.scoring.script = [RemoteStatus.QUEUED, RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["1", "2"])
    return world


def test_a_completed_event_scores_the_job_with_one_status_call() -> None:
    world = events_world()
    job = submitted(world)
    world.clock.advance(seconds=30)
    assert poll.poll(world.deps).outcomes == {"waiting:events": 1}  # the tick leaves it to the events
    assert world.scoring.status_calls == []
    world.scoring.jobs[world.store.rows[job].aml_job_name].pop(0)  # Azure ML finished it
    assert event(world, job) == "finished:Scored"
    assert world.store.rows[job].state is JobState.SCORED
    assert world.queue.messages == [job]
    assert len(world.scoring.status_calls) == 1
    # the same event again (Event Grid delivers at least once) moves nothing and queues nothing
    assert event(world, job).startswith(("moved-elsewhere", "completing", "ensure"))
    assert world.queue.messages == [job]


def test_the_tick_backstops_a_lost_event_once_per_interval() -> None:
    world = events_world()
    world.scoring.script = [RemoteStatus.QUEUED]
    job = submitted(world)
    world.clock.advance(seconds=301)
    assert poll.poll(world.deps).outcomes == {"waiting:Queued": 1}
    assert len(world.scoring.status_calls) == 1
    world.clock.advance(seconds=60)
    poll.poll(world.deps)  # asked a minute ago: not again yet
    assert len(world.scoring.status_calls) == 1
    world.clock.advance(seconds=300)
    poll.poll(world.deps)
    assert len(world.scoring.status_calls) == 2
    assert world.store.rows[job].state is JobState.SUBMITTED


def test_without_events_every_tick_asks() -> None:
    world = make_world()
    submitted(world)
    poll.poll(world.deps)
    poll.poll(world.deps)
    assert len(world.scoring.status_calls) == 2


def test_events_about_other_runs_are_ignored_and_logged_never_an_error() -> None:
    world = events_world()
    job = submitted(world)
    calls = world.scoring.status_calls
    for data in ({"runId": "some-training-run"}, {"runId": "dropscore-" + "0" * 32 + "-1"}, {}):
        assert runevents.on_run_event(world.deps, event_type=STATUS_CHANGED, data=data).startswith("ignored:")
    assert runevents.on_run_event(world.deps, event_type="Other.Event", data={"runId": "x"}).startswith("ignored:")
    assert calls == []
    assert world.store.rows[job].state is JobState.SUBMITTED


def test_an_event_for_an_earlier_attempt_is_ignored() -> None:
    world = events_world()
    job = submitted(world)
    stale = world.store.rows[job].aml_job_name.rsplit("-", 1)[0] + "-0"
    assert runevents.on_run_event(world.deps, event_type=STATUS_CHANGED, data={"runId": stale}) == "ignored:unknown-job"
    assert world.scoring.status_calls == []


def test_an_event_before_the_posts_answer_is_recorded_is_refused_so_event_grid_delivers_it_again() -> None:
    world = events_world()
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.store.crash_on_update = lambda job: job.state is JobState.SUBMITTED  # the answer is not recorded yet
    etag = world.blobs.put("incoming", "early.csv", CSV)
    with contextlib.suppress(SimulatedCrash):
        intake.accept_blob(world.deps, container="incoming", name="early.csv", size=len(CSV), etag=etag, url="u")
    world.store.crash_on_update = None
    (job,) = world.store.rows.values()
    assert job.state is JobState.SUBMITTING
    with pytest.raises(EventTooEarly):
        event(world, job.job_id)
    assert world.scoring.status_calls == []


def test_a_job_adopted_in_an_ended_status_is_decided_at_the_next_tick_not_the_backstop() -> None:
    world = events_world()
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.store.crash_on_update = lambda job: job.state is JobState.SUBMITTED
    etag = world.blobs.put("incoming", "late.csv", CSV)
    with contextlib.suppress(SimulatedCrash):
        intake.accept_blob(world.deps, container="incoming", name="late.csv", size=len(CSV), etag=etag, url="u")
    world.store.crash_on_update = None
    (job_id,) = world.store.rows
    world.clock.advance(seconds=301)  # the submit lease passed; the Completed event came and went meanwhile
    poll.poll(world.deps)  # reconciliation finds the Azure ML job by name: Submitted, already Completed
    assert world.store.rows[job_id].aml_status == "Completed"
    world.clock.advance(seconds=61)
    poll.poll(world.deps)  # the backstop (300 s) is not due, but an ended status is decided now
    assert world.store.rows[job_id].state is JobState.SCORED


def test_an_end_the_status_call_does_not_show_yet_is_refused_so_the_event_comes_again() -> None:
    world = events_world()
    world.scoring.script = [RemoteStatus.QUEUED, RemoteStatus.QUEUED]
    job = submitted(world)
    with pytest.raises(EventTooEarly):
        event(world, job)  # RunStatusChanged Completed, but GET still says Queued
    assert world.store.rows[job].state is JobState.SUBMITTED
    assert len(world.scoring.status_calls) == 1


def test_with_events_a_job_past_its_limit_is_canceled_at_the_next_tick_not_the_backstop() -> None:
    world = make_world(AML_RUN_EVENTS="on", AML_EVENTS_BACKSTOP_SECONDS="86400", QUEUED_LIMIT_MINUTES="60")
    world.scoring.script = [RemoteStatus.QUEUED]
    job = submitted(world)
    poll.poll(world.deps)  # the first tick reads the row and indexes the summary
    world.clock.advance(minutes=61)
    poll.poll(world.deps)
    assert world.store.rows[job].state is JobState.TIMED_OUT
    assert world.scoring.canceled == [world.store.rows[job].aml_job_name]
