"""Sharding: a >= 200 MB CSV split into parts and scored on 4 workers at once, vs the same file scored whole.

Run: `.venv/bin/python bench/shard.py [--mb 200] [--workers 4] [--row-cost-us 20] [--part-mb N] [--runs 3]`.
Starts its own Azurite (files on tmpfs where there is one) and batch endpoint emulator (`--workers 4`, the
demo MLflow model deployed with instance_count = workers, a fixed cost per row), uploads the demo's rows
repeated to `--mb` MB, and measures in one run, with the app's adapters (`runtime.build_deps`):
- the split: `shared.usecases.shard.parts_for` (SHARD_PART_MB = `--part-mb`, by default the input's MiB /
  workers rounded up: a part per worker) vs a streamed copy of the same blob, `blobs.write(..., blobs.chunks(
  ...))`; alternating, best of `--runs`, each in a fresh interpreter (its own peak RSS, VmHWM).
  Goals: split throughput >= 0.7 x the copy's; peak RSS <= 150 MB.
- scoring: the app's invoke (`submit_intent`, then `_post`'s request) of the whole file (UriFile) and of the
  parts folder (UriFolder, miniBatchSize 1), each from the invoke to the poll (every 0.25 s) that sees
  Completed. Goal: unsharded / sharded >= 0.7 x workers (2.8 for 4). On 2 cores, 4 workers give 4x only when
  the row cost (a sleep) dominates the CPU: the printout splits each job into sleep, CPU and waiting for a
  core (the emulator's mini-batch trace) and the rest (download, merge, upload, polls), and the best
  speed-up those figures allow.
- the app's join of the sharded predictions (`complete._write_joined`): printed, not a goal.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402
from azure.storage.blob import BlobServiceClient  # noqa: E402

from localdev.azurite import start_azurite  # noqa: E402
from localdev.batch_endpoint.launcher import start_batch_endpoint  # noqa: E402
from shared.config import Settings  # noqa: E402
from shared.core.submission import Parts, submit_intent  # noqa: E402
from shared.models import InvokeRequest, Job, JobState  # noqa: E402
from shared.runtime import build_deps  # noqa: E402
from shared.usecases.deps import Deps  # noqa: E402
from shared.usecases.shard import parts_for  # noqa: E402

TOKEN = "bench-token"
INPUTS, INPUT_NAME = "incoming", "bench/big.csv"
DATASTORES = {"workspaceblobstore": "azureml-blobstore", "inputs": INPUTS, "dropscore_outputs": "aml-outputs"}
DEMO_CSV = REPO / "localdev" / "demo" / "diamonds.csv"
MIB = 1024 * 1024
SPLIT_GOAL, RSS_GOAL_MB, SPEEDUP_SHARE = 0.7, 150, 0.7
SHARED_MEMORY = Path("/dev/shm")
VERDICT = {True: "PASS", False: "FAIL"}


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def app_env(connection: str, scoring_uri: str, part_mb: int) -> dict[str, str]:
    """The app's settings for the local stack: Azurite, the emulator, sharding above 64 MiB."""
    return {
        "AzureWebJobsStorage": connection,
        "BATCH_ENDPOINT_URI": scoring_uri,
        "AML_LOCAL_TOKEN": TOKEN,
        "AML_INPUT_DATASTORE": "inputs",
        "EVENTGRID_TOPIC_ENDPOINT": "http://127.0.0.1:1/api/events",  # never called here
        "POLL_SCHEDULE": "0 */1 * * * *",
        "SHARD_THRESHOLD_MB": "64",
        "SHARD_PART_MB": str(part_mb),
    }


def input_job(deps: Deps, job_id: str) -> Job:
    """The ledger row intake would have made for the uploaded input (only what the split and submit read)."""
    info = deps.blobs.properties(INPUTS, INPUT_NAME)
    assert info is not None, "the input is missing"
    now = datetime.now(UTC)
    return Job(
        job_id=job_id,
        state=JobState.RECEIVED,
        account=deps.blobs.account_name,
        container=INPUTS,
        name=INPUT_NAME,
        blob_etag=info.etag,
        size=info.size,
        input_url=deps.blobs.url(INPUTS, INPUT_NAME),
        created_at=now,
        updated_at=now,
    )


def new_job_id() -> str:
    return hashlib.sha1(uuid.uuid4().bytes).hexdigest()  # a 40-hex id like the app's job keys


