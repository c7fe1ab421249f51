"""The use cases against in-memory fakes: duplicates, crashes, races, failures, the whole life of a job."""

from __future__ import annotations

import json

import pytest

from shared.errors import ScoringAuthError, ScoringRequestError, ScoringUnavailable
from shared.events import cloudevent_json
from shared.httpapi import job_view
from shared.models import EventType, InvokeRequest, JobState, RemoteJob, RemoteStatus
from shared.usecases import complete, intake, poll, queries
from tests.eventschemas import assert_valid
from tests.fakes import SimulatedCrash, World, make_world, write_predictions

CSV = b"carat,cut\n0.3,Ideal\n0.4,Good\n1.1,Premium\n"


def drop(world: World, name: str = "batch/day1.csv", data: bytes = CSV) -> str:
    etag = world.blobs.put("incoming", name, data)
    intake.accept_blob(
        world.deps,
        container="incoming",
        name=name,
        size=len(data),
        etag=f'"{etag}"',
        url=world.blobs.url("incoming", name),
    )
    return etag


def only_job(world: World):
    (job,) = world.store.rows.values()
    return job


def run_completions(world: World) -> None:
    for job_id in world.queue.drain():
        complete.complete(world.deps, job_id)


def assert_events_valid(world: World) -> None:
    for event in world.events.published:
        assert_valid(cloudevent_json(event))


def test_a_good_csv_is_submitted_once_with_a_deterministic_request() -> None:
    world = make_world(BATCH_DEPLOYMENT="blue")
    drop(world)
    job = only_job(world)
    assert job.state is JobState.SUBMITTED
    (post,) = world.scoring.posts
    assert post.input_uri == "https://devstoreaccount1.blob.core.windows.net/incoming/batch/day1.csv"
    assert post.output_uri == f"azureml://datastores/dropscore_outputs/paths/dropscore/{job.job_id}/1/predictions.csv"
    assert post.deployment == "blue"
    assert post.job_name == job.aml_job_name
    assert world.events.types() == [EventType.JOB_SUBMITTED.value]
    assert world.store.active_rows == {job.job_id}
    # validation read a bounded head, never the whole file
    assert world.blobs.ranged_reads == [("incoming", "batch/day1.csv", 0, len(CSV))]
    assert world.blobs.full_reads == []
    assert_events_valid(world)


def test_input_datastore_setting_changes_the_input_uri() -> None:
    world = make_world(AML_INPUT_DATASTORE="incoming_ds")
    drop(world)
    assert world.scoring.posts[0].input_uri == "azureml://datastores/incoming_ds/paths/batch/day1.csv"


def test_duplicate_trigger_for_the_same_version_posts_once() -> None:
    world = make_world()
    etag = drop(world)
    for quoted in (etag, f'"{etag}"'):
        intake.accept_blob(world.deps, container="incoming", name="batch/day1.csv", size=len(CSV), etag=quoted, url="u")
    assert len(world.scoring.posts) == 1
    assert len(world.store.rows) == 1


def test_a_new_upload_over_the_same_name_is_a_new_job() -> None:
    world = make_world()
    drop(world)
    drop(world, data=CSV + b"2.0,Fair\n")
    assert len(world.store.rows) == 2
    assert len(world.scoring.posts) == 2
    assert len({post.output_uri for post in world.scoring.posts}) == 2


def test_a_zero_byte_upload_is_rejected_as_empty_not_ignored() -> None:
    world = make_world()
    drop(world, name="empty.csv", data=b"")
    job = only_job(world)
    assert (job.state, job.error_code, job.finalized) == (JobState.REJECTED, "Empty", True)
    assert world.blobs.names("incoming") == []
    assert world.blobs.data("rejected", "empty.csv") == b""
    assert world.blobs.ranged_reads == []  # nothing to read
    assert world.events.types() == [EventType.INPUT_REJECTED.value]
    assert world.events.published[0].data["input"]["size"] == 0
    assert_events_valid(world)


