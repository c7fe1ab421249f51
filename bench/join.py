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
  stops, then the join runs again through a PredictionIndex, as complete_job does;
- drift: the in-order join with the drift profiler watching it, as complete_job runs it with a DRIFT_REFERENCE
  (shared/usecases/drift.py): a reference profile of these synthetic columns (built before the runs from 100,000
  rows of the same generator, with a prediction column), read and validated, a Profiler sampling one block in
  `sample_every(size, sample_mb=DRIFT_SAMPLE_MB)` (the app's default 8 MB: 1 in 36 at 300 MB), then the
  comparison and the report's JSON; the one-time imports a worker pays on its first drift job (numpy,
  jsonschema, shared.drift) are timed apart, not in the run;
- drift, every block: the same with every block profiled (sample_every=1): what profiling the whole file costs.
Prints ratio = copy time / join time on the large input, best run of each (goal >= 0.7), the slowest runs
and the load average beside them (the machine may be shared), the drift cost = join with drift / join - 1
(best runs; goal <= 15%) and with every block profiled (for information), the CPU time of the joining process
(less sensitive to other load than the wall time), and the peak RSS at both sizes (goal <= 150 MB whatever the
size).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from azure.storage.blob import BlobServiceClient  # noqa: E402

from localdev.azurite import start_azurite  # noqa: E402
from shared.adapters.blobs import AzureBlobStore  # noqa: E402
from shared.config import Settings  # noqa: E402
from shared.csvjoin import (  # noqa: E402
    JoinObserver,
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
DRIFT_COST_GOAL = 0.15
MODES = ("copy", "join", "drift", "drift_all", "unordered")
REFERENCE_ROWS = 100_000
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


def write_reference(path: Path) -> None:
    """The drift reference of these synthetic columns: 100,000 rows of the same generator and their predictions,
    through `python -m shared.profile build --prediction-column prediction`. In a child process, like every
    run: a child inherits this process's peak RSS (Linux keeps ru_maxrss across exec), so this one stays small."""
    training = path.with_name("training.csv")
    argv = [sys.executable, __file__, "--training-csv", str(training)]
    subprocess.run(argv, capture_output=True, check=True)
    argv = [sys.executable, "-m", "shared.profile", "build", str(training), "--out", str(path)]
    subprocess.run([*argv, "--prediction-column", "prediction"], cwd=REPO, capture_output=True, check=True)
    training.unlink()


def write_training_csv(path: Path) -> None:
    rows = next(block for block in input_blocks(REFERENCE_ROWS) if block != HEADER).splitlines()
    values = [line.split(b",")[1] for line in prediction_lines(range(len(rows))).splitlines()]
    header = HEADER.rstrip(b"\n") + b",prediction"
    lines = [row + b"," + value for row, value in zip(rows, values, strict=True)]
    path.write_bytes(b"\n".join([header, *lines]) + b"\n")


def upload(service: BlobServiceClient, size_mb: int) -> tuple[str, int]:
    """The input, its predictions in order and shuffled; returns the input's name and its row count."""
    container = service.get_container_client(CONTAINER)
    name, rows = f"input-{size_mb}mb.csv", input_rows(size_mb * 1000 * 1000)
    container.upload_blob(name, input_blocks(rows), max_concurrency=4)
    container.upload_blob(f"{name}.predictions.csv", predictions_in_order(rows), max_concurrency=4)
    container.upload_blob(f"{name}.shuffled.csv", predictions_shuffled(rows), max_concurrency=4)
    return name, rows


def run_child(mode: str, connection: str, name: str, reference: Path) -> dict[str, float]:
    env = {**os.environ, "BENCH_CONNECTION": connection, "BENCH_REFERENCE": str(reference)}
    argv = [sys.executable, __file__, "--child", mode, "--name", name]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def child(mode: str, name: str) -> None:
    """One copy or join in this fresh interpreter; prints its time, peak RSS and row counts (and what drift
    found) as JSON."""
    connection = os.environ["BENCH_CONNECTION"]
    service = BlobServiceClient.from_connection_string(connection)
    target = f"{name}.{mode}.out"
    stats = JoinStats()
    drift: dict[str, float] = {}
    drift_run = prepare_drift(service, name, every_block=mode == "drift_all") if mode.startswith("drift") else None
    started, cpu_started = time.perf_counter(), time.process_time()
    if drift_run is not None:
        blobs = AzureBlobStore.from_settings(Settings.from_env({"AzureWebJobsStorage": connection, **_REQUIRED}))
        stats, drift = drift_run(blobs, target)
    elif mode == "copy":
        source = service.get_blob_client(CONTAINER, name).download_blob(max_concurrency=4)
        copy = service.get_blob_client(CONTAINER, target)
        copy.upload_blob(source, overwrite=True, max_concurrency=4)  # type: ignore[arg-type]  # any .read() will do
    else:
        blobs = AzureBlobStore.from_settings(Settings.from_env({"AzureWebJobsStorage": connection, **_REQUIRED}))
        predictions = f"{name}.predictions.csv" if mode == "join" else f"{name}.shuffled.csv"
        stats = join_as_completion_does(blobs, name, predictions, target)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    service.get_blob_client(CONTAINER, target).delete_blob()  # Azurite's store stays the same size run after run
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_s": cpu,
                "rss_mb": rss_mb,
                "rows_in": stats.rows_in,
                "rows_out": stats.rows_out,
                **drift,
            }
        )
    )