def child(mode: str, job_id: str) -> None:
    """One split or copy with the app's adapters; prints seconds, RSS before and peak, and the parts."""
    deps = build_deps(Settings.from_env(os.environ))
    job = input_job(deps, job_id)
    rss_before = _status_mb("VmRSS")
    result: dict[str, Any] = {}
    started, cpu = time.perf_counter(), time.process_time()
    if mode == "split":
        parts = parts_for(deps, job)
        assert parts is not None, "the input was not sharded: is it above SHARD_THRESHOLD_MB?"
        result = {"parts": parts.count, "folder": parts.folder, "job_id": job_id}
    else:
        target = f"bench-copy/{job_id}.csv"
        chunks = deps.blobs.chunks(INPUTS, INPUT_NAME, etag=job.blob_etag)
        deps.blobs.write(deps.settings.aml_output_container, target, chunks, content_type="text/csv")
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over an exec, so it would start at the parent's size.
    peak = _status_mb("VmHWM")
    if mode == "copy":
        deps.blobs.delete(deps.settings.aml_output_container, target)  # Azurite's store stays the same size
    print(json.dumps({**result, "seconds": seconds, "cpu": cpu, "rss_before_mb": rss_before, "rss_mb": peak}))


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_child(mode: str, env: dict[str, str]) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--child", mode, "--job-id", new_job_id()]
    done = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def split_and_copy(env: dict[str, str], runs: int, service: BlobServiceClient) -> dict[str, list[dict[str, Any]]]:
    """Alternating; every split but the last is removed, the last one's parts are scored."""
    results: dict[str, list[dict[str, Any]]] = {"split": [], "copy": []}
    for run in range(runs):
        for mode in ("split", "copy"):
            result = run_child(mode, env)
            progress(f"run {run + 1} {mode}: {result['seconds']:.2f} s, peak RSS {result['rss_mb']:.0f} MB")
            results[mode].append(result)
    container = service.get_container_client(DATASTORES["dropscore_outputs"])
    for earlier in results["split"][:-1]:
        for blob in container.list_blob_names(name_starts_with=earlier["folder"]):
            container.delete_blob(blob)
    return results


def submit_and_wait(deps: Deps, job: Job, parts: Parts | None) -> tuple[float, Job]:
    """As intake's _post: the intent, then the invoke; then poll as the poller does until Completed."""
    intent = submit_intent(job, deps.submit_plan, datetime.now(UTC), new_attempt=True, parts=parts).job
    request = InvokeRequest(
        job_name=intent.aml_job_name,
        input_uri=intent.input_uri,
        output_uri=intent.output_uri,
        repeatability_id=uuid.uuid4().hex,
        deployment=intent.deployment or None,
        input_type="UriFolder" if intent.parts else "UriFile",
        mini_batch_size=1 if intent.parts else None,
    )
    started = time.perf_counter()
    remote = deps.scoring.invoke(request)
    status = ""
    while True:
        remote = deps.scoring.get_job(remote.name)
        if remote.status.value != status:
            status = remote.status.value
            progress(f"  {remote.name}: {status}")
        if status in {"Completed", "Failed", "Canceled"}:
            break
        time.sleep(0.25)
    seconds = time.perf_counter() - started
    if status != "Completed":
        raise SystemExit(f"job {remote.name} ended {status}: {remote.error_message}")
    return seconds, intent


def breakdown(seconds: float, base: str, name: str, row_cost_us: float) -> dict[str, float]:
    """A job's time: its mini-batches (the longest one's row-cost sleep, CPU, other time), the
    CPU of all of them, and the rest (download, merge, upload, polls)."""
    answer = requests.get(f"{base}/_emulator/jobs/{name}/minibatches", timeout=30)
    answer.raise_for_status()
    trace: list[dict[str, Any]] = answer.json()["value"]
    longest = max(trace, key=lambda entry: entry["finished"] - entry["started"])
    wall = longest["finished"] - longest["started"]
    sleep = longest["rows"] * row_cost_us / 1e6
    span = max(entry["finished"] for entry in trace) - min(entry["started"] for entry in trace)
    figures = {"total": seconds, "span": span, "rest": seconds - span, "batches": len(trace), "wall": wall}
    figures.update(sleep=sleep, cpu=longest["cpu"], wait=wall - sleep - longest["cpu"])
    figures.update(rows=sum(entry["rows"] for entry in trace), cpu_sum=sum(entry["cpu"] for entry in trace))
    return figures


