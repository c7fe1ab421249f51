"""What the triggers do for a job, called directly on the fakes (the operator actions' tests drive jobs with it)."""

from __future__ import annotations

from shared.models import Job
from shared.usecases import complete, intake
from tests.fakes import World

CSV = b"carat,cut\n0.3,Ideal\n0.4,Good\n"
NAME = "batch/day1.csv"


def trigger(world: World, name: str = NAME) -> Job:
    """The blob trigger as the function app calls it: no ETag, so intake reads the version's properties."""
    url = world.blobs.url("incoming", name)
    job = intake.accept_blob(world.deps, container="incoming", name=name, size=0, etag=None, url=url)
    assert job is not None
    return job


def run_completions(world: World) -> None:
    """The completion function, once for each queued message."""
    for job_id in world.queue.drain():
        complete.complete(world.deps, job_id)
