"""POST /api/jobs/{id}/redrive's use case against fakes: the new linked run, idempotency, refusals, the races."""

from __future__ import annotations

import pytest

from shared.core.completion import MOVED_BY
from shared.core.naming import job_key
from shared.errors import Conflict, InputGone, InputNameTaken, JobActive, WrongState
from shared.events import cloudevent_json
from shared.models import EventType, Job, JobState, RemoteStatus, Stage
from shared.usecases import poll
from shared.usecases.cancel import cancel_job
from shared.usecases.redrive import RedriveOutcome, redrive_job
from tests.eventschemas import assert_valid
from tests.fakes import World, make_world, write_predictions
from tests.operatorsteps import CSV, NAME, run_completions, trigger


def failed_job(world: World) -> Job:
    """Azure ML fails the job; its input is filed in the failed container and the job is Done."""
    world.scoring.script = [RemoteStatus.FAILED]
    world.scoring.failure = ("UserError", "boom")
    world.blobs.put("incoming", NAME, CSV)
    job = trigger(world)
    poll.poll(world.deps)
    run_completions(world)
    done = world.store.rows[job.job_id]
    assert (done.state, done.stage, done.archive_container) == (JobState.FAILED, Stage.DONE, "failed")
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["10", "20"])
    return done


def redrive(world: World, job_id: str) -> RedriveOutcome:
    outcome = redrive_job(world.deps, job_id)
    assert outcome is not None
    return outcome


def test_a_failed_job_runs_again_as_a_new_linked_job_that_completes() -> None:
    world = make_world()
    old = failed_job(world)

    outcome = redrive(world, old.job_id)

    copy = world.blobs.properties("incoming", NAME)
    assert copy is not None
    assert copy.metadata == {"dropscore_redrive_of": old.job_id, "dropscore_run": "2"}
    assert world.blobs.data("incoming", NAME) == CSV
    assert outcome.job_id == job_key(world.blobs.account_name, "incoming", NAME, copy.etag)
    assert (outcome.run, outcome.started) == (2, True)
    assert outcome.previous.redriven_to == outcome.job_id == world.store.rows[old.job_id].redriven_to
    assert world.blobs.names("failed") == [NAME]  # the filed copy stays until the new run files its own

    new = trigger(world)  # the copy's BlobCreated
    assert new.job_id == outcome.job_id
    assert (new.run, new.previous_job_id, new.state) == (2, old.job_id, JobState.SUBMITTED)
    poll.poll(world.deps)
    run_completions(world)
    done = world.store.rows[new.job_id]
    assert (done.state, done.stage) == (JobState.COMPLETED, Stage.DONE)
    assert world.blobs.data("predictions", f"{NAME}.predictions.csv").endswith(b"0.4,Good,20\n")
    new_events = [event for event in world.events.published if event.data["jobId"] == new.job_id]
    assert [event.type for event in new_events] == [EventType.JOB_SUBMITTED.value, EventType.JOB_COMPLETED.value]
    assert all((e.data["run"], e.data["previousJobId"]) == (2, old.job_id) for e in new_events)
    old_events = [event for event in world.events.published if event.data["jobId"] == old.job_id]
    assert all(event.data["run"] == 1 and "previousJobId" not in event.data for event in old_events)
    for event in world.events.published:
        assert_valid(cloudevent_json(event))


def test_a_repeated_redrive_answers_the_same_run_and_copies_nothing() -> None:
    world = make_world()
    old = failed_job(world)
    first = redrive(world, old.job_id)
    etag = world.blobs.properties("incoming", NAME)
    again = redrive(world, old.job_id)
    assert (again.job_id, again.run, again.started) == (first.job_id, 2, False)
    assert world.blobs.properties("incoming", NAME) == etag
    trigger(world)
    poll.poll(world.deps)
    run_completions(world)  # the new run is done and its input archived: the name is free again
    later = redrive(world, old.job_id)
    assert (later.job_id, later.started) == (first.job_id, False)
    assert world.blobs.names("incoming") == []
    assert len(world.store.rows) == 2


