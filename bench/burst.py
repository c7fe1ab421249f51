"""A burst: 200 CSVs dropped at once into the local stack; where the time goes beyond Azure ML's own.

Run: `.venv/bin/python bench/burst.py [--files 200] [--job-seconds 2] [--rows 20]`. Starts a stack of its own
(`python -m localdev up` machinery: Azurite, the batch endpoint emulator with a fixed job time, the Event
Grid emulator, the dev host running function_app.py) in a temp dir, uploads every file from 16 threads, and
waits until each has its DropScore.JobCompleted event. Then, per job, from the app's own timings (in the
event), the emulator's job records (GET /jobs) and the Event Grid emulator's receive times:

  intake      upload finished -> ledger row (receivedAt)
  submit      receivedAt -> submitted (POST answered)
  remote      the emulator's job: created -> Completed
  notice      emulator Completed -> the poller recorded it (finishedAt)
  completion  finishedAt -> JobCompleted accepted by the topic (predictions joined, input archived)

The baseline is the emulator's own span, its first job created to its last job completed. Goal: total wall
time (first upload to last JobCompleted) <= span + one poll interval + 10 s.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from stack_runs import (  # noqa: E402
    drop,
    emulator_jobs,
    inputs,
    progress,
    stamp,
    wait_for_completions,
)

from localdev.stack import StackOptions, down, up  # noqa: E402

POLL_SECONDS = 2.0
POLL_SCHEDULE = "*/2 * * * * *"  # the stack's default: a poll every 2 s
SLACK_SECONDS = 10.0
STAGES = ("intake", "submit", "remote", "notice", "completion")


def stage_times(
    uploaded: dict[str, float], events: dict[str, dict[str, Any]], jobs: dict[str, dict[str, Any]]
) -> dict[str, list[float]]:
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for name, event in events.items():
        timings, job = event["data"]["timings"], jobs[event["data"]["aml"]["jobName"]]
        created, done = stamp(job["systemData"]["createdAt"]), stamp(job["systemData"]["lastModifiedAt"])
        received, submitted, finished = (stamp(timings[k]) for k in ("receivedAt", "submittedAt", "finishedAt"))
        stages["intake"].append(received - uploaded[name])
        stages["submit"].append(submitted - received)
        stages["remote"].append(done - created)
        stages["notice"].append(finished - done)
        stages["completion"].append(event["acceptedAt"] - finished)
    return stages


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def report(
    started: float, uploaded: dict[str, float], events: dict[str, dict[str, Any]], jobs: dict[str, dict[str, Any]]
) -> bool:
    ours = {event["data"]["aml"]["jobName"] for event in events.values()}
    created = [stamp(jobs[name]["systemData"]["createdAt"]) for name in ours]
    done = [stamp(jobs[name]["systemData"]["lastModifiedAt"]) for name in ours]
    finished = max(event["acceptedAt"] for event in events.values())
    wall, span = finished - started, max(done) - min(created)
    print()
    print(f"{'stage':<12} {'median':>8} {'p95':>8} {'max':>8}   (seconds per job, {len(events)} jobs)")
    for stage, values in stage_times(uploaded, events, jobs).items():
        print(f"{stage:<12} {statistics.median(values):>8.2f} {percentile(values, 0.95):>8.2f} {max(values):>8.2f}")
    print()
    print(f"uploads: {max(uploaded.values()) - started:.1f} s for {len(uploaded)} files")
    print(f"before the emulator's span: {min(created) - started:.1f} s (first upload -> first Azure ML job)")
    print(f"emulator span: {span:.1f} s (first job created -> last job completed)")
    print(f"after the emulator's span: {finished - max(done):.1f} s (last job completed -> last JobCompleted)")
    goal = span + POLL_SECONDS + SLACK_SECONDS
    print(f"total wall: {wall:.1f} s, overhead beyond the emulator's span: {wall - span:.1f} s")
    limits = f"span + poll {POLL_SECONDS:g} s + {SLACK_SECONDS:g} s = {goal:.1f} s"
    print(f"ratio wall / span: {wall / span:.2f}; goal: wall <= {limits}")
    return wall <= goal


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rows", type=int, default=20, help="data rows per file")
    parser.add_argument("--job-seconds", type=float, default=2.0, help="the emulator's fixed job time")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory and logs")
    args = parser.parse_args()
    files = inputs(args.files, args.rows)
    directory = Path(tempfile.mkdtemp(prefix="bench-burst-"))
    options = StackOptions(
        directory=directory, job_seconds=args.job_seconds, app_settings={"POLL_SCHEDULE": POLL_SCHEDULE}
    )
    stack = up(options, on_progress=progress)
    passed = False
    try:
        progress(f"stack up; dropping {len(files)} files")
        started = time.time()
        uploaded = drop(stack, files)
        progress("uploaded; waiting for every JobCompleted")
        events = wait_for_completions(stack, len(files), timeout=args.timeout)
        if events is None:
            return 1
        progress("all completed")
        passed = report(started, uploaded, events, emulator_jobs(stack))
        return 0 if passed else 1
    finally:
        down(directory)
        if passed and not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            print(f"kept the stack's directory and logs for a look: {directory}")


if __name__ == "__main__":
    raise SystemExit(main())
