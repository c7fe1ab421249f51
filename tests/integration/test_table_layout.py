"""The ledger and active-index key layout on a real Azurite: point-read keys, spread partitions, summaries,
and rows written by the previous layout (ledger RowKey "job", one index partition "active")."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.data.tables import TableClient, TableServiceClient

from localdev.azurite import Azurite
from shared.adapters.slots import TableSlots
from shared.adapters.tables import LEGACY_ACTIVE_PARTITION, LEGACY_ROW, TableJobStore, active_partition, to_entity
from shared.core.naming import HEALTH_PROBE_PREFIX, job_key
from shared.core.polling import summary_of
from shared.errors import JobExists, StaleJob
from shared.models import Job, JobState, RemoteJob, RemoteStatus, Slot, Stage
from shared.usecases import poll
from shared.usecases.deps import Deps
from tests.fakes import World, make_world

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


class CountingStore(TableJobStore):
    """The Table adapter, counting ledger reads (the tick's cost this layout is about)."""

    reads = 0

    def get(self, job_id: str) -> Job | None:
        self.reads += 1
        return super().get(job_id)


@pytest.fixture
def store(azurite: Azurite) -> CountingStore:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    suffix = uuid.uuid4().hex[:10]
    store = CountingStore(
        service, jobs_table=f"jobs{suffix}", active_table=f"active{suffix}", list_table=f"list{suffix}"
    )
    store._ensure_tables()  # the tables the raw-row assertions read
    return store


def table(store: TableJobStore, name: str) -> TableClient:
    return store._service.get_table_client(name)  # the raw rows are what this test is about


def running_job(index: int = 0) -> Job:
    job_id = job_key("devstoreaccount1", "incoming", f"in/{index}.csv", f"0x{index:X}")
    return Job(
        job_id=job_id,
        state=JobState.RUNNING,
        account="devstoreaccount1",
        container="incoming",
        name=f"in/{index}.csv",
        blob_etag=f"0x{index:X}",
        size=10,
        input_url=f"http://127.0.0.1/devstoreaccount1/incoming/in/{index}.csv",
        created_at=NOW,
        updated_at=NOW,
        attempt=1,
        aml_job_name=f"dropscore-{job_id[:32]}-1",
        aml_status="Running",
        studio_url=f"https://ml.azure.com/runs/dropscore-{job_id[:32]}-1",
        submitted_at=NOW,
        started_at=NOW,
        events_pending=("DropScore.JobSubmitted",),
        events_published=("DropScore.JobSubmitted",),
    )


def write_legacy(store: TableJobStore, job: Job, *, indexed: bool = True) -> None:
    """What the previous layout wrote: the ledger row under RowKey "job", the index row in partition "active"."""
    table(store, store.jobs_table).create_entity({**to_entity(job), "RowKey": LEGACY_ROW})
    if indexed:
        table(store, store.active_table).create_entity({"PartitionKey": LEGACY_ACTIVE_PARTITION, "RowKey": job.job_id})


def raw_keys(store: TableJobStore, name: str) -> list[tuple[str, str]]:
    return sorted((e["PartitionKey"], e["RowKey"]) for e in table(store, name).list_entities())


# ---- the current layout ----------------------------------------------------------------------------------


def test_ledger_rows_are_point_read_keys_and_index_rows_spread_over_sixteen_partitions(store: CountingStore) -> None:
    jobs = [running_job(index) for index in range(64)]
    for job in jobs:
        store.mark_active(job)
        store.create(job)
    assert raw_keys(store, store.jobs_table) == sorted((job.job_id, job.job_id) for job in jobs)
    partitions = {key[0] for key in raw_keys(store, store.active_table)}
    assert partitions == {active_partition(job.job_id) for job in jobs}
    assert len(partitions) == 16  # 64 hashed keys fill every hex digit's partition
    assert all(partition.startswith("active-") for partition in partitions)


def test_an_index_row_carries_the_summary_of_its_job(store: CountingStore) -> None:
    job = store.create(running_job())
    store.mark_active(replace(job, state=JobState.RECEIVED, aml_job_name="", aml_status=""))
    (entry,) = store.active()
    assert entry.summary is not None
    assert entry.summary.state is JobState.RECEIVED
    store.refresh_active(job)
    (entry,) = store.active()
    assert entry.summary == summary_of(job)  # datetimes come back timezone-aware and equal
    assert entry.updated_at.tzinfo is not None


def test_a_refresh_never_brings_back_a_removed_index_row(store: CountingStore) -> None:
    job = store.create(running_job())
    store.mark_active(job)
    store.unmark_active(job.job_id)
    store.refresh_active(job)
    assert list(store.active()) == []


def test_health_probe_rows_are_neither_jobs_nor_active(store: CountingStore) -> None:
    job = store.create(running_job())
    store.mark_active(job)
    for name in (store.jobs_table, store.active_table):
        table(store, name).create_entity({"PartitionKey": HEALTH_PROBE_PREFIX, "RowKey": uuid.uuid4().hex})
    assert [entry.job_id for entry in store.active()] == [job.job_id]
    assert [found.job_id for found in listed(store)] == [job.job_id]


def listed(store: CountingStore, state: JobState | None = None, limit: int = 10) -> list[Job]:
    return list(store.page(state=state, prefix="", limit=limit, after="", now=datetime.now(UTC)).jobs)


# ---- rows of the previous layout ---------------------------------------------------------------------------


def test_a_legacy_ledger_row_is_read_updated_in_place_and_never_created_twice(store: CountingStore) -> None:
    job = running_job()
    write_legacy(store, job, indexed=False)
    loaded = store.get(job.job_id)
    assert loaded == job
    assert loaded is not None
    moved = store.update(replace(loaded, state=JobState.SCORED, stage=Stage.ENDED, aml_status="Completed"))
    assert raw_keys(store, store.jobs_table) == [(job.job_id, LEGACY_ROW)]  # updated where it is
    assert store.get(job.job_id) == moved
    with pytest.raises(StaleJob):
        store.update(replace(loaded, state=JobState.FAILED))  # the version it was read at is gone
    with pytest.raises(JobExists):
        store.create(replace(job, state=JobState.RECEIVED))  # one job per blob version, across both layouts
    assert [found.state for found in listed(store, JobState.SCORED)] == [JobState.SCORED]


def test_a_legacy_row_joins_the_job_list_when_its_state_changes(store: CountingStore) -> None:
    old, new = running_job(1), running_job(2)
    write_legacy(store, old)
    store.create(new)
    assert [job.job_id for job in listed(store)] == [new.job_id]  # written before the list existed
    loaded = store.get(old.job_id)
    assert loaded is not None
    store.update(replace(loaded, state=JobState.SCORED, stage=Stage.ENDED))
    assert sorted(job.job_id for job in listed(store)) == sorted([old.job_id, new.job_id])
    assert [job.job_id for job in listed(store, JobState.SCORED)] == [old.job_id]


def test_listing_the_index_moves_legacy_rows_into_their_partition_once(store: CountingStore) -> None:
    job = running_job()
    write_legacy(store, job)
    (entry,) = store.active()
    assert (entry.job_id, entry.summary) == (job.job_id, None)  # no summary yet: the tick reads the ledger
    assert raw_keys(store, store.active_table) == [(active_partition(job.job_id), job.job_id)]
    (again,) = store.active()
    assert again.job_id == job.job_id
    store.unmark_active(job.job_id)  # the current layout's delete now finds it
    assert list(store.active()) == []


def test_a_legacy_index_row_beside_a_current_one_keeps_the_summary(store: CountingStore) -> None:
    """A crash after the move's upsert and before its delete leaves both rows: listed once, moved again."""
    job = running_job()
    write_legacy(store, job)
    store.mark_active(job)
    (entry,) = store.active()
    assert entry.summary == summary_of(job)
    assert raw_keys(store, store.active_table) == [(active_partition(job.job_id), job.job_id)]


def test_a_tick_over_legacy_rows_reads_each_once_then_only_on_news(azurite: Azurite, store: CountingStore) -> None:
    world: World = make_world()
    deps: Deps = replace(world.deps, store=store)
    legacy = running_job(1)
    write_legacy(store, legacy)
    current = store.create(running_job(2))
    store.mark_active(replace(current, state=JobState.RECEIVED))  # intake indexes before it submits
    for job in (legacy, current):
        world.scoring.jobs[job.aml_job_name] = [RemoteJob(job.aml_job_name, RemoteStatus.RUNNING, job.studio_url)]
    assert poll.poll(deps).outcomes == {"waiting:Running": 2}
    assert store.reads == 2
    assert {entry.summary for entry in store.active()} == {summary_of(legacy), summary_of(current)}
    store.reads = 0
    assert poll.poll(deps).outcomes == {"waiting:Running": 2}
    assert store.reads == 0
    world.scoring.jobs[legacy.aml_job_name] = [
        RemoteJob(legacy.aml_job_name, RemoteStatus.COMPLETED, legacy.studio_url)
    ]
    assert poll.poll(deps).outcomes == {"waiting:Running": 1, "finished:Scored": 1}
    assert store.reads == 1
    stored: Any = table(store, store.jobs_table).get_entity(legacy.job_id, LEGACY_ROW)
    assert stored["state"] == JobState.SCORED.value


def test_slots_are_taken_once_each_and_never_listed_as_jobs(store: CountingStore) -> None:
    slots = TableSlots(store._service, table=store.active_table)
    assert slots.slots("pool1") == []
    assert slots.take("pool1", Slot(0), job_id="a" * 40, at=NOW)
    assert not slots.take("pool1", Slot(0), job_id="b" * 40, at=NOW)  # read before the first take: it lost
    (taken,) = slots.slots("pool1")
    assert (taken.number, taken.holder, taken.taken_at) == (0, "a" * 40, NOW)
    assert not slots.free("pool1", Slot(0, holder="a" * 40, version='W/"stale"'))
    assert slots.free("pool1", taken)
    assert slots.slots("pool1")[0].holder == ""
    job = running_job(7)
    store.mark_active(job)
    assert [entry.job_id for entry in store.active()] == [job.job_id]  # the slot rows are not jobs


def test_a_run_event_finds_its_job_by_a_range_of_one_index_partition(store: CountingStore) -> None:
    jobs = [running_job(index) for index in range(20)]
    for job in jobs:
        store.mark_active(job)
    target = jobs[3]
    found = store.find_active(target.job_id[:32])
    assert [entry.job_id for entry in found] == [target.job_id]
    assert found[0].summary is not None
    assert found[0].summary.aml_job_name == target.aml_job_name
    store.note_checked(target.job_id, NOW)
    (again,) = store.find_active(target.job_id[:32])
    assert again.summary is not None
    assert again.summary.checked_at == NOW
