"""The join at copy speed: predictions joined onto a large input in Azurite vs a streamed copy of that input.

Run: `.venv/bin/python bench/join.py [--mb 300] [--small-mb 100] [--runs 3]`. Starts its own Azurite on free
ports (its files on tmpfs, /dev/shm, where there is one) and uploads, for each size, a synthetic diamonds CSV
with Azure ML-shaped predictions (`row,prediction,file_name`): one file in row order, one in shuffled
mini-batches of 100,000 rows. Then, each run in a fresh interpreter so its peak RSS is its own, alternating
(`--runs` times on the large input):
- copy: the SDK's streamed blob-to-blob copy of the input, `upload_blob(download_blob(max_concurrency=4),
  max_concurrency=4)`: the same bytes down and up, nothing parsed (the baseline);
- join: what complete_job does (shared/usecases/complete.py, `_write_joined`): the input's and the
  predictions' chunks through join_predictions into AzureBlobStore.write (staged blocks, one commit), with
  the app's default JOIN_MEMORY_MB and JOIN_CONCURRENCY;
- out of order: the same with the shuffled predictions: the merge reads ahead, finds a lower row index and
  stops, then the join runs again through a PredictionIndex, as complete_job does.
Prints ratio = copy time / join time on the large input, best run of each (goal >= 0.7), the slowest runs
and the load average beside them (the machine may be shared), and the peak RSS at both sizes (goal <= 150 MB
whatever the size).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from azure.storage.blob import BlobServiceClient  # noqa: E402

from localdev.azurite import start_azurite  # noqa: E402
from shared.adapters.blobs import AzureBlobStore  # noqa: E402
from shared.config import Settings  # noqa: E402
from shared.csvjoin import (  # noqa: E402
    JoinStats,
    Prediction,
    PredictionIndex,
    PredictionsOutOfOrder,
    join_predictions,
    parse_predictions,
)

CONTAINER = "bench"
HEADER = b"carat,cut,color,clarity,depth,table,price,x,y,z\n"
MIB = 1024 * 1024
MINI_BATCH_ROWS = 100_000
ROWS_PER_BLOCK = 100_000
RSS_GOAL_MB = 150
RATIO_GOAL = 0.7
MODES = ("copy", "join", "unordered")
SHARED_MEMORY = Path("/dev/shm")


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def diamond_lines(seed: int) -> list[bytes]:
    pick = random.Random(seed)
    cuts, colors, clarities = ["Fair", "Good", "Very Good", "Premium", "Ideal"], "DEFGHIJ", ["SI2", "VS1", "IF"]
    return [
        b"%.2f,%s,%s,%s,%.1f,%d,%d,%.2f,%.2f,%.2f\n"
        % (
            pick.uniform(0.2, 3),
            pick.choice(cuts).encode(),
            pick.choice(colors).encode(),
            pick.choice(clarities).encode(),
            pick.uniform(55, 70),
            pick.randint(50, 70),
            pick.randint(300, 19000),
            pick.uniform(3, 9),
            pick.uniform(3, 9),
            pick.uniform(2, 6),
        )
        for _ in range(4096)
    ]


def input_rows(size: int) -> int:
    """About `size` bytes of diamonds, in whole blocks of rows."""
    lines = diamond_lines(1)
    average = sum(map(len, lines)) / len(lines)
    return max(1, round(size / average / ROWS_PER_BLOCK)) * ROWS_PER_BLOCK


def input_blocks(rows: int) -> Iterator[bytes]:
    lines, pick = diamond_lines(1), random.Random(2)
    yield HEADER
    for _ in range(rows // ROWS_PER_BLOCK):
        yield b"".join(pick.choices(lines, k=ROWS_PER_BLOCK))


def prediction_lines(rows: range) -> bytes:
    return b"".join(b"%d,%d.%02d,input.csv\n" % (row, 300 + row % 18_000, row % 100) for row in rows)


def predictions_in_order(rows: int) -> Iterator[bytes]:
    for start in range(0, rows, MINI_BATCH_ROWS):
        yield prediction_lines(range(start, min(rows, start + MINI_BATCH_ROWS)))


def predictions_shuffled(rows: int) -> Iterator[bytes]:
    """Mini-batches in the order they finished, as Azure ML appends them: each in order, the file not."""
    starts = list(range(0, rows, MINI_BATCH_ROWS))
    random.Random(3).shuffle(starts)
    for start in starts:
        yield prediction_lines(range(start, min(rows, start + MINI_BATCH_ROWS)))


def upload(service: BlobServiceClient, size_mb: int) -> tuple[str, int]:
    """The input, its predictions in order and shuffled; returns the input's name and its row count."""
    container = service.get_container_client(CONTAINER)
    name, rows = f"input-{size_mb}mb.csv", input_rows(size_mb * 1000 * 1000)
    container.upload_blob(name, input_blocks(rows), max_concurrency=4)
    container.upload_blob(f"{name}.predictions.csv", predictions_in_order(rows), max_concurrency=4)
    container.upload_blob(f"{name}.shuffled.csv", predictions_shuffled(rows), max_concurrency=4)
    return name, rows


