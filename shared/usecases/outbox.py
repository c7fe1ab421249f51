"""The outbox: events are recorded as pending in the ledger row before they are published, and marked
published after, so a crash or an Event Grid outage delays an event but never loses it."""

from __future__ import annotations

import logging

from shared.core.completion import published, unpublished
from shared.errors import TransientError
from shared.events import build_event
from shared.models import EventType, Job
from shared.usecases.deps import Deps, retry_lost_races

log = logging.getLogger("dropscore")


def flush_events(deps: Deps, job: Job) -> Job:
    """Publish the job's pending events, then record them as published. A topic that is down leaves
    them pending for the next caller (trigger, poll tick or completion)."""
    names = unpublished(job)
    if not names:
        return job
    now = deps.clock()
    events = [build_event(job, EventType(name), deps.settings.event_source, now) for name in names]
    try:
        deps.events.publish(events)
    except TransientError as exc:
        log.warning("job %s: events %s not published yet: %s", job.job_id, names, exc.message)
        return job
    log.info("job %s: published %s", job.job_id, ", ".join(names))
    # Recorded even if someone else wrote the row meanwhile: the event is out, whatever they changed.
    return retry_lost_races(deps, job, lambda current: deps.store.update(published(current, names, deps.clock())))
