"""POST /api/jobs/{id}/cancel's use case against fakes: the move, Azure ML's cancel, the completion, the races."""

from __future__ import annotations

import pytest

from shared.errors import ScoringUnavailable, TransientError, WrongState
from shared.events import cloudevent_json
from shared.models import EventType, Job, JobState, RemoteStatus, Stage
from shared.usecases import intake, poll
from shared.usecases.cancel import cancel_job
from tests.eventschemas import assert_valid
from tests.fakes import SimulatedCrash, World, make_world, write_predictions
from tests.operatorsteps import CSV, NAME, run_completions, trigger


def drop(world: World, name: str = NAME) -> Job:
    world.blobs.put("incoming", name, CSV)
    return trigger(world, name)


def test_a_running_job_is_canceled_in_azure_ml_filed_and_announced() -> None:
    world = make_world()
    world.scoring.script = [RemoteStatus.RUNNING]
    job = drop(world)
    poll.poll(world.deps)
    assert world.store.rows[job.job_id].state is JobState.RUNNING

    outcome = cancel_job(world.deps, job.job_id)

    assert outcome is not None
    assert outcome.changed
    assert (outcome.job.state, outcome.job.stage) == (JobState.CANCELED, Stage.ENDED)
    assert outcome.job.error_code == "CanceledByOperator"
    assert outcome.job.error_message == "an operator canceled the job while it was Running"
    assert world.scoring.canceled == [job.aml_job_name]
    assert world.queue.messages == [job.job_id]
    assert world.store.summaries[job.job_id].state is JobState.CANCELED  # the tick does not ask Azure ML again
    run_completions(world)
    done = world.store.rows[job.job_id]
    assert (done.state, done.stage, done.archive_container) == (JobState.CANCELED, Stage.DONE, "failed")
    assert world.blobs.names("failed") == [NAME]
    assert world.blobs.names("incoming") == []
    final = world.events.published[-1]
    assert final.type == EventType.JOB_FAILED.value
    assert (final.data["state"], final.data["error"]["code"]) == ("Canceled", "CanceledByOperator")
    assert final.data["input"]["movedTo"] == "failed"
    for event in world.events.published:
        assert_valid(cloudevent_json(event))
    assert world.store.active_rows == set()


def test_a_repeated_cancel_answers_the_same_job_and_does_nothing_more() -> None:
    world = make_world()
    job = drop(world)
    first = cancel_job(world.deps, job.job_id)
    assert first is not None
    assert first.job.aml_status == "CancelRequested"  # Azure ML took it: the completion does not ask again
    run_completions(world)
    assert world.scoring.canceled == [job.aml_job_name]
    writes = world.store.writes
    again = cancel_job(world.deps, job.job_id)
    assert again is not None
    assert (first.changed, again.changed) == (True, False)
    assert again.job == world.store.rows[job.job_id]
    assert world.store.writes == writes
    assert world.scoring.canceled == [job.aml_job_name]
    assert world.queue.messages == []
    after_done = cancel_job(world.deps, job.job_id)
    assert after_done is not None
    assert (after_done.changed, after_done.job.stage) == (False, Stage.DONE)


def test_a_finished_job_is_refused_with_its_state() -> None:
    world = make_world()
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["1", "2"])
    job = drop(world)
    poll.poll(world.deps)
    run_completions(world)
    with pytest.raises(WrongState) as refused:
        cancel_job(world.deps, job.job_id)
    assert (refused.value.code, refused.value.state) == ("WrongState", "Completed")
    assert world.scoring.canceled == []


def test_an_unknown_job_is_none() -> None:
    assert cancel_job(make_world().deps, "f" * 40) is None


def test_a_waiting_job_is_canceled_without_azure_ml_and_never_submitted() -> None:
    world = make_world(MAX_JOBS_IN_FLIGHT="1")
    world.scoring.script = [RemoteStatus.RUNNING]
    first = drop(world, "a.csv")
    waiting = drop(world, "b.csv")
    assert world.store.rows[waiting.job_id].state is JobState.WAITING
    outcome = cancel_job(world.deps, waiting.job_id)
    assert outcome is not None
    assert outcome.job.state is JobState.CANCELED
    assert world.scoring.canceled == []  # it never had an Azure ML job
    run_completions(world)
    poll.poll(world.deps)
    assert [post.job_name for post in world.scoring.posts] == [first.aml_job_name]
    assert world.blobs.names("failed") == ["b.csv"]
    assert world.slots.holders() == [first.job_id]


def test_canceling_a_job_gives_its_slot_to_the_oldest_waiting_job() -> None:
    world = make_world(MAX_JOBS_IN_FLIGHT="1")
    world.scoring.script = [RemoteStatus.RUNNING]
    running = drop(world, "a.csv")
    waiting = drop(world, "b.csv")
    cancel_job(world.deps, running.job_id)
    assert world.slots.holders() == []  # given back when the completion was queued
    poll.poll(world.deps)  # the tick's admission
    assert world.store.rows[waiting.job_id].state is JobState.SUBMITTED
    assert world.slots.holders() == [waiting.job_id]


def test_a_cancel_azure_ml_refuses_still_cancels_the_job(caplog: pytest.LogCaptureFixture) -> None:
    world = make_world()
    job = drop(world)

    def refuse(name: str) -> bool:
        raise ScoringUnavailable("HTTP 503 from the cancel", ambiguous=False)

    asked = world.scoring.cancel
    world.scoring.cancel = refuse  # type: ignore[method-assign]
    with pytest.raises(TransientError, match="call again"):
        cancel_job(world.deps, job.job_id)  # a 503 for the operator: Canceled, but Azure ML was not told yet
    stored = world.store.rows[job.job_id]
    assert (stored.state, stored.stage) == (JobState.CANCELED, Stage.ENDED)
    assert stored.aml_status != "CancelRequested"
    assert world.queue.messages == [job.job_id]
    world.scoring.cancel = asked  # type: ignore[method-assign]
    again = cancel_job(world.deps, job.job_id)  # the retry asks again
    assert again is not None
    assert again.changed is False
    assert world.scoring.canceled == [job.aml_job_name]
    assert world.store.rows[job.job_id].aml_status == "CancelRequested"


