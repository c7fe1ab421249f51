"""The use cases on real storage (Azurite): ledger, active index, moves and the joined predictions file.

The batch endpoint and the topic are fakes here; tests/e2e runs the emulators too.
"""

from __future__ import annotations

import json

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from localdev.azurite import Azurite
from shared.adapters.blobs import AzureBlobStore
from shared.adapters.queues import StorageCompletionQueue
from shared.adapters.slots import TableSlots
from shared.adapters.tables import TableJobStore
from shared.core.naming import parse_completion_message
from shared.models import EventType, InvokeRequest, JobState, RemoteStatus
from shared.usecases import complete, intake, poll
from shared.usecases.deps import Deps
from shared.usecases.schema import ModelColumns
from tests.fakes import FakeClock, FakeEventPublisher, FakeModelCatalog, FakeResources, FakeScoringEndpoint
from tests.integration.azurite_settings import isolated_settings

pytestmark = pytest.mark.integration

ROWS = 2500  # several download chunks and several output chunks


@pytest.fixture
def env(azurite: Azurite) -> dict[str, object]:
    settings = isolated_settings(azurite.connection_string)
    blob_service = BlobServiceClient.from_connection_string(azurite.connection_string)
    queue = QueueClient.from_connection_string(
        azurite.connection_string,
        settings.completions_queue,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )
    scoring = FakeScoringEndpoint(script=[RemoteStatus.RUNNING, RemoteStatus.COMPLETED])
    deps = Deps(
        settings=settings,
        store=TableJobStore(
            TableServiceClient.from_connection_string(azurite.connection_string),
            jobs_table=settings.jobs_table,
            active_table=settings.active_table,
            list_table=settings.job_list_table,
        ),
        blobs=AzureBlobStore(blob_service),
        scoring=scoring,
        events=FakeEventPublisher(),
        completions=StorageCompletionQueue(queue),
        resources=FakeResources(),
        clock=FakeClock(),
        model_columns=ModelColumns(settings, FakeModelCatalog, FakeClock()),
        slots=TableSlots(
            TableServiceClient.from_connection_string(azurite.connection_string), table=settings.active_table
        ),
    )
    blob_service.create_container(settings.input_container)
    return {"deps": deps, "blobs": blob_service, "queue": queue, "scoring": scoring}


def upload(env: dict[str, object], name: str, data: bytes) -> None:
    deps: Deps = env["deps"]  # type: ignore[assignment]
    blobs: BlobServiceClient = env["blobs"]  # type: ignore[assignment]
    client = blobs.get_blob_client(deps.settings.input_container, name)
    props = client.upload_blob(data, overwrite=True)
    intake.accept_blob(
        deps, container=deps.settings.input_container, name=name, size=len(data), etag=props["etag"], url=client.url
    )


def aml_writes_predictions(env: dict[str, object]) -> None:
    """What Azure ML does on completion: predictions.csv, no header, at the requested output path."""
    deps: Deps = env["deps"]  # type: ignore[assignment]
    blobs: BlobServiceClient = env["blobs"]  # type: ignore[assignment]

    def hook(request: InvokeRequest) -> None:
        path = request.output_uri.split("/paths/", 1)[1]
        lines = "".join(f"{row},{1000 + row * 0.5},diamonds.csv\n" for row in range(ROWS))
        container = blobs.get_container_client(deps.settings.aml_output_container)
        if not container.exists():
            container.create_container()
        container.get_blob_client(path).upload_blob(lines.encode(), overwrite=True)

    scoring: FakeScoringEndpoint = env["scoring"]  # type: ignore[assignment]
    scoring.on_complete = hook


def test_a_job_end_to_end_on_real_storage(env: dict[str, object]) -> None:
    deps: Deps = env["deps"]  # type: ignore[assignment]
    blobs: BlobServiceClient = env["blobs"]  # type: ignore[assignment]
    queue: QueueClient = env["queue"]  # type: ignore[assignment]
    aml_writes_predictions(env)
    data = "carat,cut\n" + "".join(f"{0.2 + i / 1000:.3f},Ideal\n" for i in range(ROWS))
    upload(env, "day/diamonds.csv", data.encode())

    (entry,) = deps.store.active()
    assert deps.store.get(entry.job_id).state is JobState.SUBMITTED  # type: ignore[union-attr]
    poll.poll(deps)
    poll.poll(deps)
    message = queue.receive_message()
    assert message is not None
    job_id = parse_completion_message(message.content)
    complete.complete(deps, job_id)

    job = deps.store.get(job_id)
    assert job is not None
    assert (job.state, job.finalized, job.rows_out) == (JobState.COMPLETED, True, ROWS)
    assert list(deps.store.active()) == []
    out = blobs.get_blob_client(deps.settings.output_container, "day/diamonds.csv.predictions.csv")
    lines = out.download_blob().readall().decode().splitlines()
    assert lines[0] == "carat,cut,prediction"
    assert lines[1] == "0.200,Ideal,1000.0"
    assert lines[-1] == f"{0.2 + (ROWS - 1) / 1000:.3f},Ideal,{1000 + (ROWS - 1) * 0.5}"
    assert len(lines) == ROWS + 1
    assert out.get_blob_properties().content_settings.content_type == "text/csv"
    archived = blobs.get_blob_client(deps.settings.archive_container, "day/diamonds.csv")
    assert archived.download_blob().readall() == data.encode()
    assert not blobs.get_blob_client(deps.settings.input_container, "day/diamonds.csv").exists()
    events: FakeEventPublisher = deps.events  # type: ignore[assignment]
    assert events.types() == [EventType.JOB_SUBMITTED.value, EventType.JOB_COMPLETED.value]


def test_a_rejected_input_moves_with_its_reason(env: dict[str, object]) -> None:
    deps: Deps = env["deps"]  # type: ignore[assignment]
    blobs: BlobServiceClient = env["blobs"]  # type: ignore[assignment]
    upload(env, "bad.csv", b"carat;cut\n0.3;Ideal\n")
    rejected = blobs.get_container_client(deps.settings.rejected_container)
    assert sorted(b.name for b in rejected.list_blobs()) == ["bad.csv", "bad.csv.reason.json"]
    reason = json.loads(rejected.get_blob_client("bad.csv.reason.json").download_blob().readall())
    assert reason["error"]["code"] == "WrongDelimiter"
    (job,) = deps.store.page(state=JobState.REJECTED, prefix="", limit=10, after="", now=deps.clock()).jobs
    assert job.error_code == "WrongDelimiter"
    assert list(deps.store.active()) == []


def test_duplicate_delivery_and_reupload_on_real_storage(env: dict[str, object]) -> None:
    deps: Deps = env["deps"]  # type: ignore[assignment]
    blobs: BlobServiceClient = env["blobs"]  # type: ignore[assignment]
    scoring: FakeScoringEndpoint = env["scoring"]  # type: ignore[assignment]
    data = b"carat,cut\n0.3,Ideal\n"
    upload(env, "x.csv", data)
    client = blobs.get_blob_client(deps.settings.input_container, "x.csv")
    props = client.get_blob_properties()
    for _ in range(2):  # the same version delivered again
        intake.accept_blob(
            deps, container=deps.settings.input_container, name="x.csv", size=len(data), etag=props.etag, url=client.url
        )
    assert len(scoring.posts) == 1
    upload(env, "x.csv", data + b"0.4,Good\n")  # a new version under the same name
    assert len(scoring.posts) == 2
    assert len(list(deps.store.active())) == 2