def test_the_whole_life_of_a_job() -> None:
    world = make_world()
    world.scoring.script = [RemoteStatus.QUEUED, RemoteStatus.RUNNING, RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["512.5", "733", "4410.25"])
    drop(world)
    job_id = only_job(world).job_id

    poll.poll(world.deps)
    assert world.store.rows[job_id].state is JobState.SUBMITTED
    poll.poll(world.deps)
    assert world.store.rows[job_id].state is JobState.RUNNING
    poll.poll(world.deps)
    assert world.store.rows[job_id].state is JobState.SCORED
    assert world.queue.messages == [job_id]
    run_completions(world)

    job = world.store.rows[job_id]
    assert job.state is JobState.COMPLETED
    assert job.finalized
    assert world.store.active_rows == set()
    assert world.blobs.data("predictions", "batch/day1.csv.predictions.csv") == (
        b"carat,cut,prediction\n0.3,Ideal,512.5\n0.4,Good,733\n1.1,Premium,4410.25\n"
    )
    assert world.blobs.names("incoming") == []
    assert world.blobs.data("processed", "batch/day1.csv") == CSV
    assert world.events.types() == [EventType.JOB_SUBMITTED.value, EventType.JOB_COMPLETED.value]
    completed = world.events.published[-1]
    assert completed.data["output"]["rows"] == 3
    assert completed.data["output"]["url"].endswith("/predictions/batch/day1.csv.predictions.csv")
    assert completed.subject == "/blobServices/default/containers/incoming/blobs/batch/day1.csv"
    assert_events_valid(world)
    # a later tick reads nothing: the job left the active index
    assert poll.poll(world.deps).active == 0


def test_a_duplicate_completion_message_is_a_no_op() -> None:
    world = make_world()
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["1", "2", "3"])
    drop(world)
    poll.poll(world.deps)
    (job_id,) = world.queue.drain()
    complete.complete(world.deps, job_id)
    writes = world.store.writes
    complete.complete(world.deps, job_id)
    assert world.store.writes == writes
    assert world.events.types().count(EventType.JOB_COMPLETED.value) == 1


def test_bad_input_is_rejected_moved_and_announced_without_compute() -> None:
    world = make_world(REQUIRED_COLUMNS="carat,color")
    drop(world, name="bad.csv")
    job = only_job(world)
    assert job.state is JobState.REJECTED
    assert job.finalized
    assert world.scoring.posts == []
    assert world.blobs.names("incoming") == []
    assert world.blobs.data("rejected", "bad.csv") == CSV
    reason = json.loads(world.blobs.data("rejected", "bad.csv.reason.json"))
    assert reason["error"]["code"] == "MissingColumns"
    assert "color" in reason["error"]["message"]
    assert world.events.types() == [EventType.INPUT_REJECTED.value]
    assert world.events.published[0].data["error"]["code"] == "MissingColumns"
    assert world.store.active_rows == set()
    assert_events_valid(world)


def test_not_a_csv_is_rejected_without_reading_it() -> None:
    world = make_world()
    drop(world, name="data.json", data=b'{"a": 1}')
    assert only_job(world).error_code == "NotCsv"
    assert world.blobs.ranged_reads == []


def test_a_crash_between_post_and_ledger_update_never_reposts_blindly() -> None:
    world = make_world(SUBMIT_LEASE_SECONDS="60")
    world.store.crash_on_update = lambda job: job.state is JobState.SUBMITTED
    with pytest.raises(SimulatedCrash):
        drop(world)
    world.store.crash_on_update = None
    assert len(world.scoring.posts) == 1
    assert only_job(world).state is JobState.SUBMITTING

    poll.poll(world.deps)  # lease still held: hands off
    assert len(world.scoring.posts) == 1
    world.clock.advance(seconds=61)
    poll.poll(world.deps)  # lease expired: finds the job by its deterministic name
    job = only_job(world)
    assert job.state is JobState.SUBMITTED
    assert len(world.scoring.posts) == 1
    assert job.aml_job_name in world.scoring.jobs


def test_a_duplicate_trigger_after_the_crash_does_not_post_again() -> None:
    world = make_world()
    world.store.crash_on_update = lambda job: job.state is JobState.SUBMITTED
    with pytest.raises(SimulatedCrash):
        etag = drop(world)
    world.store.crash_on_update = None
    etag = next(iter(world.blobs.blobs.values()))[1]
    intake.accept_blob(world.deps, container="incoming", name="batch/day1.csv", size=len(CSV), etag=etag, url="u")
    assert len(world.scoring.posts) == 1


