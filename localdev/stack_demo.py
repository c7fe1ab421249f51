"""`python -m localdev demo [--drift]`: one CSV through the whole local stack, then everything stopped again.

The demo runs its own stack in `.localdev/demo-<timestamp>` so it never touches a `make up` stack,
shares the built model (and its drift reference) in `.localdev/models`, and always stops what it started
(also on Ctrl-C). It prints the file's drift summary against the model's training data; `--drift` then drops
a second file whose stones are heavier and worse cut (localdev/demo/diamonds-shifted.csv) and shows the
drift verdict and the DropScore.DriftDetected event.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from localdev.procs import REPO_ROOT
from localdev.stack import Stack, StackError, StackOptions, down, function_key, interrupt_on_sigterm, quiet_signals, up
from localdev.stack_procs import is_running

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient

DEMO_CSV = REPO_ROOT / "localdev" / "demo" / "diamonds.csv"
DEMO_BLOB = "demo/diamonds.csv"
# `python -m localdev.demo sample --shifted --rows 300 --seed 13 --out localdev/demo/diamonds-shifted.csv`
SHIFTED_CSV = REPO_ROOT / "localdev" / "demo" / "diamonds-shifted.csv"
SHIFTED_BLOB = "demo/diamonds-shifted.csv"
COMPLETED = "DropScore.JobCompleted"
DRIFT_DETECTED = "DropScore.DriftDetected"
TERMINAL = {"Completed", "Rejected", "Failed", "Canceled", "TimedOut"}
PREVIEW_ROWS = 5


class DemoFailed(Exception):
    """The round trip did not complete; the message says where it stopped."""


@dataclass
class Clock:
    started: float

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.started:6.1f}s"


def run_demo(base_dir: Path, timeout: float = 180.0, *, drift: bool = False) -> int:
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
        if drift:
            ok = _drifted_file(stack, clock, timeout)
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
    env = stack.env
    job = _score(stack, clock, timeout, DEMO_CSV, DEMO_BLOB)
    event = _event(Path(env["EVENTS_LOG"]), COMPLETED, job["jobId"])
    print(f"\n[{clock.elapsed()}] {COMPLETED} from {env['EVENTS_LOG']}:")
    print(json.dumps(event, indent=2))
    if event["data"].get("state") != "Completed" or not event["data"].get("output", {}).get("name"):
        raise DemoFailed(f"the {COMPLETED} event above does not describe the predictions (app bug)")
    output = job["output"]
    text = _blobs(stack).get_blob_client(output["container"], output["name"]).download_blob().readall().decode()
    lines = text.splitlines()
    print(f"\n[{clock.elapsed()}] {output['container']}/{output['name']} ({len(lines) - 1} rows), first rows:")
    print("\n".join(lines[: PREVIEW_ROWS + 1]))
    _print_drift(stack, clock, event)
    print()
    return True


def _drifted_file(stack: Stack, clock: Clock, timeout: float) -> bool:
    """The second file, from a shifted population: its verdict is "drift" and DriftDetected announces it."""
    env = stack.env
    if not env.get("DRIFT_REFERENCE"):
        raise DemoFailed("--drift needs a drift reference, and this stack has none (DRIFT_REFERENCE is empty)")
    print(f"[{clock.elapsed()}] now a file from another population: heavier stones, mostly Fair and Good cuts")
    job = _score(stack, clock, timeout, SHIFTED_CSV, SHIFTED_BLOB)
    log = Path(env["EVENTS_LOG"])
    completed = _event(log, COMPLETED, job["jobId"])
    verdict = _print_drift(stack, clock, completed)
    if verdict != "drift":
        raise DemoFailed(f"{SHIFTED_CSV.name} was expected to drift; the verdict was {verdict}")
    detected = _event(log, DRIFT_DETECTED, job["jobId"])
    print(f"\n[{clock.elapsed()}] {DRIFT_DETECTED} from {env['EVENTS_LOG']}:")
    print(json.dumps(detected, indent=2))
    print()
    return True


def _blobs(stack: Stack) -> BlobServiceClient:
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(stack.env["AZURE_STORAGE_CONNECTION_STRING"])


def _score(stack: Stack, clock: Clock, timeout: float, source: Path, blob: str) -> dict[str, Any]:
    """Upload `source` as `blob` in the input container and follow its job to the end (Completed)."""
    env = stack.env
    data = source.read_bytes()
    _blobs(stack).get_blob_client(env["INPUT_CONTAINER"], blob).upload_blob(data, overwrite=True)
    rows = data.count(b"\n") - 1
    print(f"[{clock.elapsed()}] uploaded {source.name} ({rows} rows) as {env['INPUT_CONTAINER']}/{blob}")
    job = _follow_job(stack, clock, timeout, blob)
    if job["state"] != "Completed":
        raise DemoFailed(f"the job ended {job['state']}: {json.dumps(job.get('error'))}")
    return job


def _print_drift(stack: Stack, clock: Clock, completed: dict[str, Any]) -> str:
    """The drift summary of JobCompleted's `data.drift`, with the feature count of the report it names."""
    reference = stack.env.get("DRIFT_REFERENCE", "")
    drift = completed["data"].get("drift")
    if not reference:
        print(f"\n[{clock.elapsed()}] drift: not compared (DRIFT_REFERENCE is empty on this stack)")
        return "off"
    if not drift:
        raise DemoFailed(f"DRIFT_REFERENCE is {reference}, yet {COMPLETED} has no data.drift (app bug)")
    where = drift.get("report") or {}
    raw = _blobs(stack).get_blob_client(where.get("container"), where.get("name"))
    if not raw.exists():
        raise DemoFailed(f"{COMPLETED} names the drift report {where}, which does not exist (app bug)")
    report = json.loads(raw.download_blob().readall())
    compared = len(report.get("features", []))
    print(f"\n[{clock.elapsed()}] drift against {reference} (the model's training data), {COMPLETED} data.drift:")
    threshold, drifted = drift["threshold"], drift["driftedFeatures"]
    side = ">=" if drift["driftedShare"] >= threshold["share"] else "<"
    print(
        f"    verdict: {drift['verdict']} ({len(drifted)} of {compared} features drifted: share"
        f" {drift['driftedShare']:.2f} {side} {threshold['share']}; {drift['rowsProfiled']} rows profiled)"
    )
    print(f"    drifted (PSI >= {threshold['psi']}): {', '.join(drifted) or 'none'}")
    if drift.get("reason"):
        print(f"    reason: {drift['reason']}")
    scores = ", ".join(f"{top['feature']} {top['psi']:.3f} (JS {top['jsDistance']:.3f})" for top in drift["top"])
    if scores:
        print(f"    highest PSI: {scores}")
    if prediction := drift.get("prediction"):
        state = "drifted" if prediction["drifted"] else "not drifted"
        print(f"    prediction: PSI {prediction['psi']:.3f} (JS {prediction['jsDistance']:.3f}), {state}")
    print(f"    report: {where['container']}/{where['name']}")
    return str(drift["verdict"])


