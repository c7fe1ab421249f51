"""The poll tick (timer trigger): look at every unfinished job, and only those, in parallel, bounded.

One status call per job Azure ML has, made from what the active index says of the job (its Azure ML name,
last status, timestamps). When the answer changes nothing (`polling.nothing_new`) the tick is done with that
job: its ledger row is not read. Otherwise the row is read and the job moves on: finished jobs are handed to
completion, jobs past their limits canceled, stalled submissions resumed, lost completion messages re-queued;
and the index's summary is brought up to date so the next tick can skip the row again.
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
    backstop_due,
    completion_exhausted,
    completion_overdue,
    decide,
    ended_remotely,
    nothing_new,
    poll_step,
    remote_missing,
    settled,
    summary_of,
    waits_on_azure_ml,
    worth_writing,
)
from shared.errors import DropScoreError, PermanentError, RemoteJobNotFound, StaleJob, TransientError
from shared.logcontext import about_job, note_aml_job
from shared.models import REMOTE_ACTIVE, Job, JobState, JobSummary, RemoteJob, Stage
from shared.ports import ActiveEntry
from shared.usecases.admission import admit_waiting, capacity_of, is_waiting, oldest_first, sharing_a_pool
from shared.usecases.complete import finalize, give_up, request_completion
from shared.usecases.deps import Deps, retry_lost_races
from shared.usecases.intake import advance
from shared.usecases.outbox import flush_events

log = logging.getLogger("dropscore")


@dataclass(frozen=True)
class PollReport:
    active: int
    outcomes: dict[str, int]


@dataclass(frozen=True)
class StatusAnswer:
    """What Azure ML said this tick about one job name; `remote` is None when it has no such job."""

    name: str
    remote: RemoteJob | None


def poll(deps: Deps) -> PollReport:
    """One tick over the active index; one job's failure never stops the others."""
    entries = list(deps.store.active())
    if not entries:
        return PollReport(0, {})
    waiting = oldest_first(entries)
    working = [entry for entry in entries if not is_waiting(entry.summary)]
    outcomes: Counter[str] = Counter()
    if working:
        # Threads: every call waits on the network (~50 ms per status call to Azure ML), and the SDK clients are
        # synchronous. POLL_CONCURRENCY bounds them, and the REST client's connection pool is sized to match.
        workers = min(deps.settings.poll_concurrency, len(working))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poll") as pool:
            outcomes.update(pool.map(lambda entry: _poll_safely(deps, entry), working))
    if waiting:  # after the status calls, so the slots of jobs that just finished go to the oldest waiting
        admitted = _admit_safely(deps, waiting)
        outcomes.update({"admitted": admitted, "waiting-for-slot": len(waiting) - admitted})
    report = PollReport(len(entries), dict(outcomes))
    log.info("poll: %d active jobs: %s", report.active, ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))
    return report


def _poll_safely(deps: Deps, entry: ActiveEntry) -> str:
    """One pool thread's work: the job's log dimensions are set here, in the thread (ContextVars stay behind)."""
    job_id = entry.job_id
    with about_job(job_id, aml_job_name=entry.summary.aml_job_name if entry.summary else ""):
        try:
            return poll_entry(deps, entry)
        except TransientError as exc:
            log.warning("poll: job %s: %s (will retry next tick)", job_id, exc.message)
            return "retry-later"
        except PermanentError as exc:
            log.error("poll: job %s: %s (will retry next tick)", job_id, exc.message)
            return "error"
        except Exception:
            log.exception("poll: job %s failed unexpectedly (will retry next tick)", job_id)
            return "error"


def admit_after_completion(deps: Deps, finished: Job | None) -> int:
    """A job just gave its slot back (completion): submit the oldest waiting job now, not at the next tick."""
    if finished is None or finished.posts == 0 or not capacity_of(deps, finished):
        return 0
    waiting = sharing_a_pool(deps, oldest_first(deps.store.active()), finished)
    return _admit_safely(deps, waiting, most=1) if waiting else 0


def _admit_safely(deps: Deps, waiting: list[ActiveEntry], *, most: int | None = None) -> int:
    try:
        return admit_waiting(deps, waiting, submit=lambda job: advance(deps, job), most=most)
    except DropScoreError as exc:
        log.warning("poll: waiting jobs not admitted this tick: %s", exc.message)
        return 0


def poll_entry(deps: Deps, entry: ActiveEntry, *, on_event: bool = False) -> str:
    """One index row: Azure ML first when the row says it has the job; the ledger row only if the answer is news.
    With run events on (AML_RUN_EVENTS), a tick asks only every AML_EVENTS_BACKSTOP_SECONDS; an event
    (`on_event`) asks at once."""
    answer = None
    summary = entry.summary
    if summary is not None and waits_on_azure_ml(summary):
        now, settings = deps.clock(), deps.settings
        if not on_event and _left_to_events(deps, summary):
            return "waiting:events"
        answer = ask_azure_ml(deps, summary.aml_job_name, endpoint=summary.endpoint)
        if answer.remote is not None and nothing_new(
            summary, answer.remote, deps.clock(), policy=deps.stuck_policy, outbox_grace=deps.outbox_grace
        ):
            if settings.aml_run_events:
                deps.store.note_checked(entry.job_id, now)  # the backstop's clock restarts
            return f"waiting:{answer.remote.status.value}"
    outcome, job = _step(deps, entry.job_id, indexed_at=entry.updated_at, answer=answer, on_event=on_event)
    _remember(deps, entry, job)
    if deps.settings.aml_run_events and job is not None and job.state in REMOTE_ACTIVE and outcome != "waiting:events":
        deps.store.note_checked(entry.job_id, deps.clock())  # asked just now: the backstop's clock restarts
    return outcome


