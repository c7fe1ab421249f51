"""What the stack benchmarks share: a stack of their own, files dropped at once, and what the app's events and the
batch endpoint emulator say afterwards (bench/burst.py, bench/status_calls.py, bench/admission.py)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from azure.storage.blob import BlobServiceClient

from localdev.eventgrid.eventlog import read_records
from localdev.stack import Stack, job_counts

REPO = Path(__file__).resolve().parent.parent
DEMO_CSV = REPO / "localdev" / "demo" / "diamonds.csv"


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def inputs(files: int, rows: int, *, folder: str = "burst") -> dict[str, bytes]:
    """`files` small CSVs of the demo model's columns, `rows` data rows each."""
    lines = DEMO_CSV.read_text(encoding="utf-8").splitlines()
    header, body = lines[0], lines[1:]
    starts = [i * rows % (len(body) - rows) for i in range(files)]
    return {
        f"{folder}/file-{i:04d}.csv": ("\n".join([header, *body[start : start + rows]]) + "\n").encode()
        for i, start in enumerate(starts)
    }


def drop(stack: Stack, files: dict[str, bytes]) -> dict[str, float]:
    """Upload every file at once from 16 threads; when each upload finished (epoch seconds)."""
    container = BlobServiceClient.from_connection_string(
        stack.env["AZURE_STORAGE_CONNECTION_STRING"]
    ).get_container_client(stack.env["INPUT_CONTAINER"])

    def put(item: tuple[str, bytes]) -> tuple[str, float]:
        container.upload_blob(item[0], item[1], overwrite=True)
        return item[0], time.time()

    with ThreadPoolExecutor(16) as pool:
        return dict(pool.map(put, files.items()))


def completed_events(stack: Stack) -> dict[str, dict[str, Any]]:
    """JobCompleted per input name: the event and when the topic accepted it (first delivery wins)."""
    found: dict[str, dict[str, Any]] = {}
    for record in read_records(Path(stack.env["EVENTS_LOG"])):
        event = record["event"]
        if event["type"] == "DropScore.JobCompleted":
            found.setdefault(event["data"]["input"]["name"], {**event, "acceptedAt": stamp(record["receivedAt"])})
    return found


def wait_for_completions(stack: Stack, count: int, *, timeout: float) -> dict[str, dict[str, Any]] | None:
    """Every JobCompleted of `count` inputs, with the ledger's states every 10 s meanwhile; None on timeout."""
    deadline = next_report = time.monotonic()
    deadline += timeout
    while len(events := completed_events(stack)) < count:
        now = time.monotonic()
        if now > deadline:
            progress(f"timed out with {len(events)}/{count} completed")
            return None
        if now >= next_report:
            states = job_counts(stack.env["AZURE_STORAGE_CONNECTION_STRING"], stack.env["JOBS_TABLE"])
            progress(f"{len(events)}/{count} completed; ledger: {dict(sorted(states.items()))}")
            next_report = now + 10
        time.sleep(0.25)
    return events


def _emulator(stack: Stack, path: str) -> Any:
    base = stack.env["BATCH_ENDPOINT_URI"].rsplit("/jobs", 1)[0]
    answer = requests.get(
        base + path, headers={"Authorization": f"Bearer {stack.env['BATCH_ENDPOINT_TOKEN']}"}, timeout=30
    )
    answer.raise_for_status()
    return answer.json()


def emulator_jobs(stack: Stack) -> dict[str, dict[str, Any]]:
    """The emulator's job records by name (GET {scoring uri})."""
    return {job["name"]: job for job in _emulator(stack, "/jobs")["value"]}


def emulator_stats(stack: Stack) -> dict[str, Any]:
    """The emulator's counters: invokes, throttled, statusCalls(ByJob), activeJobs, maxActiveJobs, completedJobs."""
    stats: dict[str, Any] = _emulator(stack, "/_emulator/stats")
    return stats


def reset_emulator_stats(stack: Stack) -> None:
    """Start the emulator's counters again (its peak of active jobs included)."""
    base = stack.env["BATCH_ENDPOINT_URI"].rsplit("/jobs", 1)[0]
    answer = requests.delete(
        base + "/_emulator/stats", headers={"Authorization": f"Bearer {stack.env['BATCH_ENDPOINT_TOKEN']}"}, timeout=30
    )
    answer.raise_for_status()