def run_child(mode: str, connection: str, name: str) -> dict[str, float]:
    env = {**os.environ, "BENCH_CONNECTION": connection}
    argv = [sys.executable, __file__, "--child", mode, "--name", name]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def child(mode: str, name: str) -> None:
    """One copy or join in this fresh interpreter; prints its time, peak RSS and row counts as JSON."""
    connection = os.environ["BENCH_CONNECTION"]
    service = BlobServiceClient.from_connection_string(connection)
    target = f"{name}.{mode}.out"
    stats = JoinStats()
    started = time.perf_counter()
    if mode == "copy":
        source = service.get_blob_client(CONTAINER, name).download_blob(max_concurrency=4)
        copy = service.get_blob_client(CONTAINER, target)
        copy.upload_blob(source, overwrite=True, max_concurrency=4)  # type: ignore[arg-type]  # any .read() will do
    else:
        blobs = AzureBlobStore.from_settings(Settings.from_env({"AzureWebJobsStorage": connection, **_REQUIRED}))
        predictions = f"{name}.predictions.csv" if mode == "join" else f"{name}.shuffled.csv"
        stats = join_as_completion_does(blobs, name, predictions, target)
    seconds = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    service.get_blob_client(CONTAINER, target).delete_blob()  # Azurite's store stays the same size run after run
    print(json.dumps({"seconds": seconds, "rss_mb": rss_mb, "rows_in": stats.rows_in, "rows_out": stats.rows_out}))


def join_as_completion_does(blobs: AzureBlobStore, name: str, predictions: str, target: str) -> JoinStats:
    """shared/usecases/complete.py, _write_joined: the merge join, and the index join when the merge meets
    predictions out of row order (after the `except`, so the failed merge's downloads are freed)."""

    def join_into_target(lookup: Iterable[Prediction] | PredictionIndex) -> JoinStats:
        stats = JoinStats()
        joined = join_predictions(blobs.chunks(CONTAINER, name), lookup, stats)
        blobs.write(CONTAINER, target, joined, content_type="text/csv")
        return stats

    try:
        return join_into_target(parse_predictions(blobs.chunks(CONTAINER, predictions)))
    except PredictionsOutOfOrder:
        pass
    index = PredictionIndex(parse_predictions(blobs.chunks(CONTAINER, predictions)))
    try:
        return join_into_target(index)
    finally:
        index.close()


# Settings.from_env wants these; the join reads none of them.
_REQUIRED = {
    "BATCH_ENDPOINT_URI": "http://127.0.0.1:1/jobs",
    "EVENTGRID_TOPIC_ENDPOINT": "http://127.0.0.1:1/api/events",
    "POLL_SCHEDULE": "0 */1 * * * *",
}


def measure(connection: str, name: str, rows: int, runs: int) -> dict[str, list[dict[str, float]]]:
    """Each mode `runs` times, alternating, each in a fresh interpreter."""
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for run in range(runs):
        for mode in MODES:
            result = run_child(mode, connection, name)
            if mode != "copy" and result["rows_out"] != rows:
                raise SystemExit(f"{mode}: {result['rows_out']} rows joined, expected {rows}")
            progress(f"{name} run {run + 1} {mode}: {result['seconds']:.2f} s, peak RSS {result['rss_mb']:.0f} MB")
            results[mode].append(result)
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=300, help="size of the large input (the ratio is measured on it)")
    parser.add_argument("--small-mb", type=int, default=100, help="size of the small input (peak RSS only)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each mode on the large input, alternating")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.name)
        return 0
    load_before = os.getloadavg()[0]
    results: dict[int, dict[str, list[dict[str, float]]]] = {}
    # Azurite keeps its blobs in files on tmpfs: in its in-memory mode every blob written stays in its
    # JavaScript heap, and on a disk the page cache's writeback throttles it; either way its cost per
    # uploaded byte grows run after run, and the later runs, whichever they are, pay for it.
    with tempfile.TemporaryDirectory(
        prefix="bench-join-", dir=SHARED_MEMORY if SHARED_MEMORY.is_dir() else None
    ) as tmp:
        progress(f"starting Azurite, its files in {tmp}")
        azurite = start_azurite(Path(tmp) / "azurite.log", data_dir=Path(tmp) / "data")
        try:
            service = BlobServiceClient.from_connection_string(azurite.connection_string)
            service.create_container(CONTAINER)
            for size, runs in ((args.small_mb, 1), (args.mb, args.runs)):
                progress(f"uploading a {size} MB input and its predictions")
                name, rows = upload(service, size)
                results[size] = measure(azurite.connection_string, name, rows, runs)
        finally:
            azurite.stop()
    large, rows = results[args.mb], input_rows(args.mb * 1000 * 1000)
    best = {mode: min(run["seconds"] for run in large[mode]) for mode in MODES}
    spread = {mode: max(run["seconds"] for run in large[mode]) for mode in MODES}
    mib = args.mb * 1000 * 1000 / MIB
    print(f"input:                   {args.mb} MB, {rows:,} rows; best (slowest) of {args.runs} alternating runs")
    print(f"load average:            {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (2 cores)")
    for mode, label in (
        ("copy", "streamed copy (SDK)"),
        ("join", "join, rows in order"),
        ("unordered", "join, out of order"),
    ):
        print(f"{label + ':':24s} {best[mode]:6.2f} s ({spread[mode]:6.2f} s)  {mib / best[mode]:5.1f} MiB/s")
    print(f"ratio copy/join:         {best['copy'] / best['join']:.2f} (goal >= {RATIO_GOAL})")
    print(f"ratio copy/out of order: {best['copy'] / best['unordered']:.2f}")
    for size, modes in sorted(results.items()):
        peaks = {mode: max(run["rss_mb"] for run in modes[mode]) for mode in MODES}
        print(
            f"peak RSS, {size:4d} MB input: join {peaks['join']:.0f} MB, out of order {peaks['unordered']:.0f} MB, "
            f"copy {peaks['copy']:.0f} MB (goal <= {RSS_GOAL_MB} MB whatever the size)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
