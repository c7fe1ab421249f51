"""Queries (HTTP triggers): read the ledger and the job list; never change a job."""

from __future__ import annotations

from datetime import timedelta

from shared.core import listing
from shared.models import Job, JobPage, JobState
from shared.usecases.deps import Deps

#: Index rows the summary reads at most: a day busier than this is summarized from its newest rows (truncated).
SUMMARY_CAP = 5000


def get_job(deps: Deps, job_id: str) -> Job | None:
    return deps.store.get(job_id)


def list_jobs(deps: Deps, *, state: JobState | None, prefix: str, limit: int, after: str) -> JobPage:
    """One page of the list, newest first: a bounded read whatever the ledger's size."""
    return deps.store.page(state=state, prefix=prefix, limit=limit, after=after, now=deps.clock())


def summary(deps: Deps) -> listing.Summary:
    """The jobs received in the last 24 hours by state, and their completions and failures by the hour."""
    now = deps.clock()
    recent = deps.store.recent(since=now - timedelta(hours=listing.SUMMARY_HOURS), cap=SUMMARY_CAP)
    return listing.summarize(recent.jobs, now=now, scanned=recent.scanned, truncated=recent.truncated)
