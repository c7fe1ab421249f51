"""The public job view's operator fields (httpapi.job_view) and the action replies: pure, no fakes."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shared import httpapi
from shared.core import submission
from shared.core.completion import MoveOutcome, filed
from shared.core.operator import canceled
from shared.errors import InputGone
from shared.models import BlobRef, Job, JobState, Stage

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
REF = BlobRef("acct", "incoming", "x.csv", "0x8D1", 120, "https://acct.blob.core.windows.net/incoming/x.csv")


def received() -> Job:
    return submission.received(REF, T0)


def test_a_new_job_has_run_one_no_links_no_durations_and_may_be_canceled() -> None:
    view = httpapi.job_view(received())
    assert (view["run"], view["previousJobId"], view["redrivenTo"]) == (1, None, None)
    assert view["timeline"] == {"receivedAt": "2026-11-22T09:00:00Z", "submittedAt": None, "startedAt": None,
                                "finishedAt": None}  # fmt: skip
    assert view["durations"] == {"queuedSeconds": None, "runningSeconds": None, "totalSeconds": None}
    assert view["actions"] == {"redrive": False, "cancel": True}
    assert view["events"] == []
    json.dumps(view)  # JSON all the way down


def test_a_completed_job_has_its_timeline_durations_events_and_output_url() -> None:
    job = replace(
        received(),
        state=JobState.COMPLETED,
        stage=Stage.DONE,
        attempt=1,
        submitted_at=T0 + timedelta(seconds=2),
        started_at=T0 + timedelta(seconds=62.5),
        finished_at=T0 + timedelta(minutes=5),
        predictions_container="predictions",
        predictions_name="x.csv.predictions.csv",
        predictions_url="https://acct.blob.core.windows.net/predictions/x.csv.predictions.csv?sv=1&sig=secret",
        rows_out=2,
        rows_missing=0,
        events_pending=("DropScore.JobSubmitted", "DropScore.JobCompleted"),
        events_published=("DropScore.JobSubmitted",),
    )
    view = httpapi.job_view(job)
    assert view["timeline"]["startedAt"] == "2026-11-22T09:01:02.500000Z"
    assert view["durations"] == {"queuedSeconds": 62.5, "runningSeconds": 237.5, "totalSeconds": 300.0}
    assert view["events"] == [
        {"type": "DropScore.JobSubmitted", "id": f"{job.job_id}-1-JobSubmitted", "published": True},
        {"type": "DropScore.JobCompleted", "id": f"{job.job_id}-1-JobCompleted", "published": False},
    ]
    assert view["output"]["url"] == "https://acct.blob.core.windows.net/predictions/x.csv.predictions.csv"
    assert "secret" not in json.dumps(view)
    assert view["actions"] == {"redrive": False, "cancel": False}


def test_a_job_that_never_started_was_queued_until_it_finished() -> None:
    job = canceled(received(), T0 + timedelta(seconds=30))
    assert httpapi.job_view(job)["durations"] == {"queuedSeconds": 30.0, "runningSeconds": None, "totalSeconds": 30.0}


def test_a_filed_failure_offers_redrive_until_it_is_redriven() -> None:
    failed = filed(
        submission.ended(received(), JobState.FAILED, "UserError", "boom", T0),
        target="failed",
        outcome=MoveOutcome.MOVED,
        now=T0,
    )
    assert httpapi.job_view(failed)["actions"] == {"redrive": True, "cancel": False}
    redriven = replace(failed, redriven_to="b" * 40)
    view = httpapi.job_view(redriven)
    assert (view["redrivenTo"], view["actions"]["redrive"]) == ("b" * 40, False)
    second = replace(received(), run=2, previous_job_id=failed.job_id)
    assert (httpapi.job_view(second)["run"], httpapi.job_view(second)["previousJobId"]) == (2, failed.job_id)


def test_the_action_replies() -> None:
    old = replace(received(), redriven_to="b" * 40)
    started = httpapi.redrive_reply(old, job_id="b" * 40, run=2, started=True)
    assert started.status == 202
    assert started.body == {"jobId": "b" * 40, "previousJobId": old.job_id, "run": 2, "job": httpapi.job_view(old)}
    assert httpapi.redrive_reply(old, job_id="b" * 40, run=2, started=False) == replace(started, status=200)
    assert httpapi.cancel_reply(old, changed=True).status == 202
    assert httpapi.cancel_reply(old, changed=False).status == 200
    conflict = httpapi.conflict_reply(InputGone("the filed input was deleted", state="Failed"))
    assert conflict == httpapi.Reply(
        409, {"error": {"code": "InputGone", "message": "the filed input was deleted", "state": "Failed"}}
    )