def join_sharded(deps: Deps, intent: Job) -> tuple[float, int]:
    """complete_job's join (the parts' predictions mapped back to the input's rows), timed."""
    from shared.usecases.complete import _write_joined

    handler = logging.StreamHandler(sys.stdout)  # the app's own word on the join's path (merge or index)
    handler.setFormatter(logging.Formatter("[%(asctime)s] app: %(message)s", "%H:%M:%S"))
    logging.getLogger("dropscore").addHandler(handler)
    logging.getLogger("dropscore").setLevel(logging.INFO)
    target = f"bench/{intent.job_id}.joined.csv"
    started = time.perf_counter()
    stats = _write_joined(deps, intent, target=target)
    seconds = time.perf_counter() - started
    deps.blobs.delete(deps.settings.output_container, target)
    return seconds, stats.rows_out


def upload_input(service: BlobServiceClient, size: int) -> tuple[int, int]:
    """The demo's rows repeated to at least `size` bytes; returns (bytes, rows)."""
    header, *lines = DEMO_CSV.read_bytes().splitlines(keepends=True)
    block = b"".join(lines) * 320  # about 4 MB
    blocks = math.ceil((size - len(header)) / len(block))
    container = service.get_container_client(INPUTS)
    container.upload_blob(INPUT_NAME, iter([header] + [block] * blocks), max_concurrency=4)
    return len(header) + blocks * len(block), blocks * 320 * len(lines)


def deployment_for(model_dir: Path, workers: int, work: Path) -> Path:
    """The demo model deployed with `workers` instances (1 process each) and room for a long mini-batch."""
    folder = work / "diamonds-deployment"
    shutil.copytree(model_dir, folder)
    settings = {"instance_count": workers, "max_concurrency_per_instance": 1, "timeout": 3600}
    (folder / "deployment.json").write_text(json.dumps(settings))
    return folder


def wait_warm(base: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = requests.get(f"{base}/_emulator/health", timeout=10).json()["workers"]
        if workers["warm"] >= workers["size"]:
            return
        time.sleep(0.2)
    raise SystemExit("the emulator's workers did not warm up")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="input size in MB (10^6 bytes)")
    parser.add_argument("--workers", type=int, default=4, help="emulator workers = the deployment's instances")
    parser.add_argument("--row-cost-us", type=float, default=20.0, help="the emulator's fixed cost per row")
    parser.add_argument("--part-mb", type=int, default=0, help="SHARD_PART_MB (default: MiB / workers, rounded up)")
    parser.add_argument("--runs", type=int, default=3, help="split and copy runs, alternating (best is kept)")
    parser.add_argument("--child", choices=("split", "copy"), help=argparse.SUPPRESS)
    parser.add_argument("--job-id", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.job_id)
        return 0
    load = os.getloadavg()[0]
    progress("building the demo model")
    from localdev.demo.model import build  # here: the split's interpreter must not load scikit-learn

    model_dir, _ = build(REPO / ".localdev" / "bench-demo")
    shm = SHARED_MEMORY if SHARED_MEMORY.is_dir() else None
    with tempfile.TemporaryDirectory(prefix="bench-shard-", dir=shm) as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        progress(f"starting Azurite (files in {tmp}) and the emulator ({args.workers} workers)")
        azurite = start_azurite(work / "azurite.log", data_dir=work / "azurite")
        stack.callback(azurite.stop)
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        for container in DATASTORES.values():
            service.create_container(container)
        endpoint, scoring_uri = start_batch_endpoint(
            connection_string=azurite.connection_string,
            datastores=DATASTORES,
            deployments={"diamonds": deployment_for(model_dir, args.workers, work)},
            token=TOKEN,
            log_path=work / "emulator.log",
            job_seconds=0,
            workers=args.workers,
            row_cost_us=args.row_cost_us,
        )
        stack.callback(endpoint.stop)
        progress(f"uploading a {args.mb} MB input")
        size, rows = upload_input(service, args.mb * 1000 * 1000)
        part_mb = args.part_mb or math.ceil(size / MIB / args.workers)
        progress(f"uploaded {size:,} bytes, {rows:,} rows; split ({part_mb} MiB parts) vs copy")
        env = app_env(azurite.connection_string, scoring_uri, part_mb)
        transfers = split_and_copy(env, args.runs, service)
        os.environ.update(env)
        deps, base = build_deps(Settings.from_env(os.environ)), scoring_uri.rsplit("/jobs", 1)[0]
        wait_warm(base)
        figures, intents = {}, {}
        for label, job_id in (("whole", new_job_id()), ("sharded", transfers["split"][-1]["job_id"])):
            job = input_job(deps, job_id)
            # The last split's parts, found by its manifest (no new split); none for the whole file.
            parts = parts_for(deps, job) if label == "sharded" else None
            progress(f"scoring {label}" + (f" ({parts.count} parts)" if parts else ""))
            seconds, intents[label] = submit_and_wait(deps, job, parts)
            figures[label] = breakdown(seconds, base, intents[label].aml_job_name, args.row_cost_us)
        progress("joining the sharded predictions (complete_job's join)")
        join = join_sharded(deps, intents["sharded"])
    measured = {"size": size, "rows": rows, "transfers": transfers, "figures": figures, "load": load, "join": join}
    return report(args, part_mb, measured)


