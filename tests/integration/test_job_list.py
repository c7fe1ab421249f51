"""The time-ordered job list on a real Azurite: the rows each ledger write moves, pages and their continuation,
the filters, and the rows a crash or a duplicate trigger leaves behind."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableServiceClient

from localdev.azurite import Azurite
from shared.adapters.joblist import JobList
from shared.adapters.tables import TableJobStore
from shared.core import listing
from shared.errors import JobExists
from shared.models import Job, JobState, Stage

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


@pytest.fixture
def store(azurite: Azurite) -> TableJobStore:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    tag = uuid.uuid4().hex[:10]
    return TableJobStore(service, jobs_table=f"jobs{tag}", active_table=f"active{tag}", list_table=f"list{tag}")


def a_job(index: int, *, name: str = "") -> Job:
    created = NOW - timedelta(minutes=index)
    return Job(
        job_id=f"{index + 1:040x}",
        state=JobState.RECEIVED,
        account="devstoreaccount1",
        container="incoming",
        name=name or f"in/{index}.csv",
        blob_etag="0x1",
        size=10,
        input_url="http://127.0.0.1/devstoreaccount1/incoming/x.csv",
        created_at=created,
        updated_at=created,
    )


def list_rows(store: TableJobStore) -> list[tuple[str, str]]:
    client = store._service.get_table_client(store.list_table)  # the raw rows are what this test is about
    return sorted((row["PartitionKey"], row["RowKey"]) for row in client.list_entities())


def page_ids(store: TableJobStore, *, state: JobState | None = None, prefix: str = "", limit: int = 10) -> list[str]:
    return [job.job_id for job in store.page(state=state, prefix=prefix, limit=limit, after="", now=NOW).jobs]


def test_each_ledger_write_keeps_one_all_row_and_one_row_in_the_current_state(store: TableJobStore) -> None:
    job = store.create(a_job(0))
    key = listing.row_key(job.created_at, job.job_id)
    assert list_rows(store) == [("all", key), ("state-Received", key)]
    job = store.update(replace(job, state=JobState.SUBMITTING))
    job = store.update(replace(job, aml_status="Queued"))  # no state change: no list write
    job = store.update(replace(job, state=JobState.FAILED, stage=Stage.ENDED, finished_at=NOW))
    assert list_rows(store) == [("all", key), ("state-Failed", key)]
    store.update(replace(job, stage=Stage.DONE))
    (recent,) = store.recent(since=NOW - timedelta(days=1), cap=10).jobs
    assert (recent.job_id, recent.state, recent.finished_at) == (job.job_id, JobState.FAILED, NOW)


def test_pages_run_newest_first_and_the_continuation_reaches_every_job_once(store: TableJobStore) -> None:
    jobs = [store.create(a_job(index)) for index in (3, 0, 4, 1, 2)]
    seen: list[str] = []
    after = ""
    while True:
        page = store.page(state=None, prefix="", limit=2, after=after, now=NOW)
        assert len(page.jobs) <= 2
        seen += [job.job_id for job in page.jobs]
        if page.continuation is None:
            break
        after = page.continuation
    newest_first = sorted(jobs, key=lambda job: job.created_at, reverse=True)
    assert seen == [job.job_id for job in newest_first]


def test_state_and_prefix_filters(store: TableJobStore) -> None:
    jobs = [store.create(a_job(index, name=f"{'ops' if index % 2 else 'sales'}/{index}.csv")) for index in range(6)]
    for job in jobs[:3]:
        store.update(replace(job, state=JobState.REJECTED, stage=Stage.ENDED))
    assert page_ids(store, state=JobState.REJECTED) == [job.job_id for job in jobs[:3]]
    assert page_ids(store, state=JobState.RECEIVED) == [job.job_id for job in jobs[3:]]
    assert page_ids(store, prefix="ops/") == [jobs[1].job_id, jobs[3].job_id, jobs[5].job_id]
    assert page_ids(store, state=JobState.REJECTED, prefix="ops/") == [jobs[1].job_id]
    short = store.page(state=None, prefix="ops/", limit=1, after="", now=NOW)
    assert [job.job_id for job in short.jobs] == [jobs[1].job_id]
    assert short.continuation is not None  # stopped after its one job: the rest is on later pages
    rest = store.page(state=None, prefix="ops/", limit=5, after=short.continuation, now=NOW)
    assert ([job.job_id for job in rest.jobs], rest.continuation) == ([jobs[3].job_id, jobs[5].job_id], None)


def test_a_row_written_before_a_ledger_write_that_never_came_is_skipped_then_removed(store: TableJobStore) -> None:
    job = store.create(a_job(0))
    # A crash between the list write and the ledger write (or a lost race): the row says Failed, the ledger not.
    JobList(store._list_client).announce(replace(job, state=JobState.FAILED))
    failed_key = ("state-Failed", listing.row_key(job.created_at, job.job_id))
    assert failed_key in list_rows(store)
    assert page_ids(store, state=JobState.FAILED) == []  # skipped: the ledger says Received
    assert failed_key in list_rows(store)  # but kept while the write it announced could still land
    later = datetime.now(UTC) + listing.STALE_AFTER + timedelta(minutes=1)
    assert store.page(state=JobState.FAILED, prefix="", limit=10, after="", now=later).jobs == ()
    assert failed_key not in list_rows(store)
    assert page_ids(store, state=JobState.RECEIVED) == [job.job_id]


def test_a_duplicate_triggers_rows_go_and_never_list_the_job_twice(store: TableJobStore) -> None:
    job = store.create(a_job(0))
    failed = store.update(replace(job, state=JobState.FAILED, stage=Stage.ENDED, finished_at=NOW))
    duplicate = replace(a_job(0), created_at=NOW + timedelta(seconds=5))  # the same blob version, triggered later
    with pytest.raises(JobExists):
        store.create(duplicate)
    key = listing.row_key(job.created_at, job.job_id)
    assert list_rows(store) == [("all", key), ("state-Failed", key)]  # the duplicate's rows went at once
    # A crash before they went: the page skips them and the summary counts the job's first row.
    JobList(store._list_client).announce(duplicate)
    assert page_ids(store) == [job.job_id]
    assert page_ids(store, state=JobState.RECEIVED) == []
    recent = store.recent(since=NOW - timedelta(hours=1), cap=10).jobs
    assert [listed.job_id for listed in recent] == [job.job_id] * 2
    summary = listing.summarize(recent, now=NOW + timedelta(minutes=1), scanned=2, truncated=False)
    assert summary.by_state == {failed.state.value: 1}


def test_recent_stops_at_its_cap(store: TableJobStore) -> None:
    for index in range(5):
        store.create(a_job(index))
    recent = store.recent(since=NOW - timedelta(hours=1), cap=3)
    assert (len(recent.jobs), recent.scanned, recent.truncated) == (3, 3, True)
    assert store.recent(since=NOW - timedelta(minutes=2, seconds=30), cap=10).truncated is False
    assert len(store.recent(since=NOW - timedelta(minutes=2, seconds=30), cap=10).jobs) == 3