def test_two_redrives_at_once_start_one_run() -> None:
    """The second call's copy lands first; the first call's copy is refused (If-None-Match: *), finds the copy
    its racer made (its metadata names the job) and answers the same run."""
    world = make_world()
    old = failed_job(world)
    racer: list[RedriveOutcome] = []
    world.blobs.before_copy = lambda container, name: racer.append(redrive(world, old.job_id))
    outcome = redrive(world, old.job_id)
    (other,) = racer
    assert outcome.job_id == other.job_id
    assert {outcome.started, other.started} == {True, False}
    assert world.store.rows[old.job_id].redriven_to == outcome.job_id
    trigger(world)
    trigger(world)  # a duplicate BlobCreated
    assert len(world.store.rows) == 2
    assert len(world.scoring.posts) == 2  # the first run's and the one new run's


def test_a_late_call_whose_racer_already_ran_takes_its_copy_back() -> None:
    """Call B read the old row before call A linked its run; A's run was rejected and filed (the input container is
    empty again) before B copied. B's copy would be a second run: it goes, and B answers A's run."""
    world = make_world()
    old = failed_job(world)
    first: list[RedriveOutcome] = []

    def racer_runs_to_the_end(container: str, name: str) -> None:
        first.append(redrive(world, old.job_id))
        trigger(world)
        poll.poll(world.deps)
        run_completions(world)
        assert world.blobs.names("incoming") == []

    world.blobs.before_copy = racer_runs_to_the_end
    late = redrive(world, old.job_id)
    (early,) = first
    assert (late.job_id, late.started, early.started) == (early.job_id, False, True)
    assert world.blobs.names("incoming") == []  # the late copy was taken back
    assert world.store.rows[old.job_id].redriven_to == early.job_id
    assert len(world.store.rows) == 2


def test_a_lost_race_on_the_old_row_reloads_and_links_once() -> None:
    """Another writer (here the outbox recording a publish) changes the old row between the redrive's read and its
    link: the write loses (412), reloads and links."""
    world = make_world()
    old = failed_job(world)
    world.store.before_update = lambda job: world.store.touch_elsewhere(job.job_id, completion_error="touched")
    outcome = redrive(world, old.job_id)
    stored = world.store.rows[old.job_id]
    assert (stored.redriven_to, stored.completion_error) == (outcome.job_id, "touched")
    assert outcome.previous == stored


def test_intake_linking_first_leaves_the_redrive_nothing_to_write() -> None:
    """The new blob's trigger runs between the copy and the redrive's own link: intake links the old row; the
    redrive's write loses, reloads, finds the link and answers it."""
    world = make_world()
    old = failed_job(world)
    world.store.before_update = lambda job: trigger(world) and None
    outcome = redrive(world, old.job_id)
    assert outcome.started
    assert world.store.rows[old.job_id].redriven_to == outcome.job_id
    assert world.store.rows[outcome.job_id].previous_job_id == old.job_id


def test_a_canceled_job_is_redriven_and_completes() -> None:
    world = make_world()
    world.scoring.script = [RemoteStatus.RUNNING]
    world.blobs.put("incoming", NAME, CSV)
    old = trigger(world)
    cancel_job(world.deps, old.job_id)
    run_completions(world)
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["10", "20"])
    outcome = redrive(world, old.job_id)
    trigger(world)
    poll.poll(world.deps)
    run_completions(world)
    assert world.store.rows[outcome.job_id].state is JobState.COMPLETED


def test_a_rejected_input_is_redriven_through_validation_again_and_chains_runs() -> None:
    world = make_world(REQUIRED_COLUMNS="carat,cut")
    world.blobs.put("incoming", NAME, b"carat\n0.3\n")  # no `cut`: MissingColumns
    first = trigger(world)
    assert (first.state, first.archive_container) == (JobState.REJECTED, "rejected")
    second = redrive(world, first.job_id)
    trigger(world)
    rejected_again = world.store.rows[second.job_id]
    assert (rejected_again.state, rejected_again.run, rejected_again.error_code) == (
        JobState.REJECTED,
        2,
        "MissingColumns",
    )
    filed = world.blobs.properties("rejected", NAME)
    assert filed is not None
    assert filed.metadata[MOVED_BY] == second.job_id  # the new run's own filing
    with pytest.raises(InputGone):  # the first run's copy was replaced by the second's
        redrive_job(world.deps, _unlinked(world, first.job_id))
    third = redrive(world, second.job_id)
    assert third.run == 3
    trigger(world)
    rejected = world.events.published[-1]
    assert (rejected.type, rejected.data["run"], rejected.data["previousJobId"]) == (
        EventType.INPUT_REJECTED.value,
        3,
        second.job_id,
    )