def report(args: argparse.Namespace, part_mb: int, measured: dict[str, Any]) -> int:
    size, rows, transfers, figures = (measured[k] for k in ("size", "rows", "transfers", "figures"))
    split, copy = (min(transfers[mode], key=lambda r: r["seconds"]) for mode in ("split", "copy"))
    peak, mib, cores = max(r["rss_mb"] for r in transfers["split"]), size / MIB, os.cpu_count() or 1
    ratio, whole, sharded = copy["seconds"] / split["seconds"], figures["whole"], figures["sharded"]
    speedup, speedup_goal = whole["total"] / sharded["total"], SPEEDUP_SHARE * args.workers
    # At best: each worker its share of the sleep and CPU (or all CPU over the cores, if longer), the rest as is.
    per_worker = (whole["sleep"] + whole["cpu_sum"]) / args.workers
    best = max(per_worker, whole["cpu_sum"] / min(cores, args.workers)) + whole["rest"]
    ok = {"split": ratio >= SPLIT_GOAL, "rss": peak <= RSS_GOAL_MB, "speed": speedup >= speedup_goal}
    load = f"load average {measured['load']:.1f} before, {os.getloadavg()[0]:.1f} after"
    print(f"\ninput: {size:,} bytes ({mib:.0f} MiB), {rows:,} rows; {split['parts']} parts of {part_mb} MiB")
    print(f"machine: {cores} cores, {load}")
    print(f"split vs copy (best of {args.runs}, alternating, fresh interpreters, the app's adapters):")
    for mode, result in (("copy (baseline)", copy), ("split", split)):
        every = ", ".join(f"{r['seconds']:.2f}" for r in transfers[mode.split()[0]])
        speed = f"{result['seconds']:6.2f} s {mib / result['seconds']:6.1f} MiB/s, CPU {result['cpu']:.2f} s"
        print(f"  {mode + ':':16s} {speed}  (runs: {every} s)")
    print(f"  ratio split/copy throughput: {ratio:.2f} (goal >= {SPLIT_GOAL})  {VERDICT[ok['split']]}")
    before, copy_peak = split["rss_before_mb"], max(r["rss_mb"] for r in transfers["copy"])
    rss = f"{peak:.0f} MB, {before:.0f} MB of it before the split (copy: {copy_peak:.0f} MB)"
    print(f"  split peak RSS: {rss} (goal <= {RSS_GOAL_MB} MB)  {VERDICT[ok['rss']]}")
    print(f"scoring, invoke -> Completed ({args.workers} workers, row cost {args.row_cost_us:g} us):")
    for label, fig in (("unsharded (baseline)", whole), ("sharded", sharded)):
        print(
            f"  {label + ':':21s} {fig['total']:6.1f} s = {fig['batches']:.0f} mini-batch(es) over {fig['span']:.1f} s"
            f" + {fig['rest']:.1f} s outside them (download, merge, upload, polls); the longest mini-batch"
            f" {fig['wall']:.1f} s: row-cost sleep {fig['sleep']:.1f} s, CPU {fig['cpu']:.1f} s, other (I/O, waiting"
            f" for a core) {fig['wait']:.1f} s; CPU of all mini-batches {fig['cpu_sum']:.1f} s"
        )
    goal = f"goal >= {speedup_goal:.1f} = {SPEEDUP_SHARE} x {args.workers} workers"
    print(f"  speed-up: {speedup:.2f} ({goal})  {VERDICT[ok['speed']]}")
    print(f"  at best with this CPU on {min(cores, args.workers)} cores: {whole['total'] / best:.2f}")
    join_seconds, joined = measured["join"]
    print(f"join of the sharded predictions: {join_seconds:.1f} s, {joined:,} rows, {mib / join_seconds:.1f} MiB/s")
    if joined != rows or whole["rows"] != rows or sharded["rows"] != rows:
        print(f"FAIL: rows scored {whole['rows']:.0f} and {sharded['rows']:.0f}, joined {joined}; expected {rows}")
        return 1
    return 0 if all(ok.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
