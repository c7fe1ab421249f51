"""Azure ML run events (Event Grid trigger): an event about one of our jobs checks that job at once.

The workspace publishes `Microsoft.MachineLearningServices.RunStatusChanged` (and `RunCompleted`); the
subscription (infra/) lets through only our jobs' terminal statuses. The event is only a hint to look now: the
job is asked about once (one status call) and moved on by the same step a poll tick runs, so a duplicate, late
or out-of-order event changes nothing, and a lost one is caught by the tick's backstop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from shared.core.naming import key_prefix_of
from shared.core.polling import ended_remotely, summary_of
from shared.errors import EventTooEarly
from shared.logcontext import about_job
from shared.models import Job, JobState
from shared.ports import ActiveEntry
from shared.usecases.deps import Deps
from shared.usecases.poll import poll_entry

log = logging.getLogger("dropscore")

RUN_EVENT_TYPES = frozenset(
    {"Microsoft.MachineLearningServices.RunStatusChanged", "Microsoft.MachineLearningServices.RunCompleted"}
)


def on_run_event(deps: Deps, *, event_type: str, data: Mapping[str, object]) -> str:
    """Check the job the event names; anything that is not about one of our unfinished jobs is logged and ignored."""
    run_id = data.get("runId")
    if event_type not in RUN_EVENT_TYPES or not isinstance(run_id, str):
        log.info("Azure ML event %s without a run id of ours; ignored", event_type)
        return "ignored:not-a-run-event"
    prefix = key_prefix_of(run_id)
    if prefix is None:
        log.info("Azure ML event %s for run %s: not a dropscore job; ignored", event_type, run_id)
        return "ignored:not-ours"
    job = _job_for(deps, prefix, run_id)
    if job is None:
        with about_job("", aml_job_name=run_id):  # an earlier attempt's run, or a finished job's: found by its name
            log.info("Azure ML event %s for run %s: no unfinished job of ours has it; ignored", event_type, run_id)
        return "ignored:unknown-job"
    # The ledger row just read says what the job waits on: the summary the step starts from.
    entry = ActiveEntry(job.job_id, job.updated_at, summary_of(job))
    with about_job(entry.job_id, aml_job_name=job.aml_job_name):
        if job.state == JobState.SUBMITTING:
            # Azure ML ended the job before its POST's answer was recorded: failing the delivery makes Event Grid
            # deliver the event again later (its retry policy), when the job is Submitted and can be decided.
            raise EventTooEarly(f"job {entry.job_id} is still being submitted; the event is to be delivered again")
        outcome = poll_entry(deps, entry, on_event=True)
        if ended_remotely(str(data.get("runStatus") or "")) and outcome.startswith("waiting:"):
            # The event says the run ended but the status call does not say so yet: deliver the event again later
            # rather than leave the job to the backstop.
            raise EventTooEarly(f"job {entry.job_id}: Azure ML does not report the end its event announced yet")
        log.info("job %s: Azure ML event %s (%s): %s", entry.job_id, event_type, data.get("runStatus", "-"), outcome)
        return outcome


def _job_for(deps: Deps, prefix: str, run_id: str) -> Job | None:
    """The unfinished job whose Azure ML job is `run_id`: the index rows under its key prefix (one range read),
    then the ledger row that names the run (an earlier attempt's event finds none)."""
    for entry in deps.store.find_active(prefix):
        job = deps.store.get(entry.job_id)
        if job is not None and job.aml_job_name == run_id:
            return job
    return None
