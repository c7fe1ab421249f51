"""The poll tick reads a ledger row only when Azure ML's answer is news, and calls Azure ML with bounded concurrency.

Fakes only (tests/fakes.py): the job store counts its ledger reads, the scoring endpoint answers from a script.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timedelta

from shared.core.polling import StuckPolicy, nothing_new, summary_of
from shared.models import JobState, JobSummary, RemoteJob, RemoteStatus, Stage
from shared.usecases import intake, poll
from tests.fakes import FakeClock, FakeScoringEndpoint, World, make_world

CSV = b"carat,cut\n0.3,Ideal\n"
NOW = FakeClock().now
POLICY = StuckPolicy(queued_limit=timedelta(minutes=60), running_limit=timedelta(minutes=120))
GRACE = timedelta(seconds=60)


class CountingEndpoint(FakeScoringEndpoint):
    """Status calls (the base fake counts them), each taking `delay` s, with the most in flight at once."""

    def __init__(self, *, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()

    def get_job(self, name: str) -> RemoteJob:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            return super().get_job(name)
        finally:
            with self._lock:
                self.in_flight -= 1


def world_with(*, delay: float = 0.0, **settings: str) -> World:
    world = make_world(**settings)
    world.scoring = CountingEndpoint(delay=delay)
    return world


def submit(world: World, name: str) -> str:
    etag = world.blobs.put("incoming", name, CSV)
    job = intake.accept_blob(
        world.deps, container="incoming", name=name, size=len(CSV), etag=etag, url=world.blobs.url("incoming", name)
    )
    assert job is not None
    assert job.state is JobState.SUBMITTED
    return job.job_id


def scoring(world: World) -> CountingEndpoint:
    assert isinstance(world.scoring, CountingEndpoint)
    return world.scoring


def tick(world: World) -> dict[str, int]:
    """One tick, after which the ledger reads and status calls it made are what the lists hold."""
    world.store.reads.clear()
    scoring(world).status_calls.clear()
    return poll.poll(world.deps).outcomes


# ---- the tick, with fakes ----------------------------------------------------------------------------


def test_an_unchanged_status_costs_one_status_call_and_no_ledger_read() -> None:
    world = world_with()
    job_id = submit(world, "a.csv")
    assert world.store.summaries[job_id].state is JobState.RECEIVED  # intake indexes before it submits
    assert tick(world) == {"waiting:Queued": 1}
    assert world.store.reads == [job_id]  # the first tick reads the row once and records what it found
    assert world.store.summaries[job_id] == summary_of(world.store.rows[job_id])
    writes = world.store.writes
    for _ in range(3):
        assert tick(world) == {"waiting:Queued": 1}
        assert world.store.reads == []
        assert scoring(world).status_calls == [world.store.rows[job_id].aml_job_name]
    assert world.store.writes == writes


def test_a_changed_status_reads_the_row_moves_the_job_and_updates_the_summary() -> None:
    world = world_with()
    scoring(world).script = [RemoteStatus.QUEUED, RemoteStatus.RUNNING]  # invoke's answer, then one per call
    job_id = submit(world, "a.csv")
    tick(world)
    assert tick(world) == {"moved:Running": 1}
    assert world.store.reads == [job_id]
    assert len(scoring(world).status_calls) == 1  # the answer the summary was checked against is reused
    job = world.store.rows[job_id]
    assert (job.state, job.aml_status) == (JobState.RUNNING, "Running")
    assert world.store.summaries[job_id] == summary_of(job)
    assert tick(world) == {"waiting:Running": 1}
    assert world.store.reads == []


def test_a_finished_job_is_read_handed_to_completion_and_not_asked_about_again() -> None:
    world = world_with()
    scoring(world).script = [RemoteStatus.QUEUED, RemoteStatus.COMPLETED]
    job_id = submit(world, "a.csv")
    tick(world)
    assert tick(world) == {"finished:Scored": 1}
    assert world.queue.messages == [job_id]
    assert world.store.summaries[job_id].state is JobState.SCORED
    assert tick(world) == {"completing": 1}
    assert scoring(world).status_calls == []  # the index says Azure ML is done with it


def test_a_job_past_its_limit_is_read_and_timed_out_though_its_status_did_not_change() -> None:
    world = world_with(QUEUED_LIMIT_MINUTES="30")
    job_id = submit(world, "a.csv")
    tick(world)
    world.clock.advance(minutes=31)
    assert tick(world) == {"timed-out": 1}
    assert world.store.reads == [job_id]
    assert world.store.rows[job_id].state is JobState.TIMED_OUT


def test_a_settled_row_with_a_pending_event_is_read_so_the_event_goes_out() -> None:
    world = world_with()
    world.events.fail_next = 1  # JobSubmitted stays pending
    job_id = submit(world, "a.csv")
    tick(world)  # a moment after submission: the trigger's own to publish
    assert world.store.summaries[job_id].events_pending
    tick(world)
    assert world.store.reads == []
    world.clock.advance(seconds=61)
    assert tick(world) == {"waiting:Queued": 1}
    assert world.store.reads == [job_id]
    assert world.events.types() == ["DropScore.JobSubmitted"]
    assert not world.store.summaries[job_id].events_pending
    tick(world)
    assert world.store.reads == []


def test_a_stale_summary_never_hides_what_the_ledger_says() -> None:
    """Another writer moved the job on after the summary was written: Azure ML's answer differs, so the row is read."""
    world = world_with()
    scoring(world).script = [RemoteStatus.QUEUED, RemoteStatus.COMPLETED]
    job_id = submit(world, "a.csv")
    tick(world)
    world.store.touch_elsewhere(job_id, state=JobState.SCORED, stage=Stage.ENDED, completion_enqueued_at=NOW)
    assert tick(world) == {"completing": 1}
    assert world.store.reads == [job_id]
    assert world.store.summaries[job_id].state is JobState.SCORED


