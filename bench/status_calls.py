"""Azure ML run events: status calls per job, and how soon a job completes after Azure ML finishes it.

Run: `.venv/bin/python bench/status_calls.py [--files 50]`. Two stacks of its own, one after the other, the
same 50 small files dropped into each, the same emulator job time and a poll tick every 20 s:

  events on   the emulator publishes its run events to the stack's workspace topic, subscribed to the app's
              `aml_run_events` (AML_RUN_EVENTS=on): the poller only backstops (every 300 s)
  events off  the baseline: the poll tick finds every end

Per job, from the emulator's own counters (`GET /_emulator/stats`: status calls by job) and its job records
(last change = when it finished), and the app's JobCompleted event (data.timings.finishedAt = when the app
recorded the end): status calls, and notice = app recorded the end - emulator finished.
Goals with events: <= 1.2 status calls per job; every job's notice <= 5 s (one poll interval without).
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

from stack_runs import drop, emulator_jobs, emulator_stats, inputs, progress, stamp, wait_for_completions  # noqa: E402

from localdev.stack import StackOptions, down, up  # noqa: E402

POLL_SECONDS = 20
CALLS_GOAL = 1.2
NOTICE_GOAL = 5.0


def run(files: dict[str, bytes], *, events: bool, job_seconds: float, timeout: float) -> dict[str, Any] | None:
    directory = Path(tempfile.mkdtemp(prefix=f"bench-status-{'events' if events else 'poll'}-"))
    settings = {"POLL_SCHEDULE": f"*/{POLL_SECONDS} * * * * *"}
    options = StackOptions(directory=directory, job_seconds=job_seconds, app_settings=settings, aml_events=events)
    stack = up(options, on_progress=progress)
    try:
        progress(f"events {'on' if events else 'off'}: dropping {len(files)} files")
        drop(stack, files)
        completed = wait_for_completions(stack, len(files), timeout=timeout)
        if completed is None:
            return None
        jobs, stats = emulator_jobs(stack), emulator_stats(stack)
        calls, notices = [], []
        for event in completed.values():
            name = event["data"]["aml"]["jobName"]
            calls.append(stats["statusCallsByJob"].get(name, 0))
            finished = stamp(jobs[name]["systemData"]["lastModifiedAt"])
            notices.append(stamp(event["data"]["timings"]["finishedAt"]) - finished)
        return {"calls": calls, "notices": notices}
    finally:
        down(directory)
        shutil.rmtree(directory, ignore_errors=True)


def describe(label: str, result: dict[str, Any]) -> None:
    calls, notices = result["calls"], result["notices"]
    print(
        f"{label:<11} status calls per job: mean {statistics.mean(calls):.2f}, max {max(calls)}; "
        f"notice: median {statistics.median(notices):.2f} s, max {max(notices):.2f} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--job-seconds", type=float, default=3.0, help="the emulator's fixed job time")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    files = inputs(args.files, 20, folder="status")
    started = time.monotonic()
    with_events = run(files, events=True, job_seconds=args.job_seconds, timeout=args.timeout)
    baseline = run(files, events=False, job_seconds=args.job_seconds, timeout=args.timeout)
    if with_events is None or baseline is None:
        return 1
    print()
    describe("events on", with_events)
    describe("events off", baseline)
    calls = statistics.mean(with_events["calls"])
    notice, baseline_notice = max(with_events["notices"]), max(baseline["notices"])
    calls_ok, notice_ok = calls <= CALLS_GOAL, notice <= NOTICE_GOAL
    print(f"status calls per job with events: {calls:.2f} (goal <= {CALLS_GOAL}) {'PASS' if calls_ok else 'FAIL'}")
    print(
        f"slowest notice with events: {notice:.2f} s (goal <= {NOTICE_GOAL:g} s) vs {baseline_notice:.2f} s on the "
        f"{POLL_SECONDS} s poll tick alone: ratio {notice / baseline_notice:.2f} {'PASS' if notice_ok else 'FAIL'}"
    )
    print(f"({time.monotonic() - started:.0f} s in all)")
    return 0 if calls_ok and notice_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
