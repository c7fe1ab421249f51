"""Admission (intake, the poll tick, completion): at most MAX_JOBS_IN_FLIGHT Azure ML jobs per endpoint.

A validated job takes a slot before its submit intent is written; with every slot taken it is written
`Waiting`, and the poll tick and completions submit waiting jobs oldest first as slots free up. A job
gives its slot back once Azure ML is done with it; a slot whose release was lost in a crash is found open
again from its holder's row (`core.admission.still_held`). The queued-time limit starts at submission.

The bound: slots are rows changed only ETag-conditionally, so two instances never take the same one and
never more than MAX_JOBS_IN_FLIGHT jobs hold one. A slot is taken back from a holder that is still Received
or Waiting only after SUBMIT_LEASE_SECONDS (a long split renews it); README's Known limitations lists the ways
the cap can still be exceeded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from shared.core.admission import held_by, holders_to_check, open_slots, pool_key
from shared.errors import DropScoreError
from shared.logcontext import about_job
from shared.models import Job, JobState, JobSummary, Slot
from shared.ports import ActiveEntry
from shared.usecases.deps import Deps

log = logging.getLogger("dropscore")


def capacity_of(deps: Deps, job: Job) -> int:
    """The job's route's MAX_JOBS_IN_FLIGHT (0: no cap)."""
    return deps.route_of(job).max_jobs_in_flight


def _pool(deps: Deps, job: Job) -> str:
    """The slots of the endpoint the job goes to (several routes on one endpoint share them)."""
    return pool_key(job.endpoint or deps.submit_plan_for(deps.route_of(job)).endpoint)


def admit(deps: Deps, job: Job) -> bool:
    """Take a slot for `job` (True), or find every slot held (False). A job that holds one keeps it."""
    capacity = capacity_of(deps, job)
    if not capacity:
        return True
    pool = _pool(deps, job)
    slots = deps.slots.slots(pool)
    if held_by(slots, job.job_id) is not None:
        return True
    for slot in _open(deps, slots, capacity):
        if deps.slots.take(pool, slot, job_id=job.job_id, at=deps.clock()):
            log.info("job %s: took slot %d of %d", job.job_id, slot.number, capacity)
            return True
    return False


def _open(deps: Deps, slots: list[Slot], capacity: int) -> list[Slot]:
    """Slots nobody holds need no read; only when there are none are the holders' rows read (at most one
    point read per slot), to find slots whose jobs no longer need them."""
    stored = {slot.number: slot for slot in slots}
    unheld = [stored.get(number, Slot(number)) for number in range(capacity)]
    unheld = [slot for slot in unheld if not slot.holder]
    if unheld:
        return unheld
    holders = {job_id: deps.store.get(job_id) for job_id in holders_to_check(slots, capacity)}
    return open_slots(slots, capacity, holders, now=deps.clock(), lease=deps.submit_lease)


def renew_slot(deps: Deps, job: Job) -> None:
    """Rewrite the time on the slot `job` holds (a long split): it stays held past SUBMIT_LEASE_SECONDS."""
    if not capacity_of(deps, job):
        return
    pool = _pool(deps, job)
    slot = held_by(deps.slots.slots(pool), job.job_id)
    if slot is not None:
        deps.slots.take(pool, slot, job_id=job.job_id, at=deps.clock())


def release(deps: Deps, job: Job) -> None:
    """Give back the slot `job` holds (best effort: a lost release is found later from the job's row)."""
    if not capacity_of(deps, job):
        return
    pool = _pool(deps, job)
    try:
        for slot in deps.slots.slots(pool):
            if slot.holder == job.job_id and deps.slots.free(pool, slot):
                log.info("job %s: slot %d given back", job.job_id, slot.number)
    except DropScoreError as exc:
        log.warning("job %s: slot not given back now (%s); it is taken back once the job is seen done", job.job_id, exc)


def sharing_a_pool(deps: Deps, waiting: list[ActiveEntry], finished: Job) -> list[ActiveEntry]:
    """The waiting jobs whose route sends them to the endpoint `finished` just gave a slot back on."""
    pool = _pool(deps, finished)
    routes = deps.settings.routes

    def pool_of(entry: ActiveEntry) -> str:
        route = routes.by_name(entry.summary.route if entry.summary else "") or routes.default
        return pool_key(deps.submit_plan_for(route).endpoint)

    return [entry for entry in waiting if pool_of(entry) == pool]


def oldest_first(entries: Iterable[ActiveEntry]) -> list[ActiveEntry]:
    """The index rows of waiting jobs, oldest arrival first."""
    waiting = [entry for entry in entries if is_waiting(entry.summary)]
    return sorted(waiting, key=lambda entry: (_arrived(entry), entry.job_id))


def is_waiting(summary: JobSummary | None) -> bool:
    return summary is not None and summary.state == JobState.WAITING


def _arrived(entry: ActiveEntry) -> object:
    summary = entry.summary
    return (summary.created_at if summary else None) or entry.updated_at


def admit_waiting(
    deps: Deps, waiting: list[ActiveEntry], *, submit: Callable[[Job], Job], most: int | None = None
) -> int:
    """Submit waiting jobs, oldest first within each route, until a route's next job cannot get a slot (or `most`
    were submitted). `submit` is intake's `advance`: it takes the slot, writes the intent and POSTs, or leaves the
    job Waiting. One route's full endpoint never holds back another route's jobs."""
    admitted = 0
    blocked: set[str] = set()  # routes whose oldest waiting job found every slot held this time
    for entry in waiting:
        route = entry.summary.route if entry.summary else ""
        if (most is not None and admitted >= most) or route in blocked:
            continue
        with about_job(entry.job_id):
            job = deps.store.get(entry.job_id)
            if job is None:
                continue
            if job.state != JobState.WAITING:  # moved on since the index said Waiting: the tick polls it from now on
                deps.store.refresh_active(job)
                continue
            after = submit(job)
            if after.state == JobState.WAITING:
                blocked.add(route)  # every slot is held: this route's younger jobs wait for the next release
                continue
            deps.store.refresh_active(after)  # no longer Waiting: the next tick polls it
        admitted += 1
    return admitted