def test_lost_response_that_created_a_job_is_adopted_not_duplicated() -> None:
    world = make_world(SUBMIT_LEASE_SECONDS="30")
    world.scoring.invoke_errors = [ScoringUnavailable("read timeout", ambiguous=True)]
    world.scoring.create_despite_error = True
    drop(world)
    job = only_job(world)
    assert job.state is JobState.SUBMITTING
    assert job.submit_ambiguous
    world.clock.advance(seconds=31)
    poll.poll(world.deps)
    assert only_job(world).state is JobState.SUBMITTED
    assert len(world.scoring.posts) == 1


def test_a_service_that_ignores_our_job_name_gets_a_new_attempt_after_the_lease() -> None:
    world = make_world(SUBMIT_LEASE_SECONDS="30")
    world.scoring.honour_names = False
    world.scoring.invoke_errors = [ScoringUnavailable("read timeout", ambiguous=True)]
    drop(world)
    poll.poll(world.deps)
    assert len(world.scoring.posts) == 1
    world.clock.advance(seconds=31)
    poll.poll(world.deps)  # nothing found by name, no output: re-POST as a new attempt
    posts = world.scoring.posts
    assert len(posts) == 2
    # a duplicate job (if the lost POST did create one) writes elsewhere and cannot fail ours
    assert posts[0].output_uri != posts[1].output_uri
    assert posts[0].repeatability_id != posts[1].repeatability_id
    assert only_job(world).attempt == 2


def test_throttling_after_retries_leaves_submitting_and_the_next_tick_resubmits() -> None:
    world = make_world()
    world.scoring.invoke_errors = [ScoringUnavailable("HTTP 429 after retries", ambiguous=False)]
    drop(world)
    assert only_job(world).state is JobState.SUBMITTING
    poll.poll(world.deps)
    assert only_job(world).state is JobState.SUBMITTED
    assert len(world.scoring.posts) == 2


def test_gives_up_after_the_submit_limit() -> None:
    world = make_world(SUBMIT_MAX_ATTEMPTS="2")
    world.scoring.invoke_errors = [ScoringUnavailable("HTTP 503", ambiguous=False) for _ in range(5)]
    drop(world)
    poll.poll(world.deps)
    poll.poll(world.deps)
    job = only_job(world)
    assert job.state is JobState.FAILED
    assert job.error_code == "SubmitGaveUp"
    assert len(world.scoring.posts) == 2
    assert world.blobs.names("failed") == ["batch/day1.csv"]
    assert world.events.types() == [EventType.JOB_FAILED.value]


def test_missing_rights_fail_the_job_naming_the_role() -> None:
    world = make_world()
    world.scoring.invoke_errors = [ScoringAuthError("HTTP 403: AuthorizationFailed. Grant ... AzureML Data Scientist")]
    drop(world)
    job = only_job(world)
    assert job.state is JobState.FAILED
    assert "AzureML Data Scientist" in job.error_message
    assert world.events.published[-1].data["error"]["code"] == "ScoringAuthorization"
    assert_events_valid(world)


def test_a_rejected_request_fails_with_the_service_message() -> None:
    world = make_world()
    world.scoring.invoke_errors = [ScoringRequestError("HTTP 400: Job output type must be 'uri_file'.")]
    drop(world)
    assert "uri_file" in only_job(world).error_message
    assert world.blobs.names("failed") == ["batch/day1.csv"]


def test_a_failed_azure_ml_job_publishes_job_failed_with_its_error() -> None:
    world = make_world()
    world.scoring.script = [RemoteStatus.RUNNING, RemoteStatus.FAILED]
    world.scoring.failure = ("UserError", "ValueError: could not convert string to float: 'x'")
    drop(world)
    poll.poll(world.deps)
    poll.poll(world.deps)
    run_completions(world)
    job = only_job(world)
    assert (job.state, job.finalized) == (JobState.FAILED, True)
    failed = world.events.published[-1]
    assert failed.type == EventType.JOB_FAILED.value
    assert failed.data["error"] == {
        "code": "UserError",
        "message": "ValueError: could not convert string to float: 'x'",
    }
    assert world.blobs.names("failed") == ["batch/day1.csv"]
    assert_events_valid(world)