def _follow_job(stack: Stack, clock: Clock, timeout: float, blob: str) -> dict[str, Any]:
    """Poll the app's HTTP API and print every state change until the job is finalized."""
    url = f"{stack.env['FUNCTIONS_URL']}/api/jobs"
    headers = {"x-functions-key": function_key(stack.paths)}
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        _check_parts_alive(stack)
        response = requests.get(url, params={"prefix": blob, "limit": "10"}, headers=headers, timeout=10)
        response.raise_for_status()
        jobs = [j for j in response.json()["jobs"] if j["input"]["name"] == blob]
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


def _event(events_log: Path, event_type: str, job_id: str) -> dict[str, Any]:
    """The job's first event of this type the Event Grid emulator accepted (its log, in order)."""
    from localdev.eventgrid.eventlog import read_records

    for record in read_records(events_log):
        event = record.get("event", {})
        if event.get("type") == event_type and event.get("data", {}).get("jobId") == job_id:
            return dict(event)
    raise DemoFailed(f"the job completed but {events_log} has no {event_type} for it")


def _print_diagnosis(stack: Stack) -> None:
    for part in stack.parts:
        state = "running" if is_running(part.pid, part.started) else "NOT RUNNING"
        print(f"\n--- {part.name} ({state}), last lines of {part.log}:")
        try:
            print("\n".join(Path(part.log).read_text(errors="replace").splitlines()[-15:]))
        except OSError as exc:
            print(f"(cannot read: {exc})")