def test_an_index_row_without_a_summary_is_read_then_given_one() -> None:
    world = world_with()
    job_id = submit(world, "a.csv")
    del world.store.summaries[job_id]  # a row written before the index carried summaries
    assert tick(world) == {"waiting:Queued": 1}
    assert world.store.reads == [job_id]
    assert world.store.summaries[job_id] == summary_of(world.store.rows[job_id])
    tick(world)
    assert world.store.reads == []


def test_status_calls_run_in_parallel_never_more_than_poll_concurrency() -> None:
    world = world_with(delay=0.02, POLL_CONCURRENCY="3")
    for index in range(12):
        submit(world, f"in/{index}.csv")
    tick(world)
    endpoint = scoring(world)
    endpoint.most_in_flight = 0
    started = time.perf_counter()
    assert tick(world) == {"waiting:Queued": 12}
    elapsed = time.perf_counter() - started
    assert endpoint.most_in_flight == 3
    assert len(endpoint.status_calls) == 12
    assert elapsed < 12 * 0.02  # not one after another


def test_a_refresh_never_brings_back_an_index_row_that_was_removed() -> None:
    world = world_with()
    job_id = submit(world, "a.csv")
    job = world.store.rows[job_id]
    world.store.unmark_active(job_id)
    world.store.refresh_active(job)
    assert job_id not in world.store.active_rows
    assert job_id not in world.store.summaries


# ---- nothing_new, pure ---------------------------------------------------------------------------------


def waiting(**changes: object) -> JobSummary:
    summary = JobSummary(
        state=JobState.SUBMITTED,
        aml_job_name="dropscore-x-1",
        aml_status="Queued",
        studio_url="https://ml.azure.com/runs/x",
        submitted_at=NOW,
        updated_at=NOW,
    )
    return replace(summary, **changes)  # type: ignore[arg-type]


def answer(status: RemoteStatus, studio_url: str | None = "https://ml.azure.com/runs/x") -> RemoteJob:
    return RemoteJob("dropscore-x-1", status, studio_url=studio_url)


def test_nothing_new_only_for_a_quiet_wait() -> None:
    def new(summary: JobSummary, remote: RemoteJob, minutes: float = 1) -> bool:
        return not nothing_new(summary, remote, NOW + timedelta(minutes=minutes), policy=POLICY, outbox_grace=GRACE)

    assert not new(waiting(), answer(RemoteStatus.QUEUED))
    assert not new(waiting(), answer(RemoteStatus.QUEUED, studio_url=None))  # no link in the answer: nothing lost
    running = waiting(state=JobState.RUNNING, aml_status="Running", started_at=NOW)
    assert not new(running, answer(RemoteStatus.RUNNING))
    assert not new(waiting(aml_status="Paused"), answer(RemoteStatus.PAUSED))  # uncertain: keep polling
    assert new(waiting(), answer(RemoteStatus.PREPARING))  # another status
    assert new(waiting(), answer(RemoteStatus.QUEUED, studio_url="https://ml.azure.com/runs/y"))
    assert new(waiting(aml_status="Running"), answer(RemoteStatus.RUNNING))  # Submitted -> Running
    assert new(waiting(aml_status="Completed"), answer(RemoteStatus.COMPLETED))  # a finish is never skipped
    assert new(waiting(), answer(RemoteStatus.QUEUED), minutes=61)  # past the queued limit
    assert new(running, answer(RemoteStatus.RUNNING), minutes=121)  # past the running limit
    assert not new(waiting(events_pending=True), answer(RemoteStatus.QUEUED), minutes=0.5)  # not settled yet
    assert new(waiting(events_pending=True), answer(RemoteStatus.QUEUED), minutes=2)  # settled: publish them
    assert new(waiting(state=JobState.SCORED), answer(RemoteStatus.QUEUED))  # not waiting on Azure ML
    assert new(waiting(aml_job_name=""), answer(RemoteStatus.QUEUED))