def test_a_stuck_job_is_canceled_and_reported() -> None:
    world = make_world(
        QUEUED_LIMIT_MINUTES="30", AML_WORKSPACE_ID="/subscriptions/s/resourceGroups/r/providers/x/workspaces/w"
    )
    drop(world)
    world.clock.advance(minutes=31)
    poll.poll(world.deps)
    run_completions(world)
    job = only_job(world)
    assert job.state is JobState.TIMED_OUT
    assert world.scoring.canceled == [job.aml_job_name]
    assert world.events.published[-1].data["error"]["code"] == "JobTimedOut"


def test_a_412_on_a_poll_update_reloads_and_decides_again() -> None:
    world = make_world()
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["1", "2", "3"])
    drop(world)
    job_id = only_job(world).job_id
    # another instance records Running while we poll
    world.store.before_update = lambda _: world.store.touch_elsewhere(job_id, state=JobState.RUNNING)
    poll.poll(world.deps)
    job = world.store.rows[job_id]
    assert job.state is JobState.SCORED
    assert world.queue.messages == [job_id]


def test_a_412_never_overwrites_someone_elses_terminal_transition() -> None:
    world = make_world()
    world.scoring.script = [RemoteStatus.RUNNING]
    drop(world)
    job_id = only_job(world).job_id
    world.store.before_update = lambda _: world.store.touch_elsewhere(job_id, state=JobState.CANCELED)
    assert poll.poll_job(world.deps, job_id) == "moved-elsewhere"
    assert world.store.rows[job_id].state is JobState.CANCELED


def test_events_stay_pending_while_the_topic_is_down_and_go_out_later() -> None:
    world = make_world()
    world.events.fail_next = 1
    drop(world)
    job = only_job(world)
    assert job.events_pending == (EventType.JOB_SUBMITTED.value,)
    assert job.events_published == ()
    poll.poll(world.deps)  # the row was written a moment ago: left to its writer (OUTBOX_GRACE_SECONDS)
    assert world.events.types() == []
    world.clock.advance(seconds=60)
    poll.poll(world.deps)
    assert only_job(world).events_published == (EventType.JOB_SUBMITTED.value,)
    assert world.events.types() == [EventType.JOB_SUBMITTED.value]


def test_a_lost_completion_message_is_requeued_by_the_poller() -> None:
    world = make_world(COMPLETION_REDELIVERY_SECONDS="120")
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["1", "2", "3"])
    drop(world)
    poll.poll(world.deps)
    world.queue.drain()  # the message is lost
    poll.poll(world.deps)
    assert world.queue.messages == []
    world.clock.advance(seconds=121)
    poll.poll(world.deps)
    run_completions(world)
    assert only_job(world).state is JobState.COMPLETED


def test_completed_without_predictions_becomes_failed() -> None:
    world = make_world()
    world.scoring.script = [RemoteStatus.COMPLETED]
    drop(world)
    poll.poll(world.deps)
    run_completions(world)
    job = only_job(world)
    assert job.state is JobState.FAILED
    assert "no predictions file" in job.error_message
    assert world.events.types()[-1] == EventType.JOB_FAILED.value


def test_an_index_row_for_a_finished_job_is_healed() -> None:
    world = make_world(REQUIRED_COLUMNS="nope")
    drop(world)
    job = only_job(world)
    world.store.active_rows.add(job.job_id)  # crash after finalizing, before leaving the index
    assert poll.poll(world.deps).outcomes == {"index-healed": 1}
    assert world.store.active_rows == set()


def test_http_views_carry_no_query_strings_and_filter_by_state() -> None:
    world = make_world()
    drop(world)
    drop(world, name="b.txt", data=b"x")
    jobs = [
        job_view(job)
        for job in queries.list_jobs(world.deps, state=JobState.REJECTED, prefix="", limit=10, after="").jobs
    ]
    assert [job["input"]["name"] for job in jobs] == ["b.txt"]
    job = queries.get_job(world.deps, jobs[0]["jobId"])
    assert job is not None
    assert job_view(job)["error"]["code"] == "NotCsv"
    assert queries.get_job(world.deps, "nope") is None


