"""Issue 10's defects, each reproduced against the fakes: truthful move records, no duplicate events in a
calm run, hostile names refused before compute, completion retries bounded (CompletionGaveUp)."""

from __future__ import annotations

import contextlib
import json

from shared.errors import StorageRequestError
from shared.events import cloudevent_json
from shared.models import EventType, Job, JobState, RemoteStatus, Stage
from shared.usecases import complete, intake, poll
from tests.eventschemas import assert_valid
from tests.fakes import World, make_world, write_predictions

CSV = b"carat,cut\n0.3,Ideal\n0.4,Good\n"


def drop(world: World, name: str, data: bytes = CSV) -> Job:
    etag = world.blobs.put("incoming", name, data)
    job = intake.accept_blob(
        world.deps, container="incoming", name=name, size=len(data), etag=etag, url=world.blobs.url("incoming", name)
    )
    assert job is not None
    return job


def run_completions(world: World) -> None:
    for job_id in world.queue.drain():
        complete.complete(world.deps, job_id)


def events_of(world: World, job: Job) -> list[str]:
    return [e.type for e in world.events.published if e.data["jobId"] == job.job_id]


def test_an_input_replaced_while_its_job_ran_is_reported_not_moved() -> None:
    # the chaos run's reproduction: x-failme.csv Submitted, then a header-only upload under the same name
    world = make_world()
    world.scoring.script = [RemoteStatus.RUNNING, RemoteStatus.FAILED]
    first = drop(world, "x-failme.csv")
    second = drop(world, "x-failme.csv", b"carat,cut\n")
    assert world.store.rows[second.job_id].error_code == "HeaderOnly"
    assert world.blobs.names("rejected") == ["x-failme.csv", "x-failme.csv.reason.json"]  # the second one's
    poll.poll(world.deps)
    poll.poll(world.deps)
    run_completions(world)
    job = world.store.rows[first.job_id]
    assert (job.state, job.archive_container, job.input_not_moved) == (JobState.FAILED, "", "gone")
    assert world.blobs.names("failed") == []
    failed = world.events.published[-1]
    assert failed.type == EventType.JOB_FAILED.value
    assert "movedTo" not in failed.data["input"]
    assert failed.data["input"]["notMoved"] == "gone"
    assert_valid(cloudevent_json(failed))


def test_a_moved_input_is_recorded_where_it_really_is() -> None:
    world = make_world()
    world.scoring.script = [RemoteStatus.FAILED]
    job = drop(world, "y.csv")
    poll.poll(world.deps)
    run_completions(world)
    stored = world.store.rows[job.job_id]
    assert (stored.archive_container, stored.input_not_moved) == ("failed", "")
    assert world.blobs.data("failed", "y.csv") == CSV
    assert world.blobs.metadata[("failed", "y.csv")] == {"dropscorejob": job.job_id}


def tick_inside_the_trigger(world: World) -> list[dict[str, int]]:
    """Run one poll tick between the trigger's ledger write and its publish (the calm-run race)."""
    ticks: list[dict[str, int]] = []
    publish = world.events.publish

    def publish_after_a_tick(events):  # type: ignore[no-untyped-def]
        if not ticks:
            ticks.append(poll.poll(world.deps).outcomes)
        publish(events)

    world.events.publish = publish_after_a_tick  # type: ignore[method-assign]
    return ticks


def test_a_tick_during_a_submitting_trigger_does_not_publish_its_event_too() -> None:
    world = make_world()
    ticks = tick_inside_the_trigger(world)
    job = drop(world, "good.csv")
    assert ticks == [{"waiting:Queued": 1}]  # the tick really ran in between, and left the event alone
    assert events_of(world, job) == [EventType.JOB_SUBMITTED.value]


def test_a_tick_during_a_rejecting_trigger_queues_no_completion() -> None:
    world = make_world(REQUIRED_COLUMNS="carat,missing")
    ticks = tick_inside_the_trigger(world)
    job = drop(world, "bad.csv")
    assert ticks == [{"completing": 1}]
    assert events_of(world, job) == [EventType.INPUT_REJECTED.value]
    assert world.queue.messages == []


def test_a_hostile_name_is_refused_before_any_compute_and_left_in_place() -> None:
    world = make_world()
    name = "reports/\u202ecod.exe.csv"
    job = drop(world, name)
    stored = world.store.rows[job.job_id]
    assert (stored.state, stored.error_code, stored.input_not_moved) == (JobState.REJECTED, "BadName", "name-unusable")
    assert "bidirectional" in stored.error_message
    assert world.scoring.posts == []
    assert world.blobs.names("incoming") == [name]  # a name we refuse is never used to build another
    reason = json.loads(world.blobs.data("rejected", f"bad-names/{job.job_id}.reason.json"))
    assert reason["error"]["code"] == "BadName"
    (event,) = world.events.published
    assert (event.type, event.data["input"]["notMoved"]) == (EventType.INPUT_REJECTED.value, "name-unusable")
    assert_valid(cloudevent_json(event))


def test_an_overlong_name_is_refused_before_its_output_name_could_fail() -> None:
    world = make_world()
    job = drop(world, "/".join(["x" * 250] * 5) + ".csv")
    stored = world.store.rows[job.job_id]
    assert (stored.error_code, stored.finalized) == ("BadName", True)
    assert "1024-character limit" in stored.error_message


