"""MAX_JOBS_IN_FLIGHT: 500 files dropped at once against an endpoint that takes 20 jobs at a time.

Run: `.venv/bin/python bench/admission.py [--files 500] [--cap 20]`. A stack of its own whose batch endpoint
emulator answers 429 (with Retry-After) to any invoke beyond 20 active jobs, as a busy Azure ML endpoint does, and
each job takes 6 s: long enough that the dev host's intake (a few files a second) would have far more than 20 in
flight without the cap.
First the baseline, in the same run: a route with no cap (`uncapped/`, ROUTES maxJobsInFlight 0) gets 60 files
at once, and the emulator counts its 429s. Then the default route, MAX_JOBS_IN_FLIGHT=20, gets the 500.

From the emulator's own counters (`GET /_emulator/stats`: invokes, throttled, the exact peak of active jobs) and
the app's JobCompleted events. Goals: in flight never above the cap, zero 429s, every job ends; the wall time is
printed against the emulator's own span (its first job created to its last job done).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from stack_runs import (  # noqa: E402
    drop,
    emulator_jobs,
    emulator_stats,
    inputs,
    progress,
    reset_emulator_stats,
    stamp,
    wait_for_completions,
)

from localdev.stack import StackOptions, down, up  # noqa: E402

BASELINE_FILES = 60


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--cap", type=int, default=20)
    parser.add_argument("--job-seconds", type=float, default=6.0, help="the emulator's fixed job time")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    routes = [{"name": "uncapped", "prefix": "uncapped/", "endpointUri": "{BATCH_ENDPOINT_URI}", "maxJobsInFlight": 0}]
    settings = {
        "POLL_SCHEDULE": "*/2 * * * * *",
        "MAX_JOBS_IN_FLIGHT": str(args.cap),
        "ROUTES": json.dumps(routes),
    }
    directory = Path(tempfile.mkdtemp(prefix="bench-admission-"))
    options = StackOptions(
        directory=directory, job_seconds=args.job_seconds, app_settings=settings, max_active_jobs=args.cap
    )
    stack = up(options, on_progress=progress)
    passed = False
    try:
        progress(f"baseline: {BASELINE_FILES} files on a route with no cap")
        baseline = inputs(BASELINE_FILES, 10, folder="uncapped")
        drop(stack, baseline)
        if wait_for_completions(stack, BASELINE_FILES, timeout=args.timeout) is None:
            return 1
        before = emulator_stats(stack)
        reset_emulator_stats(stack)
        files = inputs(args.files, 10, folder="capped")
        progress(f"capped: {len(files)} files with MAX_JOBS_IN_FLIGHT={args.cap}")
        started = time.time()
        drop(stack, files)
        events = wait_for_completions(stack, BASELINE_FILES + len(files), timeout=args.timeout)
        if events is None:
            return 1
        stats, jobs = emulator_stats(stack), emulator_jobs(stack)
        ours = [jobs[event["data"]["aml"]["jobName"]] for name, event in events.items() if name.startswith("capped/")]
        created = min(stamp(job["systemData"]["createdAt"]) for job in ours)
        done = max(stamp(job["systemData"]["lastModifiedAt"]) for job in ours)
        finished = max(event["acceptedAt"] for name, event in events.items() if name.startswith("capped/"))
        wall, span = finished - started, done - created
        print()
        print(
            f"baseline, no cap: {BASELINE_FILES} files -> {before['throttled']} answers 429, "
            f"peak {before['maxActiveJobs']} active"
        )
        print(
            f"capped: {len(ours)}/{len(files)} completed, {stats['invokes']} invokes, "
            f"{stats['throttled']} answers 429, peak {stats['maxActiveJobs']} active (goal <= {args.cap})"
        )
        print(f"wall {wall:.1f} s for an emulator span of {span:.1f} s: ratio {wall / span:.2f}")
        passed = len(ours) == len(files) and stats["throttled"] == 0 and stats["maxActiveJobs"] <= args.cap
        print("PASS" if passed else "FAIL")
        return 0 if passed else 1
    finally:
        down(directory)
        if passed:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            print(f"kept the stack's directory and logs for a look: {directory}")


if __name__ == "__main__":
    raise SystemExit(main())