def test_a_job_not_visible_right_after_invoke_is_given_time() -> None:
    world = make_world(SUBMIT_LEASE_SECONDS="60")
    drop(world)
    job = only_job(world)
    world.scoring.jobs.clear()  # the service does not list it yet
    assert poll.poll_job(world.deps, job.job_id) == "waiting:not-visible-yet"
    world.clock.advance(seconds=61)
    assert poll.poll_job(world.deps, job.job_id) == "failed"
    assert only_job(world).error_code == "RemoteJobNotFound"


def test_lost_rights_while_polling_are_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    world = make_world()
    drop(world)

    def denied(name: str) -> None:
        raise ScoringAuthError("HTTP 403. Grant AzureML Data Scientist")

    world.scoring.get_job = denied  # type: ignore[method-assign,assignment]
    assert poll.poll(world.deps).outcomes == {"error": 1}
    assert "AzureML Data Scientist" in caplog.text
    assert only_job(world).state is JobState.SUBMITTED


def test_no_final_event_before_the_predictions_are_in_place() -> None:
    world = make_world()
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["1", "2", "3"])
    drop(world)
    poll.poll(world.deps)  # Scored, completion queued
    poll.poll(world.deps)  # a tick before the completion runs must not announce anything
    assert world.events.types() == [EventType.JOB_SUBMITTED.value]
    run_completions(world)
    completed = [e for e in world.events.published if e.type == EventType.JOB_COMPLETED.value]
    assert len(completed) == 1
    assert completed[0].data["state"] == "Completed"
    assert completed[0].data["output"]["rows"] == 3


def test_a_failed_remote_job_is_announced_only_after_its_input_is_filed() -> None:
    world = make_world()
    world.scoring.script = [RemoteStatus.FAILED]
    drop(world)
    poll.poll(world.deps)
    poll.poll(world.deps)
    assert world.events.types() == [EventType.JOB_SUBMITTED.value]
    run_completions(world)
    assert world.events.types()[-1] == EventType.JOB_FAILED.value
    assert world.events.published[-1].data["input"]["movedTo"] == "failed"


def test_an_input_overwritten_before_completion_is_never_joined_with_the_new_rows() -> None:
    world = make_world()
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["1", "2", "3"])
    drop(world)
    (first,) = world.store.rows
    poll.poll(world.deps)
    world.scoring.on_complete = None
    world.scoring.script = [RemoteStatus.QUEUED]
    drop(world, data=b"carat,cut\n9.9,Fair\n")  # a new version under the same name
    complete.complete(world.deps, first)
    job = world.store.rows[first]
    assert (job.state, job.error_code) == (JobState.FAILED, "BlobChanged")
    assert world.blobs.names("predictions") == []
    assert world.blobs.data("incoming", "batch/day1.csv") == b"carat,cut\n9.9,Fair\n"  # the new version stays


def test_a_clear_refusal_is_resent_as_the_same_attempt() -> None:
    world = make_world()
    world.scoring.invoke_errors = [ScoringUnavailable("HTTP 429 after retries", ambiguous=False)]
    drop(world)
    poll.poll(world.deps)
    first, second = world.scoring.posts
    assert (first.output_uri, first.repeatability_id) == (second.output_uri, second.repeatability_id)


def test_a_late_post_outcome_never_overwrites_a_newer_intent() -> None:
    world = make_world(SUBMIT_LEASE_SECONDS="30")
    world.scoring.invoke_errors = [ScoringUnavailable("HTTP 429 after retries", ambiguous=False)]
    etag = world.blobs.put("incoming", "x.csv", CSV)
    job_id_holder: list[str] = []

    def newer_intent_elsewhere(job: object) -> None:
        (job_id,) = world.store.rows
        job_id_holder.append(job_id)
        stored = world.store.rows[job_id]
        world.store.touch_elsewhere(job_id, posts=stored.posts + 1)

    original_invoke = world.scoring.invoke

    def slow_invoke(request: InvokeRequest) -> RemoteJob:  # the poller writes a new intent meanwhile
        world.store.before_update = newer_intent_elsewhere
        return original_invoke(request)

    world.scoring.invoke = slow_invoke  # type: ignore[method-assign]
    intake.accept_blob(world.deps, container="incoming", name="x.csv", size=len(CSV), etag=etag, url="u")
    job = world.store.rows[job_id_holder[0]]
    assert job.posts == 2  # the other writer's intent survived; our late 429 outcome was dropped
    assert job.state is JobState.SUBMITTING


