"""Queries (HTTP triggers): read the ledger; never change it."""

from __future__ import annotations

from shared.models import Job, JobState
from shared.usecases.deps import Deps


def get_job(deps: Deps, job_id: str) -> Job | None:
    return deps.store.get(job_id)


def list_jobs(deps: Deps, *, state: JobState | None, limit: int) -> list[Job]:
    return deps.store.query(state=state, limit=limit)
