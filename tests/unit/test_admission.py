"""MAX_JOBS_IN_FLIGHT against fakes: waiting in the ledger, oldest first, slots given back, races and crashes."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta

from shared.core.admission import open_slots, pool_key, still_held
from shared.core.submission import received
from shared.models import BlobRef, JobState, RemoteStatus, Slot
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


def test_a_waiting_job_leaves_the_waiting_index_before_its_intent_so_a_crash_cannot_hide_it() -> None:
    world = make_world(MAX_JOBS_IN_FLIGHT="1")
    world.scoring.script = [RemoteStatus.COMPLETED]
    world.scoring.on_complete = write_predictions(world, ["1", "2"])
    first, second = drop(world, "a.csv"), drop(world, "b.csv")
    world.store.crash_on_update = lambda job: job.job_id == second and job.state is JobState.SUBMITTED
    with contextlib.suppress(SimulatedCrash):
        poll.poll(world.deps)  # first ends; second is submitted, and the host dies before recording the answer
    world.store.crash_on_update = None
    assert world.store.rows[second].state is JobState.SUBMITTING
    assert world.store.summaries[second].state is not JobState.WAITING  # the tick polls it from now on
    assert world.store.rows[first].state is JobState.SCORED


def test_one_routes_full_endpoint_never_holds_back_another_routes_waiting_jobs() -> None:
    eu = "https://eu-ep.westeurope.inference.ml.azure.com/jobs"
    routes = [{"name": "eu", "prefix": "eu/", "endpointUri": eu, "maxJobsInFlight": 1}]
    world = make_world(MAX_JOBS_IN_FLIGHT="1", ROUTES=json.dumps(routes))
    held = drop(world, "a.csv")  # the default endpoint's only slot, held for good
    blocked = drop(world, "b.csv")  # waits behind it, the oldest waiting job
    eu_first, eu_second = drop(world, "eu/x.csv"), drop(world, "eu/y.csv")
    assert [world.store.rows[j].state for j in (held, blocked, eu_first, eu_second)] == [
        JobState.SUBMITTED,
        JobState.WAITING,
        JobState.SUBMITTED,
        JobState.WAITING,
    ]
    world.endpoints[eu].jobs[world.store.rows[eu_first].aml_job_name] = [
        world.endpoints[eu]
        .jobs[world.store.rows[eu_first].aml_job_name][0]
        .__class__(world.store.rows[eu_first].aml_job_name, RemoteStatus.FAILED)
    ]
    poll.poll(world.deps)  # eu's slot frees up; the older default job still finds its endpoint full
    assert world.store.rows[eu_second].state is JobState.SUBMITTED
    assert world.store.rows[blocked].state is JobState.WAITING


def test_a_waiting_job_whose_input_changed_meanwhile_is_not_sent() -> None:
    world = make_world(MAX_JOBS_IN_FLIGHT="1")
    world.scoring.script = [RemoteStatus.FAILED]
    first, second = drop(world, "a.csv"), drop(world, "b.csv")
    world.blobs.put("incoming", "b.csv", CSV + b"1.0,Fair\n")  # a new upload replaces the waiting version
    poll.poll(world.deps)
    assert world.store.rows[second].state is JobState.CANCELED
    assert world.store.rows[second].error_code == "BlobChanged"
    assert len([post for post in world.scoring.posts if post.job_name.startswith(f"dropscore-{second[:32]}")]) == 0
    assert world.store.rows[first].state is JobState.FAILED


def test_a_job_whose_route_was_removed_while_it_waited_fails_route_gone() -> None:
    routes = [{"name": "eu", "prefix": "eu/", "endpointUri": "https://eu-ep.westeurope.inference.ml.azure.com/jobs"}]
    world = make_world(MAX_JOBS_IN_FLIGHT="1", ROUTES=json.dumps(routes))
    etag = world.blobs.put("incoming", "eu/x.csv", CSV)
    job = received(
        BlobRef("devstoreaccount1", "incoming", "eu/x.csv", etag, len(CSV), "u"), world.clock(), route="gone"
    )
    world.store.create(job)
    after = intake.advance(world.deps, world.store.rows[job.job_id])
    assert (after.state, after.error_code) == (JobState.FAILED, "RouteGone")
    assert world.scoring.posts == []
