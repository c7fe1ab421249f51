"""The operator's rules (core/operator.py) as pure functions: which jobs may be redriven or canceled, the moves.

No fakes, no I/O.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.core import operator, submission
from shared.core.completion import MOVED_BY, MoveOutcome, filed
from shared.core.naming import job_key
from shared.errors import Conflict, InputGone, JobActive, WrongState
from shared.models import BlobInfo, BlobRef, Job, JobState, Stage

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
REF = BlobRef("acct", "incoming", "day/x.csv", "0x8D1", 120, "https://acct.blob.core.windows.net/incoming/day/x.csv")
OLD_ID = job_key("acct", "incoming", "day/x.csv", "0x8D0")


def working(state: JobState = JobState.RUNNING) -> Job:
    return replace(submission.received(REF, NOW), state=state)


def ended(state: JobState = JobState.FAILED, code: str = "UserError") -> Job:
    return submission.ended(working(), state, code, "it broke", NOW)


def filed_job(state: JobState = JobState.FAILED, outcome: MoveOutcome = MoveOutcome.MOVED) -> Job:
    return filed(ended(state), target="failed", outcome=outcome, now=NOW)


def refusal_code(refusal: Conflict | None) -> str | None:
    return None if refusal is None else refusal.code


# ---- redrive: which jobs


@pytest.mark.parametrize("state", [JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELED, JobState.REJECTED])
@pytest.mark.parametrize("stage", [Stage.FILED, Stage.DONE])
def test_a_filed_failure_may_be_redriven(state: JobState, stage: Stage) -> None:
    job = replace(filed_job(state), stage=stage)
    assert operator.redrive_refusal(job) is None
    assert operator.may_redrive(job)


@pytest.mark.parametrize(
    "state", [JobState.RECEIVED, JobState.WAITING, JobState.SUBMITTING, JobState.SUBMITTED, JobState.RUNNING]
)
def test_a_working_job_is_active(state: JobState) -> None:
    refusal = operator.redrive_refusal(working(state))
    assert isinstance(refusal, JobActive)
    assert refusal.state == state.value
    assert "cancel it first" in refusal.message


def test_a_scored_job_and_a_failure_not_yet_filed_are_active() -> None:
    scored = replace(working(), state=JobState.SCORED, stage=Stage.ENDED)
    assert refusal_code(operator.redrive_refusal(scored)) == "JobActive"
    assert refusal_code(operator.redrive_refusal(ended())) == "JobActive"
    assert "being filed" in str(operator.redrive_refusal(ended()))


def test_a_completed_job_is_the_wrong_state() -> None:
    completed = replace(filed_job(), state=JobState.COMPLETED)
    refusal = operator.redrive_refusal(completed)
    assert isinstance(refusal, WrongState)
    assert refusal.state == "Completed"
    assert not operator.may_redrive(completed)


@pytest.mark.parametrize("outcome", [MoveOutcome.GONE, MoveOutcome.OVERWRITTEN, MoveOutcome.NAME_UNUSABLE])
def test_an_input_that_was_not_filed_is_gone(outcome: MoveOutcome) -> None:
    refusal = operator.redrive_refusal(filed_job(outcome=outcome))
    assert isinstance(refusal, InputGone)
    assert outcome.value in refusal.message


def test_a_job_already_redriven_is_not_refused_but_offers_no_redrive() -> None:
    job = replace(filed_job(), redriven_to="f" * 40)
    assert operator.redrive_refusal(job) is None  # the use case answers the recorded run
    assert not operator.may_redrive(job)


def test_the_filed_copy_must_carry_the_job_id() -> None:
    job = filed_job()
    ours = BlobInfo("0x1", 120, metadata={MOVED_BY: job.job_id})
    theirs = BlobInfo("0x2", 120, metadata={MOVED_BY: OLD_ID})
    assert operator.filed_input_refusal(job, ours) is None
    assert "was deleted" in str(operator.filed_input_refusal(job, None))
    assert "was replaced" in str(operator.filed_input_refusal(job, theirs))
    assert "was replaced" in str(operator.filed_input_refusal(job, BlobInfo("0x3", 120)))


# ---- redrive: the link


def test_the_copy_carries_the_old_job_and_the_next_run() -> None:
    job = replace(filed_job(), run=2)
    metadata = operator.redrive_metadata(job)
    assert metadata == {"dropscore_redrive_of": job.job_id, "dropscore_run": "3"}
    assert operator.redrive_origin(metadata) == operator.RedriveOrigin(job.job_id, 3)
    assert operator.is_redrive_of(job, BlobInfo("0x1", 1, metadata=metadata))
    assert not operator.is_redrive_of(job, BlobInfo("0x1", 1, metadata={"dropscore_redrive_of": OLD_ID}))
    assert not operator.is_redrive_of(job, None)


def test_metadata_names_are_read_case_insensitively() -> None:
    assert operator.redrive_origin({"Dropscore_Redrive_Of": OLD_ID, "DROPSCORE_RUN": "2"}) == operator.RedriveOrigin(
        OLD_ID, 2
    )


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"dropscore_redrive_of": OLD_ID},
        {"dropscore_run": "2"},
        {"dropscore_redrive_of": "not-a-key", "dropscore_run": "2"},
        {"dropscore_redrive_of": OLD_ID.upper(), "dropscore_run": "2"},
        {"dropscore_redrive_of": OLD_ID, "dropscore_run": "0"},
        {"dropscore_redrive_of": OLD_ID, "dropscore_run": "-1"},
        {"dropscore_redrive_of": OLD_ID, "dropscore_run": "2.5"},
        {"dropscore_redrive_of": OLD_ID, "dropscore_run": "²"},
        {"dropscore_redrive_of": OLD_ID, "dropscore_run": ""},
    ],
)
def test_metadata_that_is_not_a_redrive_link_is_ignored(metadata: dict[str, str]) -> None:
    assert operator.redrive_origin(metadata) is None
    fresh = submission.received(REF, NOW)
    assert operator.as_run_of(fresh, operator.redrive_origin(metadata)) == fresh


def test_a_fresh_job_becomes_the_run_its_metadata_names() -> None:
    fresh = submission.received(REF, NOW)
    assert (fresh.run, fresh.previous_job_id, fresh.redriven_to) == (1, "", "")
    run = operator.as_run_of(fresh, operator.RedriveOrigin(OLD_ID, 2))
    assert (run.run, run.previous_job_id, run.job_id) == (2, OLD_ID, fresh.job_id)
    assert operator.as_run_of(fresh, operator.RedriveOrigin(fresh.job_id, 2)) == fresh  # never its own previous


def test_the_link_is_recorded_once() -> None:
    later = NOW + timedelta(minutes=1)
    linked = operator.redrive_recorded(filed_job(), "a" * 40, later)
    assert linked is not None
    assert (linked.redriven_to, linked.updated_at) == ("a" * 40, later)
    assert (linked.state, linked.stage) == (JobState.FAILED, Stage.FILED)
    assert operator.redrive_recorded(linked, "b" * 40, later) is None


# ---- cancel


@pytest.mark.parametrize(
    "state", [JobState.RECEIVED, JobState.WAITING, JobState.SUBMITTING, JobState.SUBMITTED, JobState.RUNNING]
)
def test_a_working_job_may_be_canceled(state: JobState) -> None:
    job = working(state)
    assert operator.cancel_refusal(job) is None
    assert operator.may_cancel(job)
    canceled = operator.canceled(job, NOW + timedelta(seconds=5))
    assert (canceled.state, canceled.stage) == (JobState.CANCELED, Stage.ENDED)
    assert canceled.error_code == operator.CANCELED_BY_OPERATOR == "CanceledByOperator"
    assert canceled.error_message == f"an operator canceled the job while it was {state.value}"
    assert canceled.finished_at == NOW + timedelta(seconds=5)
    assert operator.canceled_by_operator(canceled)
    assert not operator.may_cancel(canceled)
    assert operator.cancel_refusal(canceled) is None  # repeated: answered, not refused


@pytest.mark.parametrize(
    "job",
    [
        replace(working(), state=JobState.SCORED, stage=Stage.ENDED),
        filed_job(),
        replace(filed_job(), state=JobState.COMPLETED, stage=Stage.DONE),
        ended(JobState.CANCELED, "AzureMLJobCanceled"),
        replace(filed_job(JobState.TIMED_OUT), stage=Stage.DONE),
    ],
    ids=["scored", "failed", "completed", "canceled-in-azure-ml", "timed-out"],
)
def test_a_job_with_its_outcome_cannot_be_canceled(job: Job) -> None:
    refusal = operator.cancel_refusal(job)
    assert isinstance(refusal, WrongState)
    assert refusal.state == job.state.value
    assert not operator.may_cancel(job)
    assert not operator.canceled_by_operator(job)