def _unlinked(world: World, job_id: str) -> str:
    """Forget a job's link (as if the redrive that set it never ran), to redrive it from scratch."""
    world.store.touch_elsewhere(job_id, redriven_to="")
    return job_id


# ---- refusals


def test_an_active_job_is_refused_and_nothing_is_copied() -> None:
    world = make_world()
    world.scoring.script = [RemoteStatus.RUNNING]
    world.blobs.put("incoming", NAME, CSV)
    job = trigger(world)
    with pytest.raises(JobActive) as refused:
        redrive_job(world.deps, job.job_id)
    assert refused.value.state == "Submitted"
    assert world.store.rows[job.job_id].redriven_to == ""


def test_a_completed_job_is_the_wrong_state() -> None:
    world = make_world()
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["1", "2"])
    world.blobs.put("incoming", NAME, CSV)
    job = trigger(world)
    poll.poll(world.deps)
    run_completions(world)
    with pytest.raises(WrongState) as refused:
        redrive_job(world.deps, job.job_id)
    assert refused.value.state == "Completed"


def test_a_deleted_filed_input_is_gone() -> None:
    world = make_world()
    old = failed_job(world)
    world.blobs.delete("failed", NAME)
    with pytest.raises(InputGone) as refused:
        redrive_job(world.deps, old.job_id)
    assert (refused.value.code, refused.value.state) == ("InputGone", "Failed")
    assert "failed/batch/day1.csv was deleted" in refused.value.message
    assert world.blobs.names("incoming") == []


def test_a_filed_input_changed_during_the_copy_is_gone() -> None:
    world = make_world()
    old = failed_job(world)
    world.blobs.before_copy = lambda container, name: world.blobs.put("failed", NAME, b"other")
    with pytest.raises(InputGone):
        redrive_job(world.deps, old.job_id)
    assert world.blobs.names("incoming") == []


def test_a_new_upload_at_the_name_is_input_name_taken() -> None:
    world = make_world()
    old = failed_job(world)
    world.blobs.put("incoming", NAME, b"carat,cut\n9,Fair\n")
    with pytest.raises(InputNameTaken) as refused:
        redrive_job(world.deps, old.job_id)
    assert refused.value.state == "Failed"
    assert world.blobs.data("incoming", NAME) == b"carat,cut\n9,Fair\n"
    assert world.store.rows[old.job_id].redriven_to == ""


def test_an_unknown_job_is_none() -> None:
    assert redrive_job(make_world().deps, "f" * 40) is None


def test_every_refusal_is_a_conflict_with_a_state() -> None:
    assert all(issubclass(kind, Conflict) for kind in (JobActive, WrongState, InputGone, InputNameTaken))


# ---- intake of a redriven input


def test_intake_never_fails_because_the_previous_job_is_missing() -> None:
    world = make_world()
    world.blobs.put("incoming", NAME, CSV, metadata={"dropscore_redrive_of": "a" * 40, "dropscore_run": "2"})
    job = trigger(world)
    assert (job.state, job.run, job.previous_job_id) == (JobState.SUBMITTED, 2, "a" * 40)


def test_intake_ignores_metadata_that_is_not_a_link() -> None:
    world = make_world()
    world.blobs.put("incoming", NAME, CSV, metadata={"dropscore_redrive_of": "../x", "dropscore_run": "2"})
    job = trigger(world)
    assert (job.run, job.previous_job_id) == (1, "")


def test_intake_leaves_a_link_to_another_run_alone() -> None:
    world = make_world()
    old = failed_job(world)
    world.store.touch_elsewhere(old.job_id, redriven_to="b" * 40)
    metadata = {"dropscore_redrive_of": old.job_id, "dropscore_run": "2"}
    world.blobs.put("incoming", NAME, CSV, metadata=metadata)
    job = trigger(world)
    assert job.previous_job_id == old.job_id
    assert world.store.rows[old.job_id].redriven_to == "b" * 40
