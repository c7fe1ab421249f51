"""One poll tick vs a naive loop of status calls: 1,000 active jobs, 50 ms of latency per status call; and the
same tick over a ledger that also holds 10,000 finished jobs.

Run: `.venv/bin/python bench/poll_tick.py [--jobs 1000] [--finished 10000] [--latency 0.05] [--ticks 8]`.
Starts its own Azurite and batch endpoint emulator on free ports. The emulator holds every job Running
(`stuck_jobs=1`) and answers each status read after `slow_status` seconds (a round trip to Azure ML).
Rows go through the app's own Table adapter; the tick is `shared.usecases.poll.poll` with the app's
settings (POLL_CONCURRENCY at its default unless --concurrency says otherwise).

- ratio = a sequential loop of status GETs (the app's REST client, one job after another) / a tick (median),
  goal >= 8. The first tick, which reads every ledger row once and writes its index summary, is shown apart.
- growth = tick over the ledger with the finished jobs / tick over the ledger without them, goal < 5%. The
  two ledgers (same active jobs, same active index, one Azurite) are ticked alternately, so the machine's
  load, shared with other work, weighs on both alike. Ticks that must read every row (every status changed)
  are compared the same way: that is what the ledger's key layout decides.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402
from azure.data.tables import TableServiceClient  # noqa: E402
from azure.storage.blob import BlobServiceClient  # noqa: E402

from localdev.azurite import start_azurite  # noqa: E402
from localdev.batch_endpoint.launcher import start_batch_endpoint  # noqa: E402
from shared.adapters.tables import TableJobStore  # noqa: E402
from shared.config import Settings  # noqa: E402
from shared.core.naming import aml_job_name, aml_output_path, datastore_uri, repeatability_id  # noqa: E402
from shared.core.submission import received  # noqa: E402
from shared.models import BlobRef, InvokeRequest, Job, JobState, Stage  # noqa: E402
from shared.runtime import build_deps  # noqa: E402
from shared.usecases.deps import Deps  # noqa: E402
from shared.usecases.poll import poll  # noqa: E402

TOKEN = "bench-token"  # the emulator's fixed local token (loopback only)
RATIO_GOAL = 8.0
GROWTH_GOAL = 0.05
ACCOUNT = "devstoreaccount1"
INPUT = "bench/input.csv"
SCORE_PY = "def init():\n    pass\n\n\ndef run(mini_batch):\n    return list(mini_batch)\n"


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class CountingStore(TableJobStore):
    """The app's Table adapter, counting ledger reads (what the tick should skip)."""

    reads = 0

    def get(self, job_id: str) -> Job | None:
        self.reads += 1
        return super().get(job_id)


def a_job(index: int, *, prefix: str) -> Job:
    ref = BlobRef(ACCOUNT, "incoming", f"{prefix}/{index:06d}.csv", f"0x8DE{index:012X}", 100, "http://x")
    return received(ref, datetime.now(UTC))


def in_parallel(work: Callable[[int], object], count: int, *, threads: int = 8) -> None:
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(count)))


def running(job: Job) -> Job:
    now = datetime.now(UTC)
    return replace(
        job,
        state=JobState.RUNNING,
        attempt=1,
        posts=1,
        aml_job_name=aml_job_name(job.job_id, 1),
        aml_status="Running",
        submitted_at=now,
        started_at=now,
        events_pending=("DropScore.JobSubmitted",),
        events_published=("DropScore.JobSubmitted",),
    )


def submit_active_jobs(deps: Deps, ledgers: list[TableJobStore], count: int) -> list[Job]:
    """Running in the emulator and in each ledger; indexed as intake does, before it submits (a Received summary)."""
    received_jobs = [a_job(index, prefix="active") for index in range(count)]

    def submit(index: int) -> None:
        job = running(received_jobs[index])
        deps.scoring.invoke(
            InvokeRequest(
                job_name=job.aml_job_name,
                input_uri=datastore_uri("inputs", INPUT),
                output_uri=datastore_uri("workspaceblobstore", aml_output_path("bench", job.job_id, 1)),
                repeatability_id=repeatability_id(job.job_id, 1),
            )
        )
        deps.store.mark_active(received_jobs[index])
        for ledger in ledgers:
            ledger.create(job)

    in_parallel(submit, count)
    return received_jobs


