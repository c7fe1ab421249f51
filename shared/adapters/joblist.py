"""The time-ordered job list on Table storage (azure-data-tables): an index the ledger's writes keep, read a
bounded page at a time (docs/architecture.md, "Storage keys"; the keys and rules are `core/listing.py`'s).

Table `joblist` (JOB_LIST_TABLE): per job one row in partition `all` (its name, state, received and finished
times) and one in `state-<State>` (its name), both keyed `<inverted received ms>-<job id>`. A page is one
query of one partition (`RowKey gt <where the last page stopped>`, at most `MAX_SCAN` rows), then one point
read of each listed job's ledger row: the page shows what the ledger says, never a stale copy.

Crash-safe by order, never by a transaction: the rows a ledger write moves the job into are written before it
(`announce`), the rows it moves the job out of are deleted after it (`settle`). A crash or a lost race can
leave a row too many, never one too few; readers skip rows their ledger row does not back and delete them
once they are older than any write still in flight (`listing.removable`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.adapters.activerows import utc
from shared.core import listing
from shared.logcontext import about_job
from shared.models import Job, JobPage, JobState, ListedJob, RecentJobs, Stage

#: Index rows one page call reads at most (one request: Table storage answers up to 1,000 rows at a time).
MAX_SCAN = 1000
#: Ledger point reads in flight at once while a page is built (each waits on the network; `tables.table_service`
#: keeps at least this many connections).
READ_CONCURRENCY = 16

_GONE_OR_CHANGED = {404, 412}
#: Empty pages with a continuation a call follows before answering (each one more request).
_EMPTY_PAGES_FOLLOWED = 3

log = logging.getLogger("dropscore")

Reader = Callable[[str], Job | None]


class JobList:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    # ---- written with the ledger ------------------------------------------------------------------

    def announce(self, job: Job) -> None:
        """Before the ledger write that puts `job` in its state (or creates it): its row in that state's
        partition, and, for a new job, its row in `all`. Nothing when the write keeps the state."""
        if not listing.moved_states(job.stored_state, job.state):
            return
        key = listing.row_key(job.created_at, job.job_id)
        partition = listing.state_partition(job.state)
        self._table.upsert_entity({"PartitionKey": partition, "RowKey": key, "name": job.name}, mode=UpdateMode.REPLACE)
        if job.stored_state is None:
            self._table.upsert_entity(self._all_row(job, key), mode=UpdateMode.MERGE)

    def settle(self, written: Job, saved: Job) -> None:
        """After the ledger write of `written` (stored as `saved`): the `all` row says the new state, the partition
        of the state it left loses its row. Closing rewrites the `all` row once more: a crash after an earlier
        write left it saying an older state. Best effort: the ledger write stands, readers skip what is left."""
        left = written.stored_state
        if not listing.moved_states(left, saved.state) and saved.stage is not Stage.DONE:
            return
        key = listing.row_key(saved.created_at, saved.job_id)
        try:
            self._table.upsert_entity(self._all_row(saved, key), mode=UpdateMode.MERGE)
            if left is not None and left != saved.state:
                with contextlib.suppress(ResourceNotFoundError):
                    self._table.delete_entity(listing.state_partition(left), key)
        except AzureError as exc:
            log.warning("job %s: the job list was not brought up to date: %s", saved.job_id, type(exc).__name__)

    def withdraw(self, job: Job, *, stored_created: datetime | None) -> None:
        """A creation that found the job already there: when it was a duplicate trigger (received at another
        moment than the stored job), the rows `announce` wrote for it go; the job's own rows have another key."""
        key = listing.row_key(job.created_at, job.job_id)
        if stored_created is None or listing.row_key(stored_created, job.job_id) == key:
            return
        for partition in (listing.state_partition(job.state), listing.ALL_PARTITION):
            with contextlib.suppress(ResourceNotFoundError):
                self._table.delete_entity(partition, key)

    @staticmethod
    def _all_row(job: Job, key: str) -> dict[str, Any]:
        row: dict[str, Any] = {
            "PartitionKey": listing.ALL_PARTITION,
            "RowKey": key,
            "name": job.name,
            "state": job.state.value,
            "createdAt": job.created_at,
        }
        if job.finished_at is not None:
            row["finishedAt"] = job.finished_at
        return row

    # ---- read ------------------------------------------------------------------------------------

    def page(
        self, *, state: JobState | None, prefix: str, limit: int, after: str, read: Reader, now: datetime
    ) -> JobPage:
        """Up to `limit` jobs newer-first after the row key `after` ("" for the newest), whose names start with
        `prefix`: one query of at most MAX_SCAN index rows (exactly `limit` without a prefix), then the
        ledger rows. A page may be short, even empty, while `continuation` is set: the scan stopped."""
        partition = listing.partition_for(state)
        scan = MAX_SCAN if prefix else limit
        pages: Any = self._table.query_entities(
            "PartitionKey eq @partition and RowKey gt @after",
            parameters={"partition": partition, "after": after},
            results_per_page=scan,
        ).by_page()
        rows = list(next(pages, []))
        for _ in range(_EMPTY_PAGES_FOLLOWED):  # Table storage may answer a page with no rows and a continuation
            if rows or pages.continuation_token is None:
                break
            rows = list(next(pages, []))
        cut_short = pages.continuation_token is not None or len(rows) >= scan
        picked: list[Any] = []
        consumed = 0
        for row in rows:
            if len(picked) == limit:
                break
            consumed += 1
            if str(row.get("name", "")).startswith(prefix):
                picked.append(row)
        more = consumed < len(rows) or cut_short
        continuation = rows[consumed - 1]["RowKey"] if more and consumed else None
        jobs = self._ledger_rows_backing(picked, state=state, read=read, now=now)
        return JobPage(tuple(jobs), continuation, len(rows))

    def recent(self, *, since: datetime, cap: int) -> RecentJobs:
        """The `all` rows of jobs received after `since`, newest first, at most `cap` of them."""
        query = "PartitionKey eq @partition and RowKey lt @bound"
        bounds = {"partition": listing.ALL_PARTITION, "bound": listing.newer_than(since)}
        listed: list[ListedJob] = []
        scanned = 0
        for row in self._table.query_entities(query, parameters=bounds, results_per_page=min(cap, MAX_SCAN)):
            if scanned == cap:
                return RecentJobs(tuple(listed), scanned, truncated=True)
            scanned += 1
            parsed = listing.parse_row_key(row["RowKey"])
            state = _state(row.get("state"))
            if parsed is not None and state is not None:
                finished = row.get("finishedAt")
                listed.append(ListedJob(parsed[1], state, parsed[0], utc(finished) if finished else None))
        return RecentJobs(tuple(listed), scanned, truncated=False)

    def _ledger_rows_backing(
        self, rows: Sequence[Any], *, state: JobState | None, read: Reader, now: datetime
    ) -> Iterator[Job]:
        """The ledger rows of `rows`, in order, skipping (and, once stale, deleting) the index rows they do not
        back."""
        ids = [(listing.parse_row_key(row["RowKey"]) or (None, ""))[1] for row in rows]
        with ThreadPoolExecutor(max_workers=max(1, min(READ_CONCURRENCY, len(ids)))) as pool:
            ledger = list(pool.map(lambda job_id: read(job_id) if job_id else None, ids))
        for row, job in zip(rows, ledger, strict=True):
            if listing.listed_truly(job, key=row["RowKey"], state=state):
                assert job is not None  # listed_truly says so
                yield job
            elif listing.removable(written_at=_written_at(row), now=now):
                self._remove_stale(row)

    def _remove_stale(self, row: Any) -> None:
        """Only the version read: a writer that announced the row again since then keeps it."""
        try:
            self._table.delete_entity(
                row["PartitionKey"],
                row["RowKey"],
                etag=row.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceNotFoundError, ResourceModifiedError):
            return
        except HttpResponseError as exc:
            if exc.status_code in _GONE_OR_CHANGED:  # not every 412 arrives mapped
                return
            raise
        parsed = listing.parse_row_key(row["RowKey"])
        with about_job(parsed[1] if parsed else ""):
            log.info("job list: removed the stale row %s/%s", row["PartitionKey"], row["RowKey"])


def _written_at(row: Any) -> datetime | None:
    stamp = row.metadata.get("timestamp")
    return utc(stamp) if isinstance(stamp, datetime) else None


def _state(text: object) -> JobState | None:
    try:
        return JobState(str(text))
    except ValueError:
        return None
