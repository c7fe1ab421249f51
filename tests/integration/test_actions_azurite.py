"""Redrive and cancel on real storage (Azurite): the copy that never replaces a blob (If-None-Match: *), the new
run's job id as intake computes it from a real ETag, two redrives at once, and a cancel filed in the failed
container. The batch endpoint and the topic are fakes; tests/e2e runs the whole stack.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.storage.blob import BlobServiceClient

from localdev.azurite import Azurite
from shared.adapters.blobs import AzureBlobStore
from shared.adapters.queues import StorageCompletionQueue
from shared.adapters.slots import TableSlots
from shared.adapters.tables import TableJobStore
from shared.core.completion import MOVED_BY
from shared.errors import BlobChanged, BlobExists
from shared.models import JobState, RemoteStatus, Stage
from shared.usecases import complete, intake, poll
from shared.usecases.cancel import cancel_job
from shared.usecases.deps import Deps
from shared.usecases.redrive import redrive_job
from shared.usecases.schema import ModelColumns
from tests.fakes import FakeClock, FakeEventPublisher, FakeModelCatalog, FakeResources, FakeScoringEndpoint
from tests.integration.azurite_settings import isolated_settings

pytestmark = pytest.mark.integration

CSV = b"carat,cut\n0.3,Ideal\n0.4,Good\n"


@pytest.fixture
def deps(azurite: Azurite) -> Deps:
    settings = isolated_settings(azurite.connection_string)
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(settings.input_container)
    queue = StorageCompletionQueue.from_settings(settings)
    return Deps(
        settings=settings,
        store=TableJobStore.from_settings(settings),
        blobs=AzureBlobStore.from_settings(settings),
        scoring=FakeScoringEndpoint(script=[RemoteStatus.FAILED], failure=("UserError", "boom")),
        events=FakeEventPublisher(),
        completions=queue,
        resources=FakeResources(),
        clock=FakeClock(),
        model_columns=ModelColumns(settings, FakeModelCatalog, FakeClock()),
        slots=TableSlots.from_settings(settings),
    )


def upload(deps: Deps, name: str, data: bytes) -> None:
    deps.blobs.write(deps.settings.input_container, name, data, content_type="text/csv")


def trigger(deps: Deps, name: str) -> str:
    """The blob trigger as the function app calls it: only names; intake reads the ETag and metadata."""
    container = deps.settings.input_container
    job = intake.accept_blob(
        deps, container=container, name=name, size=0, etag=None, url=deps.blobs.url(container, name)
    )
    assert job is not None
    return job.job_id


def finish(deps: Deps, job_id: str) -> None:
    """What the poller and the completion function do next (the queue's message is not needed: one job)."""
    poll.poll(deps)
    complete.complete(deps, job_id)


def test_copy_if_absent_lands_once_and_returns_the_new_etag(deps: Deps) -> None:
    blobs, source, target = deps.blobs, deps.settings.failed_container, deps.settings.input_container
    blobs.write(source, "a.csv", CSV, content_type="text/csv")
    filed = blobs.properties(source, "a.csv")
    assert filed is not None
    etag = blobs.copy(source, "a.csv", target, "a.csv", source_etag=filed.etag, metadata={"k": "1"}, if_absent=True)
    landed = blobs.properties(target, "a.csv")
    assert landed is not None
    assert (landed.etag, landed.metadata) == (etag, {"k": "1"})
    with pytest.raises(BlobExists):
        blobs.copy(source, "a.csv", target, "a.csv", source_etag=filed.etag, metadata={"k": "2"}, if_absent=True)
    with pytest.raises(BlobChanged):  # the source moved on; the target is free: the source's condition failed
        blobs.copy(source, "a.csv", target, "b.csv", source_etag="0x8D0000000000000", if_absent=True)
    assert blobs.properties(target, "a.csv") == landed
    assert blobs.properties(target, "b.csv") is None
    # without the option a copy replaces, as the moves always did
    blobs.copy(source, "a.csv", target, "a.csv", metadata={"k": "3"})
    replaced = blobs.properties(target, "a.csv")
    assert replaced is not None
    assert replaced.metadata == {"k": "3"}


def test_a_failed_job_is_redriven_once_under_concurrent_calls_and_intake_makes_the_answered_job(deps: Deps) -> None:
    upload(deps, "day/x.csv", CSV)
    old_id = trigger(deps, "day/x.csv")
    finish(deps, old_id)
    old = deps.store.get(old_id)
    assert old is not None
    assert (old.state, old.stage, old.archive_container) == (
        JobState.FAILED,
        Stage.DONE,
        deps.settings.failed_container,
    )

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda _: redrive_job(deps, old_id), range(4)))

    assert all(outcome is not None for outcome in outcomes)
    answered = {outcome.job_id for outcome in outcomes if outcome is not None}
    assert len(answered) == 1
    assert sum(outcome.started for outcome in outcomes if outcome is not None) == 1
    (new_id,) = answered
    copy = deps.blobs.properties(deps.settings.input_container, "day/x.csv")
    assert copy is not None
    assert copy.metadata == {"dropscore_redrive_of": old_id, "dropscore_run": "2"}
    assert trigger(deps, "day/x.csv") == new_id  # the id intake computes from the real ETag
    new = deps.store.get(new_id)
    stored_old = deps.store.get(old_id)
    assert new is not None
    assert stored_old is not None
    assert (new.run, new.previous_job_id, stored_old.redriven_to) == (2, old_id, new_id)

    finish(deps, new_id)  # fails again: its own copy replaces the first run's in the failed container
    filed = deps.blobs.properties(deps.settings.failed_container, "day/x.csv")
    assert filed is not None
    assert filed.metadata[MOVED_BY] == new_id
    again = redrive_job(deps, new_id)
    assert again is not None
    assert again.run == 3
    later = redrive_job(deps, old_id)
    assert later is not None
    assert (later.job_id, later.run, later.started) == (new_id, 2, False)


def test_a_canceled_job_is_filed_in_the_failed_container(deps: Deps) -> None:
    deps.scoring.script = [RemoteStatus.RUNNING]  # type: ignore[attr-defined]
    upload(deps, "c.csv", CSV)
    job_id = trigger(deps, "c.csv")
    outcome = cancel_job(deps, job_id)
    assert outcome is not None
    assert outcome.changed
    complete.complete(deps, job_id)
    done = deps.store.get(job_id)
    assert done is not None
    assert (done.state, done.stage, done.error_code) == (JobState.CANCELED, Stage.DONE, "CanceledByOperator")
    assert deps.blobs.properties(deps.settings.failed_container, "c.csv") is not None
    assert deps.blobs.properties(deps.settings.input_container, "c.csv") is None
