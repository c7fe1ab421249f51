"""Cold-start cost: wall time of `import function_app` against importing the runtime SDKs alone.

Each sample is a fresh interpreter (what a cold worker pays). The two commands alternate so
machine noise hits both alike; the ratio of medians is the figure (goal <= 1.15).
Run: .venv/bin/python bench/import_time.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL = 1.15
SDKS = (
    "import azure.functions, azure.identity, azure.storage.blob, azure.storage.queue, "
    "azure.data.tables, azure.eventgrid, requests"
)
APP = "import function_app"


def sample(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={"PYTHONDONTWRITEBYTECODE": "0"})
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    baseline_empty = statistics.median(sample("pass") for _ in range(5))
    sample(SDKS)
    sample(APP)  # warm the bytecode caches for both
    sdk_times, app_times = [], []
    for run in range(1, args.runs + 1):
        sdk_times.append(sample(SDKS))
        app_times.append(sample(APP))
        print(f"run {run}/{args.runs}: sdks {sdk_times[-1] * 1000:.0f} ms, function_app {app_times[-1] * 1000:.0f} ms")
    sdk, app = statistics.median(sdk_times), statistics.median(app_times)
    ratio = (app - baseline_empty) / (sdk - baseline_empty)
    print(f"bare interpreter: {baseline_empty * 1000:.0f} ms")
    print(f"import SDKs alone: {sdk * 1000:.0f} ms (median of {args.runs})")
    print(f"import function_app: {app * 1000:.0f} ms (median of {args.runs})")
    print(f"ratio function_app / SDKs (interpreter start subtracted): {ratio:.2f} (goal <= {GOAL})")
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