DriftRun = Callable[[AzureBlobStore, str], tuple[JoinStats, dict[str, float]]]


def prepare_drift(service: BlobServiceClient, name: str, *, every_block: bool) -> DriftRun:
    """The imports a worker pays once (timed apart) and the input's size (the ledger has it); the returned run
    is what one completion adds: the reference read and validated, the profiled join, the comparison, the
    report's JSON."""
    started = time.perf_counter()
    importlib.import_module("jsonschema")  # what profile_from_json imports on a worker's first reference

    from shared.drift.compare import Thresholds, compare
    from shared.drift.profile import profile_from_bytes
    from shared.drift.stream import Profiler, sample_every

    imports = time.perf_counter() - started
    size = service.get_blob_client(CONTAINER, name).get_blob_properties().size
    settings = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true", **_REQUIRED})
    every = 1 if every_block else sample_every(size, sample_mb=settings.drift_sample_mb)
    content = Path(os.environ["BENCH_REFERENCE"]).read_bytes()

    def run(blobs: AzureBlobStore, target: str) -> tuple[JoinStats, dict[str, float]]:
        reference = profile_from_bytes(content)
        profilers: list[Profiler] = []

        def fresh() -> Profiler:  # each join afresh, as DriftWatch.fresh does
            profilers.append(Profiler(reference, sample_every=every))
            return profilers[-1]

        stats = join_as_completion_does(blobs, name, f"{name}.predictions.csv", target, observer=fresh)
        report = compare(reference, profilers[-1].result(), thresholds=Thresholds())
        json.dumps(report.to_json())
        drifted = float(len(report.drifted))
        return stats, {
            "imports_s": imports,
            "sample_every": float(every),
            "sample_mb": float(settings.drift_sample_mb),
            "rows_profiled": float(report.rows_profiled),
            "drifted": drifted,
            "no_drift": float(report.verdict == "no_drift"),
        }

    return run


def join_as_completion_does(
    blobs: AzureBlobStore,
    name: str,
    predictions: str,
    target: str,
    *,
    observer: Callable[[], JoinObserver] | None = None,
) -> JoinStats:
    """shared/usecases/complete.py, _write_joined: the merge join, and the index join when the merge meets
    predictions out of row order (after the `except`, so the failed merge's downloads are freed); with a drift
    observer, a fresh one for each join."""

    def join_into_target(lookup: Iterable[Prediction] | PredictionIndex) -> JoinStats:
        stats = JoinStats()
        watching = None if observer is None else observer()
        joined = join_predictions(blobs.chunks(CONTAINER, name), lookup, stats, observer=watching)
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