def add_finished_jobs(store: TableJobStore, count: int) -> None:
    now = datetime.now(UTC)

    def finish(index: int) -> None:
        job = a_job(index, prefix="finished")
        store.create(replace(job, state=JobState.COMPLETED, stage=Stage.DONE, finished_at=now, rows_out=10))
        if index and index % 2000 == 0:
            progress(f"  {index} finished jobs written")

    in_parallel(finish, count)


def wait_until_running(stats_url: str, count: int) -> None:
    deadline = time.monotonic() + 300
    jobs: dict[str, int] = {}
    while time.monotonic() < deadline:
        jobs = requests.get(stats_url, timeout=30).json()["jobs"]
        if jobs.get("Running", 0) >= count:
            return
        time.sleep(0.5)
    raise SystemExit(f"the emulator's jobs did not all reach Running: {jobs}")


def sequential_loop(deps: Deps, names: list[str]) -> float:
    started = time.perf_counter()
    for name in names:
        if deps.scoring.get_job(name).status.value != "Running":
            raise SystemExit(f"job {name} is not Running")
    return time.perf_counter() - started


def timed_tick(deps: Deps, expected: int) -> tuple[float, int]:
    """Seconds, and ledger reads, of one tick."""
    store = deps.store
    assert isinstance(store, CountingStore)
    store.reads = 0
    started = time.perf_counter()
    report = poll(deps)
    elapsed = time.perf_counter() - started
    if report.outcomes != {"waiting:Running": expected}:
        raise SystemExit(f"unexpected tick outcomes: {report.outcomes}")
    return elapsed, store.reads


def alternate(
    runs: int, plain: Deps, history: Deps, expected: int, *, label: str, before: Callable[[], None] = lambda: None
) -> tuple[list[float], list[float]]:
    """Ticks over the two ledgers in turn, in ABBA order: the second of two ticks in a row tends to be slower
    (Azurite catching up), so with an even number of runs each ledger goes first equally often."""
    times: dict[int, list[float]] = {0: [], 1: []}
    for run in range(runs):
        for which in (0, 1) if run % 2 == 0 else (1, 0):
            before()
            elapsed, reads = timed_tick((plain, history)[which], expected)
            times[which].append(elapsed)
            ledger = ("without history", "with history")[which]
            progress(f"{label} tick {run + 1}/{runs}, {ledger}: {elapsed:.2f} s, {reads} ledger reads")
    return times[0], times[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="active jobs")
    parser.add_argument("--finished", type=int, default=10_000, help="finished jobs in the second ledger")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds each status call waits")
    parser.add_argument("--ticks", type=int, default=8, help="ticks over each ledger (median)")
    parser.add_argument("--rereads", type=int, default=4, help="ticks that read every row, over each ledger")
    parser.add_argument("--concurrency", type=int, default=None, help="POLL_CONCURRENCY (default: the app's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-poll-") as tmp:
        work = Path(tmp)
        deployment = work / "deployment"
        deployment.mkdir()
        (deployment / "score.py").write_text(SCORE_PY)
        progress("starting Azurite and the emulator (every job held Running)")
        azurite = start_azurite(work / "azurite.log")
        try:
            blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
            for container in ("incoming", "azureml-blobstore"):
                blobs.create_container(container)
            blobs.get_blob_client("incoming", INPUT).upload_blob(b"a,b\n1,2\n")
            service, scoring_uri = start_batch_endpoint(
                connection_string=azurite.connection_string,
                datastores={"workspaceblobstore": "azureml-blobstore", "inputs": "incoming"},
                deployments={"bench": deployment},
                token=TOKEN,
                log_path=work / "emulator.log",
                job_seconds=0,
                faults="stuck_jobs=1",
                workers=1,
            )
            try:
                return measure(args, azurite.connection_string, scoring_uri)
            finally:
                service.stop()
        finally:
            azurite.stop()