def test_a_completion_that_keeps_failing_gives_up_after_its_bound() -> None:
    world = make_world(COMPLETION_MAX_ATTEMPTS="2", COMPLETION_REDELIVERY_SECONDS="60")
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["1", "2"])
    write = world.blobs.write

    def refuse_predictions(container, name, data, *, content_type):  # type: ignore[no-untyped-def]
        if container == "predictions":
            raise StorageRequestError("storage rejected the request (HTTP 400: InvalidResourceName)")
        write(container, name, data, content_type=content_type)

    world.blobs.write = refuse_predictions  # type: ignore[method-assign]
    job = drop(world, "z.csv")
    outcomes = []
    for _ in range(4):
        outcomes.append(poll.poll(world.deps).outcomes)
        for job_id in world.queue.drain():
            with contextlib.suppress(StorageRequestError):  # the host would redeliver; the poller counts
                complete.complete(world.deps, job_id)
        world.clock.advance(seconds=61)
    assert {"completion-gave-up": 1} in outcomes
    stored = world.store.rows[job.job_id]
    assert (stored.state, stored.error_code, stored.stage) == (JobState.FAILED, "CompletionGaveUp", Stage.DONE)
    assert "last error: storage rejected the request (HTTP 400: InvalidResourceName)" in stored.error_message
    assert world.blobs.data("failed", "z.csv") == CSV
    assert events_of(world, job)[-1] == EventType.JOB_FAILED.value
    assert world.store.active_rows == set()


def test_a_poisoned_completion_message_is_one_attempt_then_the_job_gives_up() -> None:
    world = make_world(COMPLETION_MAX_ATTEMPTS="2", COMPLETION_REDELIVERY_SECONDS="60")
    world.scoring.script = [RemoteStatus.COMPLETED]
    job = drop(world, "p.csv")
    poll.poll(world.deps)
    world.queue.drain()  # the message failed every delivery (an outage?) and went to the poison queue
    assert complete.poisoned(world.deps, job.job_id) == world.store.rows[job.job_id]
    assert world.store.rows[job.job_id].state is JobState.SCORED  # attempt 1 of 2: not given up yet
    world.clock.advance(seconds=61)
    assert poll.poll(world.deps).outcomes == {"completion-requeued": 1}
    world.queue.drain()  # poisoned again: the last attempt
    complete.poisoned(world.deps, job.job_id)
    stored = world.store.rows[job.job_id]
    assert (stored.state, stored.error_code, stored.finalized) == (JobState.FAILED, "CompletionGaveUp", True)
    assert stored.error_message == (
        "the completion message reached the poison queue after 2 attempts; last error: "
        "its completion message failed every delivery (poison queue)"
    )
    assert complete.give_up(world.deps, job.job_id, why="again") == stored  # a duplicate changes nothing


def test_a_backlog_that_spends_messages_without_failing_never_gives_up() -> None:
    world = make_world(COMPLETION_MAX_ATTEMPTS="2", COMPLETION_REDELIVERY_SECONDS="60")
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["1", "2"])
    job = drop(world, "slow.csv")
    outcomes = []
    for _ in range(4):  # the messages sit in a backlog: nothing runs, nothing fails
        outcomes.append(poll.poll(world.deps).outcomes)
        world.queue.drain()
        world.clock.advance(seconds=61)
    assert {"completion-gave-up": 1} not in outcomes
    assert world.store.rows[job.job_id].state is JobState.SCORED
    poll.poll(world.deps)
    run_completions(world)  # the backlog clears: the job completes as it should
    assert world.store.rows[job.job_id].state is JobState.COMPLETED


def test_an_input_archived_before_the_job_gave_up_is_reported_where_it_is() -> None:
    world = make_world()
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["1", "2"])
    job = drop(world, "arch.csv")
    poll.poll(world.deps)
    world.store.crash_on_update = lambda row: row.state is JobState.COMPLETED  # archived, then the write is lost
    with contextlib.suppress(BaseException):
        run_completions(world)
    world.store.crash_on_update = None
    assert world.blobs.data("processed", "arch.csv") == CSV
    complete.give_up(world.deps, job.job_id, why="gave up")
    stored = world.store.rows[job.job_id]
    assert (stored.error_code, stored.archive_container, stored.input_not_moved) == (
        "CompletionGaveUp",
        "processed",
        "",
    )
    assert world.events.published[-1].data["input"]["movedTo"] == "processed"


def test_a_filed_job_waiting_for_its_event_is_closed_by_the_poller_not_requeued() -> None:
    world = make_world(REQUIRED_COLUMNS="nope")
    world.events.fail_next = 1  # the InputRejected event cannot go out in the trigger
    job = drop(world, "r.csv")
    assert world.store.rows[job.job_id].stage is Stage.FILED
    world.clock.advance(seconds=61)
    assert poll.poll(world.deps).outcomes == {"closing": 1}
    stored = world.store.rows[job.job_id]
    assert (stored.stage, world.queue.messages) == (Stage.DONE, [])
    assert events_of(world, job) == [EventType.INPUT_REJECTED.value]