def measure(connection: str, name: str, rows: int, runs: int, reference: Path) -> dict[str, list[dict[str, float]]]:
    """Each mode `runs` times, alternating, each in a fresh interpreter."""
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for run in range(runs):
        for mode in MODES:
            result = run_child(mode, connection, name, reference)
            if mode != "copy" and result["rows_out"] != rows:
                raise SystemExit(f"{mode}: {result['rows_out']} rows joined, expected {rows}")
            if mode.startswith("drift") and not result["no_drift"]:
                raise SystemExit(f"{mode}: {result['drifted']:.0f} features drifted from their own reference")
            progress(
                f"{name} run {run + 1} {mode}: {result['seconds']:.2f} s ({result['cpu_s']:.2f} s CPU),"
                f" peak RSS {result['rss_mb']:.0f} MB"
            )
            results[mode].append(result)
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=300, help="size of the large input (the ratio is measured on it)")
    parser.add_argument("--small-mb", type=int, default=100, help="size of the small input (peak RSS only)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each mode on the large input, alternating")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--training-csv", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.name)
        return 0
    if args.training_csv:
        write_training_csv(args.training_csv)
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
            reference = Path(tmp) / "reference.json"
            progress(f"building the drift reference ({REFERENCE_ROWS:,} rows of the same columns)")
            write_reference(reference)
            for size, runs in ((args.small_mb, 1), (args.mb, args.runs)):
                progress(f"uploading a {size} MB input and its predictions")
                name, rows = upload(service, size)
                results[size] = measure(azurite.connection_string, name, rows, runs, reference)
        finally:
            azurite.stop()
    large, rows = results[args.mb], input_rows(args.mb * 1000 * 1000)
    best = {mode: min(run["seconds"] for run in large[mode]) for mode in MODES}
    spread = {mode: max(run["seconds"] for run in large[mode]) for mode in MODES}
    mib = args.mb * 1000 * 1000 / MIB
    print(f"input:                   {args.mb} MB, {rows:,} rows; best (slowest) of {args.runs} alternating runs")
    print(f"load average:            {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (2 cores)")
    every = int(large["drift"][0]["sample_every"])
    for mode, label in (
        ("copy", "streamed copy (SDK)"),
        ("join", "join, rows in order"),
        ("drift", f"join + drift (1 in {every})"),
        ("drift_all", "join + drift (all)"),
        ("unordered", "join, out of order"),
    ):
        print(f"{label + ':':24s} {best[mode]:6.2f} s ({spread[mode]:6.2f} s)  {mib / best[mode]:5.1f} MiB/s")
    print(f"ratio copy/join:         {best['copy'] / best['join']:.2f} (goal >= {RATIO_GOAL})")
    print(f"ratio copy/out of order: {best['copy'] / best['unordered']:.2f}")
    sampled, whole = large["drift"][0], large["drift_all"][0]
    print(
        f"drift cost:              {best['drift'] / best['join'] - 1:+.1%} of the join's time (goal <= "
        f"{DRIFT_COST_GOAL:.0%}), {sampled['rows_profiled']:,.0f} of {rows:,} rows profiled (DRIFT_SAMPLE_MB "
        f"{sampled['sample_mb']:.0f})"
    )
    print(
        f"drift cost, every block: {best['drift_all'] / best['join'] - 1:+.1%} of the join's time (information), "
        f"{whole['rows_profiled']:,.0f} rows profiled"
    )
    cpu = {mode: min(run["cpu_s"] for run in large[mode]) for mode in MODES}
    print(
        f"CPU of the process:      join {cpu['join']:.2f} s, with drift {cpu['drift']:.2f} s "
        f"({cpu['drift'] / cpu['join'] - 1:+.1%}), every block {cpu['drift_all']:.2f} s "
        f"({cpu['drift_all'] / cpu['join'] - 1:+.1%}); least of the runs (Azurite's own CPU not counted)"
    )
    imports = min(run["imports_s"] for run in large["drift"] + large["drift_all"])
    print(
        f"drift imports:           {imports:.2f} s once per worker (numpy, jsonschema, shared.drift; not in the runs)"
    )
    for size, modes in sorted(results.items()):
        peaks = {mode: max(run["rss_mb"] for run in modes[mode]) for mode in MODES}
        print(
            f"peak RSS, {size:4d} MB input: join {peaks['join']:.0f} MB, with drift {peaks['drift']:.0f} MB "
            f"({peaks['drift_all']:.0f} MB every block), out of order {peaks['unordered']:.0f} MB, "
            f"copy {peaks['copy']:.0f} MB (goal <= {RSS_GOAL_MB} MB whatever the size)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
