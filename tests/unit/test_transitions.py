"""Every state transition as a pure function: a job, the facts, the clock in; the next job and the action out.

No fakes, no I/O: these are the rules the use cases carry out.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.core import completion, naming, polling, submission
from shared.core.decision import Action
from shared.core.naming import aml_job_name, job_key
from shared.errors import BlobChanged, BlobMissing
from shared.models import REMOTE_DONE, BlobInfo, BlobRef, EventType, Job, JobState, RemoteJob, RemoteStatus, Stage

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)
PLAN = submission.SubmitPlan(
    endpoint="https://ep.westeurope.inference.ml.azure.com/jobs",
    deployment="blue",
    input_datastore=None,
    output_datastore="outs",
    output_container="aml-outputs",
    output_prefix="dropscore",
    lease=LEASE,
    max_posts=3,
)
REF = BlobRef("acct", "incoming", "day/x.csv", "0x8D1", 120, "https://acct.blob.core.windows.net/incoming/day/x.csv")
POLICY = polling.StuckPolicy(queued_limit=timedelta(hours=6), running_limit=timedelta(hours=2))
STAGE_ORDER = [Stage.WORKING, Stage.ENDED, Stage.FILED, Stage.DONE]


def fresh() -> Job:
    return submission.received(REF, NOW)


def intent(job: Job | None = None, *, new_attempt: bool = True) -> Job:
    decision = submission.submit_intent(job or fresh(), PLAN, NOW, new_attempt=new_attempt)
    assert decision.action is Action.POST
    return decision.job


def running_job() -> Job:
    return submission.submitted(intent(), RemoteJob(aml_job_name(fresh().job_id, 1), RemoteStatus.QUEUED), NOW)


# ---- submission


def test_a_received_job_is_keyed_by_its_blob_version_and_is_working() -> None:
    job = fresh()
    assert job.job_id == job_key("acct", "incoming", "day/x.csv", "0x8D1")
    assert (job.state, job.stage, job.created_at) == (JobState.RECEIVED, Stage.WORKING, NOW)
    assert submission.intake_step(job, NOW) is submission.IntakeStep.VALIDATE


def test_the_intent_is_deterministic_per_attempt_and_takes_a_lease() -> None:
    first = intent()
    assert (first.state, first.attempt, first.posts) == (JobState.SUBMITTING, 1, 1)
    assert first.output_uri == f"azureml://datastores/outs/paths/dropscore/{first.job_id}/1/predictions.csv"
    assert first.input_uri == REF.url
    assert first.submit_lease_until == NOW + LEASE
    resend = intent(first, new_attempt=False)
    assert (resend.attempt, resend.posts, resend.aml_job_name) == (1, 2, first.aml_job_name)
    second = intent(first, new_attempt=True)
    assert (second.attempt, second.output_path) == (2, f"dropscore/{first.job_id}/2/predictions.csv")


def test_an_input_datastore_names_the_input_by_its_path() -> None:
    decision = submission.submit_intent(fresh(), replace(PLAN, input_datastore="ins"), NOW, new_attempt=True)
    assert decision.job.input_uri == "azureml://datastores/ins/paths/day/x.csv"


def test_the_post_budget_ends_the_job_failed_instead_of_posting() -> None:
    spent = replace(fresh(), posts=3, error_message="HTTP 503")
    decision = submission.submit_intent(spent, PLAN, NOW, new_attempt=False)
    assert decision.action is Action.FINISH
    job = decision.job
    assert (job.state, job.stage, job.error_code) == (JobState.FAILED, Stage.ENDED, "SubmitGaveUp")
    assert "gave up after 3 invoke attempts: HTTP 503" in job.error_message


def test_submitted_queues_job_submitted_once_and_clears_the_lease() -> None:
    remote = RemoteJob("dropscore-x-1", RemoteStatus.QUEUED, studio_url="https://ml.azure.com/runs/x")
    job = submission.submitted(intent(), remote, NOW)
    assert (job.state, job.aml_status, job.submit_lease_until) == (JobState.SUBMITTED, "Queued", None)
    assert job.events_pending == (EventType.JOB_SUBMITTED.value,)
    assert submission.submitted(job, remote, NOW).events_pending == (EventType.JOB_SUBMITTED.value,)


@pytest.mark.parametrize(("ambiguous", "lease_until"), [(True, NOW + LEASE), (False, NOW)])
def test_an_unanswered_post_keeps_its_lease_only_when_it_may_have_landed(
    ambiguous: bool, lease_until: datetime
) -> None:
    job = submission.post_unanswered(intent(), ambiguous=ambiguous, code="ScoringUnavailable", message="x", now=NOW)
    assert (job.state, job.submit_ambiguous, job.submit_lease_until) == (JobState.SUBMITTING, ambiguous, lease_until)
    assert submission.needs_new_attempt(job) is ambiguous


def test_a_late_post_outcome_applies_only_to_the_post_it_answers() -> None:
    sent = intent()
    assert submission.still_waiting_on(sent, sent)
    assert not submission.still_waiting_on(intent(sent, new_attempt=False), sent)
    assert not submission.still_waiting_on(replace(sent, state=JobState.SUBMITTED), sent)
    assert not submission.still_waiting_on(None, sent)


def test_intake_steps_follow_the_lease_and_the_stage() -> None:
    step = submission.intake_step
    held = intent()
    assert step(held, NOW) is submission.IntakeStep.WAIT_FOR_LEASE
    assert step(held, NOW + LEASE) is submission.IntakeStep.RECONCILE
    assert step(running_job(), NOW) is submission.IntakeStep.PUBLISH
    rejected = submission.ended(fresh(), JobState.REJECTED, "NotCsv", "no", NOW)
    assert step(rejected, NOW) is submission.IntakeStep.FINISH
    scored = submission.scored_by_earlier_post(held, NOW)
    assert step(scored, NOW) is submission.IntakeStep.PUBLISH  # joined by the completion queue only


# ---- polling


@pytest.mark.parametrize(
    ("job", "indexed_at", "now", "expected"),
    [
        (None, NOW, NOW + timedelta(seconds=10), polling.PollStep.BEING_CREATED),
        (None, NOW, NOW + LEASE, polling.PollStep.REMOVE_ORPHAN),
        (None, None, NOW, polling.PollStep.REMOVE_ORPHAN),
        (replace(fresh(), stage=Stage.DONE), None, NOW, polling.PollStep.HEAL_INDEX),
        (running_job(), None, NOW, polling.PollStep.CHECK_REMOTE),
        (submission.ended(fresh(), JobState.FAILED, "x", "y", NOW), None, NOW, polling.PollStep.ENSURE_COMPLETION),
        (intent(), None, NOW, polling.PollStep.SUBMITTING),
        (intent(), None, NOW + LEASE, polling.PollStep.RESUME),
        (fresh(), None, NOW + timedelta(seconds=10), polling.PollStep.RECEIVING),
        (fresh(), None, NOW + LEASE, polling.PollStep.RESUME),
    ],
)
def test_each_active_row_gets_one_step(
    job: Job | None, indexed_at: datetime | None, now: datetime, expected: polling.PollStep
) -> None:
    assert polling.poll_step(job, indexed_at=indexed_at, now=now, grace=LEASE) is expected


def test_a_completion_is_requeued_only_when_none_is_recent() -> None:
    ended = submission.ended(running_job(), JobState.FAILED, "x", "y", NOW)
    assert polling.completion_overdue(ended, NOW, timedelta(minutes=10))
    queued = polling.completion_queued(ended, NOW)
    assert not polling.completion_overdue(queued, NOW + timedelta(minutes=9), timedelta(minutes=10))
    assert polling.completion_overdue(queued, NOW + timedelta(minutes=10), timedelta(minutes=10))


def test_a_job_azure_ml_cannot_find_gets_a_grace_period_then_fails() -> None:
    job = running_job()
    assert polling.remote_missing(job, NOW + timedelta(seconds=30), LEASE) is None
    missing = polling.remote_missing(job, NOW + LEASE, LEASE)
    assert missing is not None
    assert (missing.state, missing.stage, missing.error_code) == (JobState.FAILED, Stage.ENDED, "RemoteJobNotFound")


def test_a_quiet_tick_is_not_worth_a_write() -> None:
    job = running_job()
    same = polling.decide(job, RemoteJob(job.aml_job_name, RemoteStatus.QUEUED), NOW, POLICY).job
    assert not polling.worth_writing(job, same)
    moved = polling.decide(job, RemoteJob(job.aml_job_name, RemoteStatus.PREPARING), NOW, POLICY).job
    assert polling.worth_writing(job, moved)


@given(st.lists(st.sampled_from(list(RemoteStatus)), max_size=12), st.integers(min_value=0, max_value=600))
def test_stage_and_state_never_move_backwards_whatever_azure_ml_says(statuses: list[RemoteStatus], step: int) -> None:
    job, now = running_job(), NOW
    for status in statuses:
        now += timedelta(minutes=step)
        before = job
        job = polling.decide(job, RemoteJob(job.aml_job_name, status), now, POLICY).job
        assert STAGE_ORDER.index(job.stage) >= STAGE_ORDER.index(before.stage)
        if before.state in REMOTE_DONE:
            assert job is before
        assert (job.stage is Stage.ENDED) == (job.state in REMOTE_DONE)


# ---- completion


def scored() -> Job:
    return polling.decide(running_job(), RemoteJob("n", RemoteStatus.COMPLETED), NOW, POLICY).job


def info(etag: str, **metadata: str) -> BlobInfo:
    return BlobInfo(etag=etag, size=1, metadata=metadata)


def test_our_input_is_the_pinned_version_or_our_archived_copy() -> None:
    job = scored()
    where = completion.our_input
    found = where(job, current=info('"0x8D1"'), archived=None, archive_container="processed")
    assert found == completion.BlobVersion("incoming", "day/x.csv", "0x8D1")
    ours = info("0xA", **{completion.MOVED_BY: job.job_id})
    assert where(job, current=None, archived=ours, archive_container="processed").container == "processed"
    with pytest.raises(BlobChanged):
        where(job, current=info("0x9"), archived=info("0xA", **{completion.MOVED_BY: "other"}), archive_container="p")
    with pytest.raises(BlobMissing):
        where(job, current=None, archived=None, archive_container="processed")


def test_delivery_completes_the_job_and_queues_job_completed_in_the_same_write() -> None:
    delivery = completion.Delivery(
        container="predictions",
        name="day/x.csv.predictions.csv",
        url="https://acct.blob.core.windows.net/predictions/day/x.csv.predictions.csv",
        archive_container="processed",
        archived=completion.MoveOutcome.MOVED,
        rows_in=3,
        rows_out=2,
        rows_missing=1,
    )
    job = completion.delivered(scored(), delivery, NOW)
    assert (job.state, job.stage, job.rows_missing, job.archive_container) == (
        JobState.COMPLETED,
        Stage.FILED,
        1,
        "processed",
    )
    assert job.events_pending[-1] == EventType.JOB_COMPLETED.value


def delivery_with(drift: dict[str, object] | None) -> completion.Delivery:
    return completion.Delivery(
        container="predictions",
        name="day/x.csv.predictions.csv",
        url="https://acct.blob.core.windows.net/predictions/day/x.csv.predictions.csv",
        archive_container="processed",
        archived=completion.MoveOutcome.MOVED,
        rows_in=3,
        rows_out=3,
        rows_missing=0,
        drift=drift,
    )


def drift_summary(verdict: str, drifted: list[str] | None = None) -> dict[str, object]:
    return {
        "verdict": verdict,
        "reason": None if verdict != "not_computed" else "the input has no rows",
        "driftedFeatures": drifted or [],
        "driftedShare": 0.5 if drifted else 0.0,
        "threshold": {"psi": 0.2, "share": 0.5},
        "rowsProfiled": 3,
        "top": [],
        "prediction": None,
        "report": {"container": "predictions", "name": "day/x.csv.drift.json"},
    }


def test_a_delivery_without_a_reference_keeps_no_drift_and_queues_job_completed_alone() -> None:
    job = completion.delivered(scored(), delivery_with(None), NOW)
    assert job.drift == ""
    assert completion.unpublished(job) == [EventType.JOB_SUBMITTED.value, EventType.JOB_COMPLETED.value]


@pytest.mark.parametrize("verdict", ["no_drift", "not_computed"])
def test_a_summary_without_drift_is_kept_and_announces_nothing_more(verdict: str) -> None:
    summary = drift_summary(verdict)
    job = completion.delivered(scored(), delivery_with(summary), NOW)
    assert json.loads(job.drift) == summary
    assert job.drift == json.dumps(summary, separators=(",", ":"), sort_keys=True)
    assert EventType.DRIFT_DETECTED.value not in job.events_pending


def test_drift_queues_drift_detected_before_job_completed_in_the_same_write() -> None:
    job = completion.delivered(scored(), delivery_with(drift_summary("drift", ["carat"])), NOW)
    assert job.events_pending[-2:] == (EventType.DRIFT_DETECTED.value, EventType.JOB_COMPLETED.value)
    assert json.loads(job.drift)["driftedFeatures"] == ["carat"]
    again = completion.delivered(job, delivery_with(drift_summary("drift", ["carat"])), NOW)
    assert again.events_pending == job.events_pending  # a repeat queues nothing twice


def test_a_drifted_job_closes_only_once_both_events_are_out() -> None:
    job = completion.delivered(scored(), delivery_with(drift_summary("drift", ["carat"])), NOW)
    job = completion.published(job, [EventType.JOB_SUBMITTED.value], NOW)
    only_completed = completion.published(job, [EventType.JOB_COMPLETED.value], NOW)
    assert completion.unpublished(only_completed) == [EventType.DRIFT_DETECTED.value]
    assert completion.closed(only_completed, NOW) is None
    assert polling.summary_of(only_completed).events_pending
    everything = completion.published(only_completed, [EventType.DRIFT_DETECTED.value], NOW)
    done = completion.closed(everything, NOW)
    assert done is not None
    assert done.stage is Stage.DONE


def test_every_event_type_has_its_own_id() -> None:
    ids = {naming.event_id("a" * 40, event_type, 1) for event_type in EventType}
    assert len(ids) == len(EventType)
    assert naming.event_id("a" * 40, EventType.DRIFT_DETECTED, 2) == f"{'a' * 40}-2-DriftDetected"


def test_a_huge_list_of_drifted_features_is_cut_to_fit_the_ledger() -> None:
    names = [f"column_{index:05d}" for index in range(5000)]
    summary = drift_summary("drift", names)
    column = completion.drift_column(summary)
    assert len(column) <= completion.DRIFT_MAX_CHARS
    kept = json.loads(column)
    assert kept["driftedFeatures"] == names[: len(kept["driftedFeatures"])]
    assert kept["driftedFeaturesOmitted"] == len(names) - len(kept["driftedFeatures"]) > 0
    assert {key: kept[key] for key in summary if key != "driftedFeatures"} == {
        key: value for key, value in summary.items() if key != "driftedFeatures"
    }
    assert completion.drift_column(drift_summary("drift", names[:10])) == json.dumps(
        drift_summary("drift", names[:10]), separators=(",", ":"), sort_keys=True
    )


def test_drift_report_names_sit_beside_the_predictions() -> None:
    assert naming.drift_report_name("day/x.csv") == "day/x.csv.drift.json"


def test_unusable_output_fails_the_job_before_anything_is_filed() -> None:
    job = completion.undeliverable(scored(), code="BlobMissing", reason="no predictions file", now=NOW)
    assert (job.state, job.stage, job.error_code) == (JobState.FAILED, Stage.ENDED, "BlobMissing")
    assert job.error_message == "Azure ML reported Completed but its output is unusable: no predictions file"


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (JobState.REJECTED, EventType.INPUT_REJECTED),
        (JobState.FAILED, EventType.JOB_FAILED),
        (JobState.CANCELED, EventType.JOB_FAILED),
        (JobState.TIMED_OUT, EventType.JOB_FAILED),
    ],
)
def test_filing_queues_the_one_final_event(state: JobState, event: EventType) -> None:
    ended = submission.ended(fresh(), state, "E", "m", NOW)
    job = completion.filed(ended, target="failed", outcome=completion.MoveOutcome.MOVED, now=NOW)
    assert (job.stage, job.archive_container, job.events_pending) == (Stage.FILED, "failed", (event.value,))
    assert job.input_not_moved == ""


def test_filing_an_input_that_was_not_moved_says_why_and_never_where() -> None:
    ended = submission.ended(fresh(), JobState.FAILED, "E", "m", NOW)
    job = completion.filed(ended, target="failed", outcome=completion.MoveOutcome.GONE, now=NOW)
    assert (job.archive_container, job.input_not_moved) == ("", "gone")


def test_an_input_replaced_deleted_or_badly_named_is_not_tried() -> None:
    assert (
        completion.move_not_needed(submission.ended(fresh(), JobState.FAILED, "ScoringAuthorization", "m", NOW)) is None
    )
    expected = {
        BlobChanged.code: completion.MoveOutcome.OVERWRITTEN,
        BlobMissing.code: completion.MoveOutcome.GONE,
        "BadName": completion.MoveOutcome.NAME_UNUSABLE,
    }
    for code, outcome in expected.items():
        assert completion.move_not_needed(submission.ended(fresh(), JobState.REJECTED, code, "m", NOW)) is outcome


def test_before_a_move_only_our_own_copy_counts_as_moved() -> None:
    job = scored()
    ours = info("0xA", **{completion.MOVED_BY: job.job_id})
    theirs = info("0xB", **{completion.MOVED_BY: "another-job"})
    before = completion.before_move
    assert before(job, source=info('"0x8D1"'), at_target=None) is None  # ours, still there: copy it
    assert before(job, source=None, at_target=ours) is completion.MoveOutcome.ALREADY_MOVED
    assert before(job, source=None, at_target=theirs) is completion.MoveOutcome.GONE
    assert before(job, source=None, at_target=None) is completion.MoveOutcome.GONE
    assert before(job, source=info("0x9"), at_target=theirs) is completion.MoveOutcome.OVERWRITTEN
    assert before(job, source=info("0x9"), at_target=ours) is completion.MoveOutcome.ALREADY_MOVED


def test_completion_gives_up_a_scored_job_with_its_last_error() -> None:
    noted = completion.completion_failed(scored(), error="StorageRequestRejected: HTTP 400", now=NOW)
    gave_up = completion.completion_given_up(noted, why="completion did not finish after 5 attempts", now=NOW)
    assert (gave_up.state, gave_up.stage, gave_up.error_code) == (JobState.FAILED, Stage.ENDED, "CompletionGaveUp")
    assert gave_up.error_message == (
        "completion did not finish after 5 attempts; last error: StorageRequestRejected: HTTP 400"
    )
    failed = submission.ended(fresh(), JobState.FAILED, "UserError", "boom", NOW)
    assert completion.completion_given_up(failed, why="x", now=NOW) is failed  # keeps its own error


def test_completion_attempts_are_counted_and_bounded() -> None:
    job = scored()
    for _ in range(3):
        job = polling.completion_queued(job, NOW)
    assert job.completion_attempts == 3
    assert not polling.completion_exhausted(job, 4)
    assert polling.completion_exhausted(job, 3)


def test_a_row_written_a_moment_ago_is_left_to_its_writer() -> None:
    job = replace(fresh(), updated_at=NOW)
    assert not polling.settled(job, NOW + timedelta(seconds=59), timedelta(seconds=60))
    assert polling.settled(job, NOW + timedelta(seconds=60), timedelta(seconds=60))


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("a/../b.csv", "'..' path segment"),
        ("./b.csv", "'.' or '..'"),
        ("a//b.csv", "empty"),
        ("bad\x07bell.csv", "control"),
        ("line\nbreak.csv", "control"),
        ("invoice\u202egnp.csv", "bidirectional"),
        ("/".join(["x" * 200] * 5) + "z.csv", "1009 characters long"),
        ("d/" + "s" * 252 + ".csv", "256 bytes"),
        ("d/" + "é" * 126 + ".csv", "256 bytes"),
    ],
)
def test_hostile_names_are_refused_with_the_reason(name: str, problem: str) -> None:
    found = naming.name_problem(name)
    assert found is not None
    assert problem in found


@pytest.mark.parametrize(
    "name", ["a.csv", "dir/sub/x y #1 ?%.csv", "données/é.csv", "/".join(["y" * 200] * 5) + ".csv", "s" * 251 + ".csv"]
)
def test_ordinary_names_pass(name: str) -> None:
    assert naming.name_problem(name) is None


def test_a_job_is_done_only_when_filed_and_every_event_is_out() -> None:
    ended = submission.ended(fresh(), JobState.REJECTED, "NotCsv", "m", NOW)
    assert completion.closed(ended, NOW) is None  # not filed yet
    filed = completion.filed(ended, target="rejected", outcome=completion.MoveOutcome.MOVED, now=NOW)
    assert completion.closed(filed, NOW) is None  # InputRejected still pending
    assert completion.unpublished(filed) == [EventType.INPUT_REJECTED.value]
    out = completion.published(filed, completion.unpublished(filed), NOW)
    done = completion.closed(out, NOW)
    assert done is not None
    assert (done.stage, done.finalized) == (Stage.DONE, True)


def test_published_names_merge_with_what_another_writer_recorded() -> None:
    job = replace(fresh(), events_pending=("A", "B"), events_published=("B",))
    assert completion.published(job, ["A", "B"], NOW).events_published == ("B", "A")
