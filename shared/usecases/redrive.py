"""Redrive (HTTP POST /api/jobs/{id}/redrive): a finished job's input runs again, as a NEW job linked to the old.

The filed input (in the failed, rejected or archive container, tagged with the old job's id) is copied back to the
name it was uploaded under, only if nothing is there (If-None-Match: *), with metadata naming the old job and the
run number. The blob trigger then makes the new job as for any upload (same validation, route, admission and
output names); its id is the new blob version's key, so this call can answer it at once. The old row records the
new job's id (`redriven_to`), ETag-conditionally, as intake does too when it creates the new job.

Two calls at once start one run: only one copy can land at the name; the other finds the copy (its metadata names
this job) and answers the same run. A call after success answers the recorded run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.core.naming import job_key
from shared.core.operator import (
    filed_input_refusal,
    is_redrive_of,
    redrive_metadata,
    redrive_recorded,
    redrive_refusal,
)
from shared.errors import (
    BlobChanged,
    BlobExists,
    BlobMissing,
    DropScoreError,
    InputGone,
    InputNameTaken,
    TransientError,
)
from shared.logcontext import about_job, note_aml_job
from shared.models import Job
from shared.usecases.deps import Deps, retry_lost_races

log = logging.getLogger("dropscore")
#: Copies tried when the blob at the input's name vanishes between the refused copy and the look at it.
_COPY_TRIES = 3


@dataclass(frozen=True)
class RedriveOutcome:
    """The old job as stored after the link, the new run's job id and number, and whether this call started it
    (False: an earlier or concurrent call did; the answer is the same run)."""

    previous: Job
    job_id: str
    run: int
    started: bool


def redrive_job(deps: Deps, job_id: str) -> RedriveOutcome | None:
    """Start the next run of the job's input (None: no such job). Raises a Conflict (JobActive, WrongState,
    InputGone, InputNameTaken) when it cannot."""
    with about_job(job_id):
        old = deps.store.get(job_id)
        if old is None:
            return None
        note_aml_job(old.aml_job_name)
        if old.redriven_to:
            log.info("job %s: already redriven as job %s", job_id, old.redriven_to)
            return RedriveOutcome(old, old.redriven_to, old.run + 1, started=False)
        refusal = redrive_refusal(old)
        if refusal is not None:
            log.info("job %s: redrive refused: %s", job_id, refusal.message)
            raise refusal
        etag, started = _copy_back(deps, old)
        new_id = job_key(deps.blobs.account_name, old.container, old.name, etag)
        linked = record_link(deps, old, new_id)
        if linked.redriven_to != new_id:
            # A call that read the row before an earlier run was linked, and copied after that run had left the
            # input container: its copy would be a second run. It goes; the answer is the recorded run.
            if started:
                _take_back(deps, old, etag)
            log.info("job %s: already redriven as job %s", job_id, linked.redriven_to)
            return RedriveOutcome(linked, linked.redriven_to, old.run + 1, started=False)
        log.info(
            "job %s: redriven as job %s (run %d)%s",
            job_id,
            new_id,
            old.run + 1,
            "" if started else ", started by an earlier call",
        )
        return RedriveOutcome(linked, linked.redriven_to or new_id, old.run + 1, started=started)


def _copy_back(deps: Deps, old: Job) -> tuple[str, bool]:
    """The new blob version's ETag, and whether this call's copy made it."""
    blobs = deps.blobs
    filed = blobs.properties(old.archive_container, old.name)
    gone = filed_input_refusal(old, filed)
    if gone is not None or filed is None:
        raise gone or InputGone("the filed input is gone", state=old.state.value)
    for _ in range(_COPY_TRIES):
        try:
            etag = blobs.copy(
                old.archive_container,
                old.name,
                old.container,
                old.name,
                source_etag=filed.etag,
                metadata=redrive_metadata(old),
                if_absent=True,
            )
            return etag, True
        except (BlobChanged, BlobMissing):
            raise InputGone(
                f"the job's filed input {old.archive_container}/{old.name} changed while it was copied back",
                state=old.state.value,
            ) from None
        except BlobExists:
            there = blobs.properties(old.container, old.name)
        if is_redrive_of(old, there) and there is not None:
            return there.etag, False  # a racing (or retried) call copied it: the same run
        if there is not None:
            raise InputNameTaken(
                f"{old.container}/{old.name} holds another upload now: it has a job of its own; "
                "delete or rename it to redrive this job",
                state=old.state.value,
            )
    raise TransientError(f"{old.container}/{old.name} kept changing while job {old.job_id} was redriven")


def _take_back(deps: Deps, old: Job, etag: str) -> None:
    """Only that version: if its trigger already made a job of it, the job is not linked and runs as an upload."""
    if deps.blobs.delete(old.container, old.name, etag=etag):
        log.info("job %s: removed the copy %s/%s a late call made", old.job_id, old.container, old.name)


def record_link(deps: Deps, old: Job, new_job_id: str) -> Job:
    """The old row names the run that redrove it (set once; a lost race reloads and decides again)."""

    def link(current: Job) -> Job:
        linked = redrive_recorded(current, new_job_id, deps.clock())
        return current if linked is None else deps.store.update(linked)

    return retry_lost_races(deps, old, link)


def link_previous_run(deps: Deps, job: Job) -> None:
    """Intake of a redriven input: the job it redrives names this one (if it names none yet). Never fails the
    intake: a missing or unwritable old row only loses the link, which the redrive call records too."""
    try:
        previous = deps.store.get(job.previous_job_id)
        if previous is None:
            log.warning("job %s: the job it redrives, %s, is not in the ledger", job.job_id, job.previous_job_id)
            return
        linked = record_link(deps, previous, job.job_id)
    except DropScoreError as exc:
        log.warning("job %s: link from job %s not recorded: %s", job.job_id, job.previous_job_id, exc.message)
        return
    if linked.redriven_to != job.job_id:
        log.warning("job %s: job %s was already redriven as %s", job.job_id, job.previous_job_id, linked.redriven_to)
    else:
        log.info("job %s: run %d of the input; redrives job %s", job.job_id, job.run, job.previous_job_id)