def test_the_completion_asks_azure_ml_when_the_cancel_call_never_did(caplog: pytest.LogCaptureFixture) -> None:
    """A crash (or an outage) right after the Canceled write: the poller finds the row, the completion asks."""
    world = make_world()
    job = drop(world)

    def crash(name: str) -> bool:
        raise SimulatedCrash("kill -9 before Azure ML answers")

    world.scoring.cancel = crash  # type: ignore[method-assign]
    with pytest.raises(SimulatedCrash):
        cancel_job(world.deps, job.job_id)
    del world.scoring.cancel  # the real fake again
    assert world.store.summaries[job.job_id].state is JobState.CANCELED  # the tick reads the ledger row
    world.clock.advance(minutes=5)  # past the grace the poller leaves a row written a moment ago
    poll.poll(world.deps)
    run_completions(world)
    stored = world.store.rows[job.job_id]
    assert (stored.state, stored.stage) == (JobState.CANCELED, Stage.DONE)
    assert world.scoring.canceled == [job.aml_job_name]
    assert world.blobs.names("failed") == [job.name]


# ---- races with the poller and the trigger


def test_cancel_loses_to_the_poller_scoring_the_job_first() -> None:
    """The poller writes Scored between cancel's read and its write: cancel reloads and refuses (409 Scored)."""
    world = make_world()
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["1", "2"])
    job = drop(world)
    world.store.before_update = lambda _: poll.poll(world.deps)
    with pytest.raises(WrongState) as refused:
        cancel_job(world.deps, job.job_id)
    assert refused.value.state == "Scored"
    assert world.scoring.canceled == []
    run_completions(world)
    done = world.store.rows[job.job_id]
    assert (done.state, done.error_code) == (JobState.COMPLETED, "")
    assert world.blobs.data("predictions", f"{NAME}.predictions.csv").endswith(b"0.4,Good,2\n")


def test_cancel_wins_over_the_poller_which_reloads_and_leaves_it_canceled() -> None:
    """Cancel writes between the poller's read and its write (Scored): the poller reloads, finds Canceled and
    moves nothing; the completion files the input and announces JobFailed, never the predictions."""
    world = make_world()
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["1", "2"])
    job = drop(world)
    outcomes: list[object] = []
    world.store.before_update = lambda _: outcomes.append(cancel_job(world.deps, job.job_id))
    report = poll.poll(world.deps)
    assert report.outcomes == {"moved-elsewhere": 1}
    assert len(outcomes) == 1
    assert world.store.rows[job.job_id].state is JobState.CANCELED
    run_completions(world)
    done = world.store.rows[job.job_id]
    assert (done.state, done.stage, done.error_code) == (JobState.CANCELED, Stage.DONE, "CanceledByOperator")
    assert world.blobs.names("predictions") == []
    assert world.blobs.names("failed") == [NAME]
    assert [event.type for event in world.events.published] == [
        EventType.JOB_SUBMITTED.value,
        EventType.JOB_FAILED.value,
    ]


def test_a_job_canceled_while_its_post_is_out_has_its_azure_ml_job_canceled_when_the_answer_comes() -> None:
    """Cancel finds no Azure ML job yet (the POST is in flight); intake, whose answer then loses to the Canceled
    row, asks Azure ML to cancel the job its POST created."""
    world = make_world()
    world.blobs.put("incoming", NAME, CSV)
    invoke = world.scoring.invoke
    early: list[bool] = []

    def invoke_after_a_cancel(request):  # type: ignore[no-untyped-def]
        (job_id,) = world.store.rows
        outcome = cancel_job(world.deps, job_id)
        early.append(outcome is not None and outcome.changed)
        assert world.scoring.canceled == []  # Azure ML had no such job when cancel asked
        return invoke(request)

    world.scoring.invoke = invoke_after_a_cancel  # type: ignore[method-assign]
    job = intake.accept_blob(world.deps, container="incoming", name=NAME, size=0, etag=None, url="u")
    assert job is not None
    assert early == [True]
    assert job.state is JobState.CANCELED
    assert world.scoring.canceled == [job.aml_job_name]
    run_completions(world)
    assert world.store.rows[job.job_id].stage is Stage.DONE
    assert EventType.JOB_SUBMITTED.value not in world.events.types()


def test_a_received_job_canceled_during_validation_is_finished_by_the_trigger() -> None:
    """The trigger's intent write loses to the Canceled row: it reloads, finds the job ended and files it."""
    world = make_world()
    world.blobs.put("incoming", NAME, CSV)
    canceled: list[bool] = []

    def cancel_first(job: Job) -> None:
        outcome = cancel_job(world.deps, job.job_id)
        canceled.append(outcome is not None and outcome.changed)

    world.store.before_update = cancel_first  # the first update is the trigger's submit intent
    job = intake.accept_blob(world.deps, container="incoming", name=NAME, size=0, etag=None, url="u")
    assert job is not None
    assert canceled == [True]
    assert world.scoring.posts == []
    assert (job.state, job.stage) == (JobState.CANCELED, Stage.DONE)
    assert world.blobs.names("failed") == [NAME]
    run_completions(world)  # the completion cancel queued finds it done
    assert world.events.types() == [EventType.JOB_FAILED.value]