def test_a_cancel_that_fails_still_reports_the_job_timed_out() -> None:
    world = make_world(RUNNING_LIMIT_MINUTES="10", AML_WORKSPACE_ID="/subscriptions/s/x/workspaces/w")
    world.scoring.script = [RemoteStatus.RUNNING]
    drop(world)
    poll.poll(world.deps)
    world.clock.advance(minutes=11)

    def refuse(name: str) -> bool:
        raise ScoringAuthError("HTTP 403 on cancel")

    world.scoring.cancel = refuse  # type: ignore[method-assign,assignment]
    poll.poll(world.deps)
    run_completions(world)
    assert only_job(world).state is JobState.TIMED_OUT
    assert world.events.types()[-1] == EventType.JOB_FAILED.value


def test_an_index_row_without_its_ledger_row_is_kept_while_it_may_be_in_creation() -> None:
    world = make_world(SUBMIT_LEASE_SECONDS="60")
    now = world.clock()
    assert poll.poll_job(world.deps, "a" * 40, indexed_at=now) == "being-created"
    world.clock.advance(seconds=61)
    world.store.active_rows.add("a" * 40)
    assert poll.poll_job(world.deps, "a" * 40, indexed_at=now) == "orphan-removed"
    assert world.store.active_rows == set()


def test_an_archived_copy_of_another_version_is_never_joined() -> None:
    world = make_world()
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["1", "2", "3"])
    drop(world)  # v1: completes, processed/batch/day1.csv holds v1
    poll.poll(world.deps)
    run_completions(world)
    drop(world, data=b"carat,cut\n1,A\n2,B\n3,C\n")  # v2
    v2 = next(job for job in world.store.rows.values() if job.state is JobState.SUBMITTED)
    poll.poll(world.deps)  # v2 scored, completion queued
    drop(world, data=b"carat,cut\n7,Z\n")  # v3 arrives before v2's completion runs
    complete.complete(world.deps, v2.job_id)
    job = world.store.rows[v2.job_id]
    assert (job.state, job.error_code) == (JobState.FAILED, "BlobChanged")
    assert world.blobs.data("predictions", "batch/day1.csv.predictions.csv").startswith(b"carat,cut,prediction\n0.3")


def test_a_crash_before_the_input_is_filed_never_announces_the_failure_early() -> None:
    world = make_world()
    world.scoring.invoke_errors = [ScoringAuthError("HTTP 403. Grant AzureML Data Scientist")]
    world.store.crash_on_update = lambda job: job.state is JobState.FAILED and bool(job.archive_container)
    with pytest.raises(SimulatedCrash):
        drop(world)
    world.store.crash_on_update = None
    world.clock.advance(seconds=60)
    poll.poll(world.deps)  # a tick after the crash: the failure is not announced before the move
    assert world.events.types() == []
    run_completions(world)
    assert world.events.types() == [EventType.JOB_FAILED.value]
    assert world.events.published[0].data["input"]["movedTo"] == "failed"


def test_a_job_submitted_event_published_late_still_says_submitted() -> None:
    world = make_world()
    world.scoring.script = [RemoteStatus.RUNNING]
    world.events.fail_next = 2  # the topic is down at submission and at the next tick
    drop(world)
    world.clock.advance(seconds=60)
    poll.poll(world.deps)  # publishing fails again; the job moves to Running
    world.clock.advance(seconds=60)
    poll.poll(world.deps)  # the event finally goes out while the job is Running
    (event,) = world.events.published
    assert event.type == EventType.JOB_SUBMITTED.value
    assert event.data["state"] == "Submitted"
    assert_events_valid(world)
