"""The pure core: keys, every Azure ML status, the stuck policy. No fakes needed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.core import naming as core
from shared.core.decision import Action
from shared.core.polling import STATUS_PHASE, StuckPolicy, decide
from shared.models import Job, JobState, RemoteJob, RemoteStatus

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
POLICY = StuckPolicy(queued_limit=timedelta(hours=6), running_limit=timedelta(hours=2))


def submitted_job(**changes: object) -> Job:
    job = Job(
        job_id="a" * 40,
        state=JobState.SUBMITTED,
        account="acct",
        container="incoming",
        name="x.csv",
        blob_etag="0x1",
        size=10,
        input_url="https://acct.blob.core.windows.net/incoming/x.csv",
        created_at=NOW - timedelta(minutes=10),
        updated_at=NOW - timedelta(minutes=10),
        aml_job_name="dropscore-x-1",
        submitted_at=NOW - timedelta(minutes=9),
    )
    return replace(job, **changes)  # type: ignore[arg-type]


def remote(status: RemoteStatus, **changes: object) -> RemoteJob:
    return replace(RemoteJob(name="dropscore-x-1", status=status), **changes)  # type: ignore[arg-type]


def test_job_key_is_stable_and_ignores_etag_quotes() -> None:
    assert core.job_key("a", "c", "dir/x.csv", '"0x8D1"') == core.job_key("a", "c", "dir/x.csv", "0x8D1")


def test_job_key_differs_per_version_and_is_table_safe() -> None:
    first = core.job_key("a", "c", "dir/x.csv", "0x1")
    assert first != core.job_key("a", "c", "dir/x.csv", "0x2")
    assert first != core.job_key("a", "c", "dir/y.csv", "0x1")
    assert len(first) == 40
    assert not set(first) & set("/\\#?")


def test_names_and_paths_are_deterministic_per_attempt() -> None:
    key = core.job_key("a", "c", "x.csv", "0x1")
    assert core.aml_job_name(key, 1) == core.aml_job_name(key, 1) != core.aml_job_name(key, 2)
    assert core.repeatability_id(key, 1) == core.repeatability_id(key, 1) != core.repeatability_id(key, 2)
    assert core.aml_output_path("p", key, 1) == f"p/{key}/1/predictions.csv"
    assert core.datastore_uri("ds", "p/q.csv") == "azureml://datastores/ds/paths/p/q.csv"


@pytest.mark.parametrize(
    ("status", "action", "state"),
    [
        (RemoteStatus.NOT_STARTED, Action.WAIT, JobState.SUBMITTED),
        (RemoteStatus.STARTING, Action.WAIT, JobState.SUBMITTED),
        (RemoteStatus.PROVISIONING, Action.WAIT, JobState.SUBMITTED),
        (RemoteStatus.PREPARING, Action.WAIT, JobState.SUBMITTED),
        (RemoteStatus.QUEUED, Action.WAIT, JobState.SUBMITTED),
        (RemoteStatus.RUNNING, Action.WAIT, JobState.RUNNING),
        (RemoteStatus.FINALIZING, Action.WAIT, JobState.RUNNING),
        (RemoteStatus.CANCEL_REQUESTED, Action.WAIT, JobState.SUBMITTED),
        (RemoteStatus.COMPLETED, Action.FINISH, JobState.SCORED),
        (RemoteStatus.FAILED, Action.FINISH, JobState.FAILED),
        (RemoteStatus.CANCELED, Action.FINISH, JobState.CANCELED),
        (RemoteStatus.NOT_RESPONDING, Action.WAIT, JobState.SUBMITTED),
        (RemoteStatus.PAUSED, Action.WAIT, JobState.SUBMITTED),
        (RemoteStatus.UNKNOWN, Action.WAIT, JobState.SUBMITTED),
    ],
)
def test_every_azure_ml_status_has_a_decision(status: RemoteStatus, action: Action, state: JobState) -> None:
    decision = decide(submitted_job(), remote(status), NOW, POLICY)
    assert (decision.action, decision.job.state) == (action, state)
    assert decision.job.aml_status == status.value


def test_the_status_table_covers_the_whole_enum() -> None:
    assert set(STATUS_PHASE) == set(RemoteStatus)


def test_unrecognised_status_text_is_unknown_and_keeps_polling() -> None:
    assert RemoteStatus.parse("Succeeded-ish") is RemoteStatus.UNKNOWN
    assert RemoteStatus.parse("completed") is RemoteStatus.COMPLETED
    decision = decide(submitted_job(), remote(RemoteStatus.parse(None)), NOW, POLICY)
    assert decision.action is Action.WAIT


def test_failed_keeps_the_service_error() -> None:
    decision = decide(submitted_job(), remote(RemoteStatus.FAILED, error_code="E1", error_message="boom"), NOW, POLICY)
    assert (decision.job.error_code, decision.job.error_message) == ("E1", "boom")
    assert decision.job.finished_at == NOW


def test_running_records_when_it_started_once() -> None:
    first = decide(submitted_job(), remote(RemoteStatus.RUNNING), NOW, POLICY).job
    later = decide(first, remote(RemoteStatus.RUNNING), NOW + timedelta(minutes=5), POLICY).job
    assert first.started_at == later.started_at == NOW


def test_queued_limit_applies_while_waiting_only() -> None:
    old = submitted_job(submitted_at=NOW - timedelta(hours=6, minutes=1))
    assert decide(old, remote(RemoteStatus.QUEUED), NOW, POLICY).action is Action.CANCEL
    young = submitted_job(submitted_at=NOW - timedelta(hours=5, minutes=59))
    assert decide(young, remote(RemoteStatus.QUEUED), NOW, POLICY).action is Action.WAIT


def test_running_limit_counts_from_the_start_of_running_not_submission() -> None:
    job = submitted_job(
        state=JobState.RUNNING,
        submitted_at=NOW - timedelta(hours=5),
        started_at=NOW - timedelta(hours=1, minutes=59),
    )
    assert decide(job, remote(RemoteStatus.RUNNING), NOW, POLICY).action is Action.WAIT
    over = replace(job, started_at=NOW - timedelta(hours=2, minutes=1))
    decision = decide(over, remote(RemoteStatus.RUNNING), NOW, POLICY)
    assert decision.action is Action.CANCEL
    assert decision.job.state is JobState.TIMED_OUT
    assert "running for more than 120 minutes" in decision.job.error_message


def test_uncertain_status_is_bounded_by_the_limits() -> None:
    job = submitted_job(state=JobState.RUNNING, started_at=NOW - timedelta(hours=3))
    assert decide(job, remote(RemoteStatus.NOT_RESPONDING), NOW, POLICY).action is Action.CANCEL


def test_a_finished_job_never_moves_backwards() -> None:
    done = submitted_job(state=JobState.SCORED)
    decision = decide(done, remote(RemoteStatus.RUNNING), NOW, POLICY)
    assert decision.action is Action.WAIT
    assert decision.job is done


def test_completion_message_round_trip_and_rejects_garbage() -> None:
    assert core.parse_completion_message(core.completion_message("abc")) == "abc"
    for bad in ["", "{}", '{"jobId": 3}', "not json", "[]"]:
        with pytest.raises(ValueError, match="completion message"):
            core.parse_completion_message(bad)
