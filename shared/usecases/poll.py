"""The poll tick (timer trigger): look at every unfinished job, and only those, in parallel, bounded.

For each it asks Azure ML for the job's status, finishes jobs that ended, cancels jobs past their
limits, resumes submissions that stalled, and re-queues completions whose message was lost.
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.core.decision import Action, Decision
from shared.core.polling import (
    PollStep,
    completion_exhausted,
    completion_overdue,
    decide,
    poll_step,
    remote_missing,
    settled,
    worth_writing,
)
from shared.errors import DropScoreError, PermanentError, RemoteJobNotFound, StaleJob, TransientError
from shared.logcontext import about_job
from shared.models import REMOTE_ACTIVE, Job, Stage
from shared.ports import ActiveEntry
from shared.usecases.complete import finalize, give_up, request_completion
from shared.usecases.deps import Deps, retry_lost_races
from shared.usecases.intake import advance
from shared.usecases.outbox import flush_events

log = logging.getLogger("dropscore")


@dataclass(frozen=True)
class PollReport:
    active: int
    outcomes: dict[str, int]


def poll(deps: Deps) -> PollReport:
    """One tick over the active index; one job's failure never stops the others."""
    entries = list(deps.store.active())
    if not entries:
        return PollReport(0, {})
    with ThreadPoolExecutor(max_workers=min(deps.settings.poll_concurrency, len(entries))) as pool:
        outcomes = Counter(pool.map(lambda entry: _poll_safely(deps, entry), entries))
    report = PollReport(len(entries), dict(outcomes))
    log.info("poll: %d active jobs: %s", report.active, ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))
    return report


def _poll_safely(deps: Deps, entry: ActiveEntry) -> str:
    job_id = entry.job_id
    try:
        with about_job(job_id):
            return poll_job(deps, job_id, indexed_at=entry.updated_at)
    except TransientError as exc:
        log.warning("poll: job %s: %s (will retry next tick)", job_id, exc.message)
        return "retry-later"
    except PermanentError as exc:
        log.error("poll: job %s: %s (will retry next tick)", job_id, exc.message)
        return "error"
    except Exception:
        log.exception("poll: job %s failed unexpectedly (will retry next tick)", job_id)
        return "error"


def poll_job(deps: Deps, job_id: str, *, indexed_at: datetime | None = None) -> str:
    """Advance one active job by one step; returns a short outcome name for the tick's summary."""
    job = deps.store.get(job_id)
    step = poll_step(job, indexed_at=indexed_at, now=deps.clock(), grace=deps.submit_lease)
    if step in {PollStep.REMOVE_ORPHAN, PollStep.HEAL_INDEX}:
        deps.store.unmark_active(job_id)
        return step.value
    if job is None:
        return step.value
    # Only rows nobody is writing: a live trigger publishes its own events and finishes its own jobs.
    quiet = settled(job, deps.clock(), deps.outbox_grace)
    if quiet:
        job = flush_events(deps, job)
    if step is PollStep.CHECK_REMOTE:
        return _check_remote(deps, job)
    if step is PollStep.ENSURE_COMPLETION:
        return _ensure_completion(deps, job, quiet=quiet)
    if step is PollStep.RESUME:
        advance(deps, job)
    return step.value


def _check_remote(deps: Deps, job: Job) -> str:
    try:
        remote = deps.scoring.get_job(job.aml_job_name)
    except RemoteJobNotFound:
        missing = remote_missing(job, deps.clock(), deps.submit_lease)
        if missing is None:
            return "waiting:not-visible-yet"  # a job can take a moment to show up after invoke
        log.error("job %s: failed: %s", job.job_id, missing.error_message)
        finalize(deps, deps.store.update(missing))
        return "failed"

    def decide_and_act(current: Job) -> str:
        if current.state not in REMOTE_ACTIVE:
            return "moved-elsewhere"
        return _act_on(deps, current, decide(current, remote, deps.clock(), deps.stuck_policy))

    return retry_lost_races(deps, job, decide_and_act)


def _act_on(deps: Deps, before: Job, decision: Decision) -> str:
    job = decision.job
    if decision.action is Action.WAIT:
        if job.state == before.state:
            _save_status_if_changed(deps, before, job)
            return f"waiting:{job.aml_status}"
        deps.store.update(job)
        return f"moved:{job.state.value}"
    if decision.action is Action.CANCEL:
        _cancel_quietly(deps, job)
        request_completion(deps, job)
        return "timed-out"
    request_completion(deps, job)
    return f"finished:{job.state.value}"


def _save_status_if_changed(deps: Deps, before: Job, after: Job) -> None:
    if not worth_writing(before, after):
        return
    try:
        deps.store.update(after)
    except StaleJob:
        log.info("job %s: changed while polled; the next tick decides again", after.job_id)


def _cancel_quietly(deps: Deps, job: Job) -> None:
    """Ask Azure ML to cancel a job past its limit; the job is reported TimedOut whatever the answer."""
    try:
        canceled = deps.scoring.cancel(job.aml_job_name)
    except DropScoreError as exc:
        log.error("job %s: could not cancel Azure ML job %s: %s", job.job_id, job.aml_job_name, exc.message)
        return
    if not canceled:
        log.warning("job %s: over its limit; set AML_WORKSPACE_ID so the Azure ML job is canceled too", job.job_id)


def _ensure_completion(deps: Deps, job: Job, *, quiet: bool) -> str:
    """A finished job not yet done: re-queue its completion if the last message seems lost, and give up
    (CompletionGaveUp) once every message it was allowed has been spent."""
    now, settings = deps.clock(), deps.settings
    if not quiet and (job.completion_enqueued_at is None or job.stage is Stage.FILED):
        return "completing"  # written a moment ago, by a trigger or completion finishing it right now
    if job.stage is Stage.FILED:  # only its final event is left: no completion needed, close it here
        finalize(deps, job)
        return "closing"
    if not completion_overdue(job, now, timedelta(seconds=settings.completion_redelivery_seconds)):
        return "completing"
    # Give up only on completions that failed: a backlog or a slow join spends messages without failing.
    if completion_exhausted(job, settings.completion_max_attempts) and job.completion_error:
        give_up(deps, job.job_id, why=f"completion did not finish after {job.completion_attempts} attempts")
        return "completion-gave-up"
    request_completion(deps, job)
    return "completion-requeued"