def poll_job(deps: Deps, job_id: str, *, indexed_at: datetime | None = None) -> str:
    """Advance one active job by one step from its ledger row; returns a short outcome name for the summary."""
    return _step(deps, job_id, indexed_at=indexed_at, answer=None)[0]


def ask_azure_ml(deps: Deps, name: str, *, endpoint: str) -> StatusAnswer:
    try:
        return StatusAnswer(name, deps.scoring_for(endpoint).get_job(name))
    except RemoteJobNotFound:
        return StatusAnswer(name, None)


def _step(
    deps: Deps, job_id: str, *, indexed_at: datetime | None, answer: StatusAnswer | None, on_event: bool = False
) -> tuple[str, Job | None]:
    """The outcome, and the job as the ledger now holds it as far as this step knows (None: nothing to index)."""
    job = deps.store.get(job_id)
    if job is not None:
        note_aml_job(job.aml_job_name)
    step = poll_step(job, indexed_at=indexed_at, now=deps.clock(), grace=deps.submit_lease)
    if step in {PollStep.REMOVE_ORPHAN, PollStep.HEAL_INDEX}:
        deps.store.unmark_active(job_id)
        return step.value, None
    if job is None:
        return step.value, None
    # Only rows nobody is writing: a live trigger publishes its own events and finishes its own jobs.
    quiet = settled(job, deps.clock(), deps.outbox_grace)
    if quiet:
        job = flush_events(deps, job)
    if step is PollStep.CHECK_REMOTE:
        if answer is None and not on_event and _left_to_events(deps, summary_of(job)):
            return "waiting:events", job
        return _check_remote(deps, job, answer)
    if step is PollStep.ENSURE_COMPLETION:
        return _ensure_completion(deps, job, quiet=quiet), job
    if step is PollStep.RESUME:
        job = advance(deps, job)
    return step.value, job


def _left_to_events(deps: Deps, summary: JobSummary) -> bool:
    """Run events cover the job and the backstop is not due: the tick does not ask Azure ML about it. Never for
    a job whose last known status is already an end (adopted by reconciliation after its event came and went)."""
    now, backstop = deps.clock(), timedelta(seconds=deps.settings.aml_events_backstop_seconds)
    if not deps.settings.aml_run_events or ended_remotely(summary.aml_status):
        return False
    if deps.stuck_policy.overdue(summary, now) is not None:
        return False  # past a time limit: the tick cancels it now, not at the backstop
    if summary.events_pending and (summary.updated_at is None or now - summary.updated_at >= deps.outbox_grace):
        return False  # a settled event waits to be published: the tick reads the row now
    return not backstop_due(summary, now, backstop)


def _remember(deps: Deps, entry: ActiveEntry, job: Job | None) -> None:
    """Bring the index row's summary in step with the ledger row, when the next tick decides from it: the job
    waits on Azure ML, or the summary still says it does. A stale summary only costs the next tick a read."""
    if job is None or job.finalized:
        return
    summary = summary_of(job)
    decides = waits_on_azure_ml(summary) or waits_on_azure_ml(entry.summary) or job.state == JobState.WAITING
    if summary == entry.summary or not decides:
        return
    try:
        deps.store.refresh_active(job)
    except DropScoreError as exc:
        log.warning("poll: job %s: index summary not updated (%s); the next tick reads the ledger", job.job_id, exc)


def _check_remote(deps: Deps, job: Job, answer: StatusAnswer | None) -> tuple[str, Job | None]:
    if answer is None or answer.name != job.aml_job_name:  # not asked yet, or the index named another attempt
        answer = ask_azure_ml(deps, job.aml_job_name, endpoint=job.endpoint)
    remote = answer.remote
    if remote is None:
        missing = remote_missing(job, deps.clock(), deps.submit_lease)
        if missing is None:
            return "waiting:not-visible-yet", job  # a job can take a moment to show up after invoke
        log.error("job %s: failed: %s", job.job_id, missing.error_message)
        return "failed", finalize(deps, deps.store.update(missing))

    def decide_and_act(current: Job) -> tuple[str, Job | None]:
        if current.state not in REMOTE_ACTIVE:
            return "moved-elsewhere", current
        return _act_on(deps, current, decide(current, remote, deps.clock(), deps.stuck_policy))

    return retry_lost_races(deps, job, decide_and_act)


def _act_on(deps: Deps, before: Job, decision: Decision) -> tuple[str, Job | None]:
    job = decision.job
    if decision.action is Action.WAIT:
        if job.state == before.state:
            return f"waiting:{job.aml_status}", _save_status_if_changed(deps, before, job)
        return f"moved:{job.state.value}", deps.store.update(job)
    if decision.action is Action.CANCEL:
        _cancel_quietly(deps, job)
        return "timed-out", request_completion(deps, job)
    return f"finished:{job.state.value}", request_completion(deps, job)


def _save_status_if_changed(deps: Deps, before: Job, after: Job) -> Job | None:
    """The row as stored afterwards; None when another writer got there first (the next tick reads it)."""
    if not worth_writing(before, after):
        return before
    try:
        return deps.store.update(after)
    except StaleJob:
        log.info("job %s: changed while polled; the next tick decides again", after.job_id)
        return None


def _cancel_quietly(deps: Deps, job: Job) -> None:
    """Ask Azure ML to cancel a job past its limit; the job is reported TimedOut whatever the answer."""
    try:
        canceled = deps.scoring_for(job.endpoint).cancel(job.aml_job_name)
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
