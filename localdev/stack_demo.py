"""`python -m localdev demo`: one CSV through the whole local stack, then everything stopped again.

The demo runs its own stack in `.localdev/demo-<timestamp>` so it never touches a `make up` stack,
shares the built model in `.localdev/models`, and always stops what it started (also on Ctrl-C).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from localdev.procs import REPO_ROOT
from localdev.stack import Stack, StackError, StackOptions, down, function_key, interrupt_on_sigterm, quiet_signals, up
from localdev.stack_procs import is_running

DEMO_CSV = REPO_ROOT / "localdev" / "demo" / "diamonds.csv"
DEMO_BLOB = "demo/diamonds.csv"
TERMINAL = {"Completed", "Rejected", "Failed", "Canceled", "TimedOut"}
PREVIEW_ROWS = 5


class DemoFailed(Exception):
    """The round trip did not complete; the message says where it stopped."""


@dataclass
class Clock:
    started: float

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.started:6.1f}s"


def run_demo(base_dir: Path, timeout: float = 180.0) -> int:
    clock = Clock(time.monotonic())
    interrupt_on_sigterm()
    directory = base_dir / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    options = StackOptions(directory=directory, models_dir=base_dir / "models")
    stack: Stack | None = None
    ok = False
    try:
        print(f"[{clock.elapsed()}] building the demo model (cached in {base_dir / 'models'}) and starting the stack")
        stack = up(options, on_progress=lambda text: print(f"[{clock.elapsed()}] {text}"))
        _print_parts(stack)
        ok = _round_trip(stack, clock, timeout)
    except StackError as exc:
        print(f"\nDEMO FAILED: the stack did not start: {exc}")
    except DemoFailed as exc:
        print(f"\nDEMO FAILED: {exc}")
        if stack is not None:
            _print_diagnosis(stack)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the stack")
    finally:
        with quiet_signals():
            if stack is not None:
                for line in down(directory):
                    print(f"[{clock.elapsed()}] {line}")
        if ok:
            shutil.rmtree(directory, ignore_errors=True)
        elif directory.exists():
            print(f"logs kept in {directory / 'logs'}")
        print(f"total wall time: {time.monotonic() - clock.started:.1f}s ({'OK' if ok else 'FAILED'})")
    return 0 if ok else 1


def _print_parts(stack: Stack) -> None:
    for part in stack.parts:
        print(f"    {part.name:<15} {part.url}")


def _round_trip(stack: Stack, clock: Clock, timeout: float) -> bool:
    from azure.storage.blob import BlobServiceClient

    env = stack.env
    blobs = BlobServiceClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"])
    data = DEMO_CSV.read_bytes()
    blobs.get_blob_client(env["INPUT_CONTAINER"], DEMO_BLOB).upload_blob(data, overwrite=True)
    rows = data.count(b"\n") - 1
    print(f"[{clock.elapsed()}] uploaded {DEMO_CSV.name} ({rows} rows) as {env['INPUT_CONTAINER']}/{DEMO_BLOB}")
    job = _follow_job(stack, clock, timeout)
    if job["state"] != "Completed":
        raise DemoFailed(f"the job ended {job['state']}: {json.dumps(job.get('error'))}")
    event = _completed_event(Path(env["EVENTS_LOG"]), job["jobId"])
    print(f"\n[{clock.elapsed()}] DropScore.JobCompleted from {env['EVENTS_LOG']}:")
    print(json.dumps(event, indent=2))
    if event["data"].get("state") != "Completed" or not event["data"].get("output", {}).get("name"):
        raise DemoFailed("the DropScore.JobCompleted event above does not describe the predictions (app bug)")
    output = job["output"]
    text = blobs.get_blob_client(output["container"], output["name"]).download_blob().readall().decode()
    lines = text.splitlines()
    print(f"\n[{clock.elapsed()}] {output['container']}/{output['name']} ({len(lines) - 1} rows), first rows:")
    print("\n".join(lines[: PREVIEW_ROWS + 1]))
    print()
    return True


def _follow_job(stack: Stack, clock: Clock, timeout: float) -> dict[str, Any]:
    """Poll the app's HTTP API and print every state change until the job is finalized."""
    url = f"{stack.env['FUNCTIONS_URL']}/api/jobs"
    headers = {"x-functions-key": function_key(stack.paths)}
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        _check_parts_alive(stack)
        response = requests.get(url, params={"prefix": DEMO_BLOB, "limit": "10"}, headers=headers, timeout=10)
        response.raise_for_status()
        jobs = [j for j in response.json()["jobs"] if j["input"]["name"] == DEMO_BLOB]
        if jobs:
            job = jobs[0]
            seen = f"{job['state']} (Azure ML: {job['aml']['status']})" if job["aml"]["status"] else job["state"]
            if seen != last:
                print(f"[{clock.elapsed()}] job {job['jobId'][:12]}… {seen}")
                last = seen
            if job["state"] in TERMINAL and job["finalized"]:
                return dict(job)
        time.sleep(0.3)
    raise DemoFailed(
        f"timed out after {timeout:.0f}s waiting for the job "
        f"({'last state ' + last if last else 'the blob trigger never recorded it'})"
    )


def _check_parts_alive(stack: Stack) -> None:
    dead = [p for p in stack.parts if not is_running(p.pid, p.started)]
    if dead:
        raise DemoFailed(", ".join(f"{p.name} exited (log: {p.log})" for p in dead))


def _completed_event(events_log: Path, job_id: str) -> dict[str, Any]:
    from localdev.eventgrid.eventlog import read_records

    for record in read_records(events_log):
        event = record.get("event", {})
        if event.get("type") == "DropScore.JobCompleted" and event.get("data", {}).get("jobId") == job_id:
            return dict(event)
    raise DemoFailed(f"the job completed but {events_log} has no DropScore.JobCompleted for it")


def _print_diagnosis(stack: Stack) -> None:
    for part in stack.parts:
        state = "running" if is_running(part.pid, part.started) else "NOT RUNNING"
        print(f"\n--- {part.name} ({state}), last lines of {part.log}:")
        try:
            print("\n".join(Path(part.log).read_text(errors="replace").splitlines()[-15:]))
        except OSError as exc:
            print(f"(cannot read: {exc})")
