"""The Table, Blob and Queue adapters against a real Azurite."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from localdev.azurite import Azurite
from shared.adapters.blobs import AzureBlobStore
from shared.adapters.queues import StorageCompletionQueue
from shared.adapters.tables import TableJobStore, to_entity
from shared.core.completion import DRIFT_MAX_CHARS, drift_column
from shared.errors import BlobChanged, BlobMissing, JobExists, StaleJob, StorageAuthError, StorageRequestError
from shared.models import Job, JobState, Stage

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(azurite: Azurite) -> TableJobStore:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    return TableJobStore(service, jobs_table=unique("jobs"), active_table=unique("active"), list_table=unique("list"))


@pytest.fixture
def blobs(azurite: Azurite) -> AzureBlobStore:
    return AzureBlobStore(BlobServiceClient.from_connection_string(azurite.connection_string))


def a_job(job_id: str = "f" * 40) -> Job:
    return Job(
        job_id=job_id,
        state=JobState.RECEIVED,
        account="devstoreaccount1",
        container="incoming",
        name="dir/x.csv",
        blob_etag="0x8DE1",
        size=5 * 1024**3,  # over Int32: must round-trip as Int64
        input_url="http://127.0.0.1/devstoreaccount1/incoming/dir/x.csv",
        created_at=NOW,
        updated_at=NOW,
        events_pending=("DropScore.JobSubmitted",),
    )


def test_ledger_insert_only_and_round_trip(store: TableJobStore) -> None:
    created = store.create(a_job())
    assert created.version
    with pytest.raises(JobExists):
        store.create(a_job())
    loaded = store.get(created.job_id)
    assert loaded == created  # every field, Int64 size and tuple columns included
    assert loaded is not None
    assert loaded.created_at == NOW
    assert store.get("0" * 40) is None


def test_ledger_updates_are_etag_conditional(store: TableJobStore) -> None:
    created = store.create(a_job())
    moved = store.update(replace(created, state=JobState.SUBMITTING, attempt=1))
    assert moved.version != created.version
    with pytest.raises(StaleJob):
        store.update(replace(created, state=JobState.REJECTED))  # stale version: someone else moved it
    stored = store.get(created.job_id)
    assert stored is not None
    assert (stored.state, stored.attempt) == (JobState.SUBMITTING, 1)


def test_active_index_holds_only_unfinished_jobs(store: TableJobStore) -> None:
    jobs = [store.create(a_job(f"{i:040d}")) for i in range(3)]
    for job in jobs:
        store.mark_active(job)
    store.unmark_active(jobs[1].job_id)
    store.unmark_active(jobs[1].job_id)  # twice is fine
    assert sorted(entry.job_id for entry in store.active()) == [jobs[0].job_id, jobs[2].job_id]


def test_list_by_state(store: TableJobStore) -> None:
    first = store.create(a_job("1" * 40))
    store.create(a_job("2" * 40))
    store.update(replace(first, state=JobState.REJECTED))

    def listed(state: JobState | None, limit: int) -> list[str]:
        return [job.job_id for job in store.page(state=state, prefix="", limit=limit, after="", now=NOW).jobs]

    assert listed(JobState.REJECTED, 10) == ["1" * 40]
    assert listed(JobState.RECEIVED, 10) == ["2" * 40]
    assert len(listed(None, 10)) == 2
    assert len(listed(None, 1)) == 1


def test_ranged_read_is_pinned_to_the_version(blobs: AzureBlobStore) -> None:
    container = unique("in")
    blobs.write(container, "x.csv", b"a,b\n1,2\n", content_type="text/csv")
    info = blobs.properties(container, "x.csv")
    assert info is not None
    assert blobs.read_range(container, "x.csv", offset=0, length=4, etag=info.etag) == b"a,b\n"
    blobs.write(container, "x.csv", b"a,b\n3,4\n", content_type="text/csv")
    with pytest.raises(BlobChanged):
        blobs.read_range(container, "x.csv", offset=0, length=4, etag=info.etag)
    with pytest.raises(BlobMissing):
        blobs.read_range(container, "nope.csv", offset=0, length=4, etag=None)


def test_move_is_a_server_side_copy_then_a_pinned_delete(blobs: AzureBlobStore) -> None:
    source, target = unique("in"), unique("done")
    blobs.write(source, "d/x.csv", iter([b"a\n", b"1\n"]), content_type="text/csv")
    info = blobs.properties(source, "d/x.csv")
    assert info is not None
    with pytest.raises(BlobChanged):
        blobs.copy(source, "d/x.csv", target, "d/x.csv", source_etag="0x0")  # not that version
    blobs.copy(source, "d/x.csv", target, "d/x.csv", source_etag=info.etag, metadata={"dropscorejob": "j1"})
    moved = blobs.properties(target, "d/x.csv")
    assert moved is not None
    assert moved.metadata == {"dropscorejob": "j1"}
    assert blobs.delete(source, "d/x.csv", etag="0x0") is False  # another version: not ours
    assert blobs.delete(source, "d/x.csv", etag=info.etag) is True
    assert blobs.properties(source, "d/x.csv") is None
    assert b"".join(blobs.chunks(target, "d/x.csv")) == b"a\n1\n"
    assert blobs.url(target, "d/x.csv").endswith(f"/devstoreaccount1/{target}/d/x.csv")


def test_completion_messages_are_base64_json(azurite: Azurite) -> None:
    name = unique("completions")
    client = QueueClient.from_connection_string(
        azurite.connection_string,
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )
    StorageCompletionQueue(client).enqueue("abc")
    raw = QueueClient.from_connection_string(azurite.connection_string, name).receive_message()
    assert raw is not None
    assert json.loads(base64.b64decode(raw.content)) == {"jobId": "abc"}


@pytest.mark.parametrize(
    ("columns", "stage"),
    [
        ({"state": "Submitted"}, Stage.WORKING),
        ({"state": "Failed"}, Stage.ENDED),
        ({"state": "Failed", "eventsPending": '["DropScore.JobFailed"]'}, Stage.ENDED),  # queued early, not filed
        ({"state": "Scored", "eventsPending": '["DropScore.JobCompleted"]'}, Stage.ENDED),
        ({"state": "Failed", "eventsPending": '["DropScore.JobFailed"]', "archiveContainer": "failed"}, Stage.FILED),
        ({"state": "Canceled", "eventsPending": '["DropScore.JobFailed"]', "errorCode": "BlobChanged"}, Stage.FILED),
        ({"state": "Completed", "eventsPending": '["DropScore.JobCompleted"]', "finalized": True}, Stage.DONE),
    ],
)
def test_rows_written_before_the_stage_column_read_with_their_stage(
    azurite: Azurite, columns: dict[str, object], stage: Stage
) -> None:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    store = TableJobStore(service, jobs_table=unique("jobs"), active_table=unique("active"))
    store.get("0" * 40)  # creates the tables
    legacy = {k: v for k, v in to_entity(a_job("1" * 40)).items() if k not in {"stage", "eventsPending"}}
    service.get_table_client(store.jobs_table).create_entity({**legacy, **columns})
    loaded = store.get("1" * 40)
    assert loaded is not None
    assert loaded.stage is stage


def test_the_drift_summary_round_trips_and_older_rows_read_without_one(azurite: Azurite) -> None:
    """`Job.drift` is the column `drift` (a string, at most completion.DRIFT_MAX_CHARS); a row written before it
    existed reads as no drift."""
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    store = TableJobStore(service, jobs_table=unique("jobs"), active_table=unique("active"))
    summary = {"verdict": "drift", "driftedFeatures": [f"column_{i:05d}" for i in range(3000)], "top": []}
    column = drift_column(summary)
    assert DRIFT_MAX_CHARS - 20 < len(column) <= DRIFT_MAX_CHARS  # the longest the ledger keeps
    created = store.create(replace(a_job("3" * 40), drift=column))
    assert to_entity(created)["drift"] == column
    loaded = store.get("3" * 40)
    assert loaded is not None
    assert loaded.drift == column
    older = {k: v for k, v in to_entity(a_job("4" * 40)).items() if k != "drift"}
    service.get_table_client(store.jobs_table).create_entity(older)
    read = store.get("4" * 40)
    assert read is not None
    assert read.drift == ""


def test_storage_refusals_leave_the_adapter_as_typed_errors(azurite: Azurite) -> None:
    wrong_key = azurite.connection_string.replace("AccountKey=", "AccountKey=AAAA")
    denied = AzureBlobStore(BlobServiceClient.from_connection_string(wrong_key))
    with pytest.raises(StorageAuthError, match="HTTP 403"):
        denied.write(unique("c"), "x.csv", b"a\n", content_type="text/csv")
    blobs = AzureBlobStore(BlobServiceClient.from_connection_string(azurite.connection_string))
    with pytest.raises(StorageRequestError, match="HTTP 400"):
        blobs.write("Not_A_Container", "x.csv", b"a\n", content_type="text/csv")


def test_an_active_row_reports_when_it_was_written_not_when_it_was_read(store: TableJobStore) -> None:
    job = a_job("2" * 40)
    store.mark_active(job)
    (first,) = store.active()
    (again,) = store.active()
    # the index row's own Timestamp (the poller's grace for rows still being created), stable across reads
    assert first.updated_at == again.updated_at
    assert first.updated_at.tzinfo is not None
