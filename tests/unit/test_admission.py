"""MAX_JOBS_IN_FLIGHT against fakes: waiting in the ledger, oldest first, slots given back, races and crashes."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from shared.core.admission import open_slots, pool_key, still_held
from shared.models import JobState, RemoteStatus, Slot
from shared.usecases import complete, intake, poll
from tests.fakes import SimulatedCrash, World, make_world, write_predictions

CSV = b"carat,cut\n0.3,Ideal\n0.4,Good\n"


def drop(world: World, name: str) -> str:
    etag = world.blobs.put("incoming", name, CSV)
    job = intake.accept_blob(
        world.deps, container="incoming", name=name, size=len(CSV), etag=etag, url=world.blobs.url("incoming", name)
    )
    assert job is not None
    world.clock.advance(seconds=1)  # arrivals one second apart: "oldest first" is well defined
    return job.job_id


def states(world: World, job_ids: list[str]) -> list[JobState]:
    return [world.store.rows[job_id].state for job_id in job_ids]


def run_completions(world: World) -> None:
    for job_id in world.queue.drain():
        poll.admit_after_completion(world.deps, complete.complete(world.deps, job_id))


def test_jobs_over_the_cap_wait_in_the_ledger_and_the_index() -> None:
    world = make_world(MAX_JOBS_IN_FLIGHT="2")
    jobs = [drop(world, f"day{i}.csv") for i in range(4)]
    assert states(world, jobs) == [JobState.SUBMITTED, JobState.SUBMITTED, JobState.WAITING, JobState.WAITING]
    assert len(world.scoring.posts) == 2
    assert world.slots.holders() == sorted(jobs[:2])
    # the index says Waiting, so a tick finds them without reading the ledger
    assert {world.store.summaries[job].state for job in jobs[2:]} == {JobState.WAITING}
    # a tick with every slot held submits nothing and reads no waiting job's row twice
    report = poll.poll(world.deps)
    assert report.outcomes["waiting-for-slot"] == 2
    assert len(world.scoring.posts) == 2


def test_a_finished_job_gives_its_slot_to_the_oldest_waiting_job_at_the_same_tick() -> None:
    world = make_world(MAX_JOBS_IN_FLIGHT="1")
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["1", "2"])
    first, second, third = (drop(world, f"day{i}.csv") for i in range(3))
    assert states(world, [first, second, third]) == [JobState.SUBMITTED, JobState.WAITING, JobState.WAITING]
    poll.poll(world.deps)  # first: Completed -> Scored, slot given back; second (older than third) submitted
    assert states(world, [first, second, third]) == [JobState.SCORED, JobState.SUBMITTED, JobState.WAITING]
    assert world.slots.holders() == [second]
    # the queued-time limit counts from the submission, not from the arrival
    assert world.store.rows[second].submitted_at == world.clock()


def test_a_completion_submits_the_next_waiting_job_without_waiting_for_a_tick() -> None:
    world = make_world(MAX_JOBS_IN_FLIGHT="1")
    world.scoring.script = [RemoteStatus.FAILED]
    first, second = drop(world, "a.csv"), drop(world, "b.csv")
    poll.poll(world.deps)  # first fails: slot given back, second submitted by the same tick
    assert states(world, [first, second]) == [JobState.FAILED, JobState.SUBMITTED]
    third = drop(world, "c.csv")
    assert world.store.rows[third].state is JobState.WAITING
    poll.poll(world.deps)  # second fails; third takes the slot
    run_completions(world)
    assert world.store.rows[third].state is JobState.SUBMITTED
    assert world.store.rows[first].finalized
    assert world.store.rows[second].finalized
    assert world.slots.holders() == [third]


def test_two_instances_never_take_the_same_slot() -> None:
    world = make_world(MAX_JOBS_IN_FLIGHT="1")
    pool = pool_key(world.deps.submit_plan.endpoint)

    def another_instance_takes_it(pool_name: str, slot: Slot) -> None:
        assert world.slots.take(pool_name, slot, job_id="f" * 40, at=world.clock())

    world.slots.before_take = another_instance_takes_it
    job = drop(world, "raced.csv")
    assert world.store.rows[job].state is JobState.WAITING
    assert world.slots.slots(pool)[0].holder == "f" * 40
    assert world.scoring.posts == []


def test_a_crash_after_taking_a_slot_keeps_it_for_the_job_that_resumes() -> None:
    world = make_world(MAX_JOBS_IN_FLIGHT="1", SUBMIT_LEASE_SECONDS="300")
    world.store.crash_on_update = lambda job: job.state is JobState.SUBMITTING
    with contextlib.suppress(SimulatedCrash):
        drop(world, "crashed.csv")
    world.store.crash_on_update = None
    (crashed,) = world.store.rows
    assert world.store.rows[crashed].state is JobState.RECEIVED
    assert world.slots.holders() == [crashed]
    other = drop(world, "other.csv")
    assert world.store.rows[other].state is JobState.WAITING  # the crashed job's slot is within its lease
    world.clock.advance(seconds=301)
    poll.poll(world.deps)  # the crashed job resumes with the slot it holds; nobody else gets in
    assert states(world, [crashed, other]) == [JobState.SUBMITTED, JobState.WAITING]
    assert world.slots.holders() == [crashed]
    assert len(world.scoring.posts) == 1


def test_a_slot_whose_holder_ended_without_giving_it_back_is_taken_again() -> None:
    world = make_world(MAX_JOBS_IN_FLIGHT="1")
    pool = pool_key(world.deps.submit_plan.endpoint)
    first = drop(world, "first.csv")
    # the job ended, but the release was lost (a crash): its slot row still names it
    world.store.touch_elsewhere(first, state=JobState.FAILED)
    second = drop(world, "second.csv")
    assert world.store.rows[second].state is JobState.SUBMITTED
    assert world.slots.slots(pool)[0].holder == second


def test_no_cap_touches_no_slot() -> None:
    world = make_world(MAX_JOBS_IN_FLIGHT="0")
    for i in range(3):
        drop(world, f"day{i}.csv")
    assert len(world.scoring.posts) == 3
    assert world.slots.rows == {}


def test_a_slot_is_held_while_its_job_is_in_flight_and_open_once_it_ended() -> None:
    world = make_world()
    drop(world, "held.csv")
    (job,) = world.store.rows.values()
    now, lease = world.clock(), timedelta(minutes=5)
    slot = Slot(0, holder=job.job_id, taken_at=now - timedelta(days=3))
    assert still_held(slot, job, now, lease)  # Submitted for days: still in flight
    ended = world.store.rows[job.job_id].__class__(**{**job.__dict__, "state": JobState.FAILED})
    assert not still_held(slot, ended, now, lease)
    assert open_slots([slot], 2, {job.job_id: job}, now=now, lease=lease) == [Slot(1)]
    assert open_slots([slot], 2, {job.job_id: ended}, now=now, lease=lease) == [slot, Slot(1)]