def measure(args: argparse.Namespace, connection_string: str, scoring_uri: str) -> int:
    env = {
        "AzureWebJobsStorage": connection_string,
        "BATCH_ENDPOINT_URI": scoring_uri,
        "AML_LOCAL_TOKEN": TOKEN,
        "EVENTGRID_TOPIC_ENDPOINT": "http://127.0.0.1:9/api/events",  # never called: no event is pending
        "EVENTGRID_TOPIC_KEY": "bench-key",
    }
    if args.concurrency is not None:
        env["POLL_CONCURRENCY"] = str(args.concurrency)
    settings = Settings.from_env(env)
    service = TableServiceClient.from_connection_string(connection_string)
    plain_store = CountingStore(service, jobs_table="jobs", active_table=settings.active_table)
    history_store = CountingStore(service, jobs_table="jobshistory", active_table=settings.active_table)
    plain = replace(build_deps(settings), store=plain_store)
    history = replace(plain, store=history_store)
    base = scoring_uri.rsplit("/jobs", 1)[0]
    load_before = os.getloadavg()

    progress(f"submitting {args.jobs} jobs (emulator, active index, both ledgers)")
    jobs = submit_active_jobs(plain, [plain_store, history_store], args.jobs)
    progress(f"adding {args.finished} finished jobs to the second ledger")
    add_finished_jobs(history_store, args.finished)
    wait_until_running(f"{base}/_emulator/stats", args.jobs)
    spec = f"stuck_jobs=1,slow_status={args.latency}"
    requests.put(f"{base}/_emulator/faults", json={"spec": spec}, timeout=10).raise_for_status()

    progress(f"baseline: {args.jobs} status GETs one after another ({args.latency * 1000:.0f} ms each)")
    loop_seconds = sequential_loop(plain, [running(job).aml_job_name for job in jobs])
    progress(f"baseline took {loop_seconds:.2f} s")
    first_seconds, first_reads = timed_tick(plain, args.jobs)
    progress(f"first tick: {first_seconds:.2f} s, {first_reads} ledger reads (each row once, its summary written)")
    requests.delete(f"{base}/_emulator/stats", timeout=10).raise_for_status()
    ticks, ticks_history = alternate(args.ticks, plain, history, args.jobs, label="steady")
    status_calls = requests.get(f"{base}/_emulator/stats", timeout=10).json()["routes"]["GET /jobs/{name}"]["count"]

    def forget_summaries() -> None:  # the index as intake leaves it: the tick reads every row, as when all changed
        for job in jobs:
            plain_store.mark_active(job)

    rereads, rereads_history = alternate(
        args.rereads, plain, history, args.jobs, label="re-reading", before=forget_summaries
    )
    load_after = os.getloadavg()

    tick, tick_history = statistics.median(ticks), statistics.median(ticks_history)
    ratio, growth = loop_seconds / tick, tick_history / tick - 1
    reread, reread_history = statistics.median(rereads), statistics.median(rereads_history)
    per_tick = status_calls / (2 * args.ticks)
    line("active jobs", f"{args.jobs}, {args.latency * 1000:.0f} ms per status call")
    line("POLL_CONCURRENCY", f"{settings.poll_concurrency} ({per_tick:.0f} status calls and 0 ledger reads per tick)")
    line("sequential status loop", f"{loop_seconds:6.2f} s")
    line("first tick", f"{first_seconds:6.2f} s  ({first_reads} ledger reads, summaries written)")
    line("tick", f"{tick:6.2f} s  (median of {spread(ticks)})")
    line("ratio loop/tick", f"{ratio:6.2f}  (goal >= {RATIO_GOAL:g})")
    line(f"tick, +{args.finished} finished", f"{tick_history:6.2f} s  (median of {spread(ticks_history)})")
    line("tick growth", f"{growth * 100:+6.1f}% (goal < {GROWTH_GOAL * 100:g}%)")
    line("tick reading every row", f"{reread:6.2f} s  (median of {spread(rereads)})")
    line(f"  same, +{args.finished} finished", f"{reread_history:6.2f} s  (median of {spread(rereads_history)})")
    line("  growth", f"{(reread_history / reread - 1) * 100:+6.1f}% (point reads; no goal)")
    line("load average (1 min)", f"{load_before[0]:.2f} before, {load_after[0]:.2f} after, {os.cpu_count()} CPUs")
    return 0 if ratio >= RATIO_GOAL and growth < GROWTH_GOAL else 1


def line(label: str, value: str) -> None:
    print(f"{label + ':':<30}{value}")


def spread(times: list[float]) -> str:
    return f"{len(times)}: {', '.join(f'{t:.2f}' for t in times)}"


if __name__ == "__main__":
    sys.exit(main())
