"""The job list: one page (newest first, by state, by prefix) vs one ledger point read, at 1,000 and 100,000 jobs.

Run: `.venv/bin/python bench/list.py [--jobs 100000] [--latency 0.05] [--repeat 15]`. One Azurite in memory,
the ledger and the list written as the app writes them (the list's rows by `adapters/joblist.py`'s own shape),
states 70 % Completed, 20 % Failed, 10 % Rejected, names in 10 folders. The measured store is the app's
`TableJobStore` over a transport that waits `--latency` before each request (Azure Table storage's round
trip, which Azurite on loopback lacks; the page's concurrent ledger reads only pay off over it).

Baseline: one point read (`store.get`). Measured: a page of 50 (the API's default) newest first, of one state,
of one folder prefix, and the page a continuation token leads to. Goals: the newest-first page at 100,000
jobs <= 10 point reads (a bounded read), and <= 1.5x the same page at 1,000 jobs (it does not grow with the
ledger). Azurite filters a partition in memory, so its part of a query grows with the partition; Table
storage serves `PartitionKey eq .. and RowKey gt ..` as an index range read.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from azure.core.pipeline.transport import RequestsTransport  # noqa: E402
from azure.data.tables import TableClient, TableServiceClient, UpdateMode  # noqa: E402

from localdev.azurite import start_azurite  # noqa: E402
from shared.adapters.joblist import READ_CONCURRENCY, JobList  # noqa: E402
from shared.adapters.rest import pooled_session  # noqa: E402
from shared.adapters.tables import TableJobStore, to_entity  # noqa: E402
from shared.core import listing  # noqa: E402
from shared.models import Job, JobState, Stage  # noqa: E402

PAGE = 50
RATIO_GOAL = 10.0
GROWTH_GOAL = 1.5
VERDICT = {True: "PASS", False: "FAIL"}
NOW = datetime.now(UTC)


class SlowTransport(RequestsTransport):
    """Each request waits `latency` first: the network Azurite on loopback does not have."""

    def __init__(self, latency: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.latency = latency

    def send(self, request: Any, **kwargs: Any) -> Any:
        time.sleep(self.latency)
        return super().send(request, **kwargs)


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def a_job(index: int) -> Job:
    state = JobState.COMPLETED if index % 10 < 7 else JobState.FAILED if index % 10 < 9 else JobState.REJECTED
    created = NOW - timedelta(seconds=index * 30)
    return Job(
        job_id=f"{index:040x}",
        state=state,
        stage=Stage.DONE,
        account="devstoreaccount1",
        container="incoming",
        name=f"f{index % 10}/{index}.csv",
        blob_etag="0x1",
        size=1000 + index,
        input_url=f"http://127.0.0.1/devstoreaccount1/incoming/f{index % 10}/{index}.csv",
        created_at=created,
        updated_at=created,
        finished_at=created + timedelta(seconds=20),
        rows_in=100,
        rows_out=100,
    )


def write_jobs(service: TableServiceClient, store: TableJobStore, indexes: range) -> None:
    """The ledger rows one by one (each its own partition), the list rows in batches of one partition."""
    ledger = service.get_table_client(store.jobs_table)
    jobs = [a_job(index) for index in indexes]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda job: ledger.upsert_entity(to_entity(job), mode=UpdateMode.REPLACE), jobs))
    listed = service.get_table_client(store.list_table)
    by_partition: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        key = listing.row_key(job.created_at, job.job_id)
        by_partition.setdefault(listing.ALL_PARTITION, []).append(JobList._all_row(job, key))
        row = {"PartitionKey": listing.state_partition(job.state), "RowKey": key, "name": job.name}
        by_partition.setdefault(row["PartitionKey"], []).append(row)
    batches = [rows[i : i + 100] for rows in by_partition.values() for i in range(0, len(rows), 100)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda batch: _submit(listed, batch), batches))


def _submit(client: TableClient, rows: list[dict[str, Any]]) -> None:
    client.submit_transaction([("upsert", row) for row in rows])


def timed(action: Callable[[], object], repeat: int) -> float:
    action()  # warm: connections, the tables' first-use checks
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def measure(store: TableJobStore, jobs: int, repeat: int) -> dict[str, float]:
    def page(**filters: Any) -> Callable[[], object]:
        def run() -> object:
            result = store.page(limit=PAGE, now=NOW, **filters)
            assert len(result.jobs) == PAGE, (filters, len(result.jobs))  # a full page, or it is not the same work
            return result

        return run

    middle = listing.row_key(a_job(jobs // 2).created_at, a_job(jobs // 2).job_id)
    return {
        "point": timed(lambda: store.get(a_job(jobs // 3).job_id), repeat),
        "newest": timed(page(state=None, prefix="", after=""), repeat),
        "state": timed(page(state=JobState.FAILED, prefix="", after=""), repeat),
        "prefix": timed(page(state=None, prefix="f3/", after=""), repeat),
        "continued": timed(page(state=None, prefix="", after=middle), repeat),
    }


def report(figures: dict[int, dict[str, float]], latency: float) -> int:
    small, large = sorted(figures)
    print(f"\njob list, {PAGE} jobs a page, {latency * 1000:.0f} ms per storage request (median):")
    labels = {
        "point": "point read (baseline)",
        "newest": "page, newest first",
        "state": "page, state=Failed",
        "prefix": "page, prefix=f3/",
        "continued": "page, continuation",
    }
    for key, label in labels.items():
        cells = "  ".join(f"{figures[size][key] * 1000:7.1f} ms at {size:,}" for size in (small, large))
        print(f"  {label + ':':24s} {cells}  ({figures[large][key] / figures[large]['point']:.1f} point reads)")
    ratio = figures[large]["newest"] / figures[large]["point"]
    growth = figures[large]["newest"] / figures[small]["newest"]
    ok = {"ratio": ratio <= RATIO_GOAL, "growth": growth <= GROWTH_GOAL}
    print(f"  ratio page/point read at {large:,} jobs: {ratio:.1f} (goal <= {RATIO_GOAL:g})  {VERDICT[ok['ratio']]}")
    print(f"  page at {large:,} / at {small:,} jobs: {growth:.2f} (goal <= {GROWTH_GOAL:g})  {VERDICT[ok['growth']]}")
    return 0 if all(ok.values()) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="ledger rows at the second measurement")
    parser.add_argument("--small", type=int, default=1_000, help="ledger rows at the first measurement")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds each storage request waits")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with azurite_running() as connection:
        service = TableServiceClient.from_connection_string(
            connection, transport=RequestsTransport(session=pooled_session(16), session_owner=False)
        )
        # The app's pool (tables.table_service: POLL_CONCURRENCY's default 32 connections), the network's wait.
        session = pooled_session(max(32, READ_CONCURRENCY))
        transport = SlowTransport(args.latency, session=session, session_owner=False)
        slow = TableServiceClient.from_connection_string(connection, transport=transport)
        store = TableJobStore(slow, jobs_table="jobs", active_table="activejobs", list_table="joblist")
        store._ensure_tables()
        figures: dict[int, dict[str, float]] = {}
        written = 0
        for size in (args.small, args.jobs):
            started = time.perf_counter()
            write_jobs(service, store, range(written, size))
            written = size
            progress(f"{size:,} jobs in the ledger and the list ({time.perf_counter() - started:.0f} s to write)")
            figures[size] = measure(store, size, args.repeat)
    return report(figures, args.latency)


@contextlib.contextmanager
def azurite_running() -> Iterator[str]:
    azurite = start_azurite(Path(tempfile.mkdtemp(prefix="bench-list-")) / "azurite.log")
    try:
        yield azurite.connection_string
    finally:
        azurite.stop()


if __name__ == "__main__":
    sys.exit(main())
