"""Rows per second through the batch endpoint emulator vs `pyfunc.predict` in one process.

Run: `.venv/bin/python bench/emulator_scoring.py [--rows 1000000] [--files 8]`. Starts its own Azurite and
emulator on free ports, scores the same synthetic diamonds through both, prints the ratio (goal >= 0.7).
The emulator time is wall time from invoke to Completed: download, parse, predict, format, upload.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import mlflow.pyfunc  # noqa: E402
import requests  # noqa: E402
from azure.storage.blob import BlobServiceClient  # noqa: E402

from localdev.azurite import start_azurite  # noqa: E402
from localdev.batch_endpoint.launcher import start_batch_endpoint  # noqa: E402
from localdev.demo.data import scoring_frame  # noqa: E402
from localdev.demo.model import build  # noqa: E402

TOKEN = "bench-token"


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def baseline(model_dir: Path, rows: int) -> float:
    frame = scoring_frame(rows)
    model = mlflow.pyfunc.load_model(str(model_dir))
    started = time.perf_counter()
    predictions = model.predict(frame)
    elapsed = time.perf_counter() - started
    assert len(predictions) == rows
    return elapsed


def upload_inputs(connection_string: str, rows: int, files: int) -> None:
    frame = scoring_frame(rows)
    container = BlobServiceClient.from_connection_string(connection_string).create_container("incoming")
    step = -(-rows // files)
    for index in range(files):
        part = frame.iloc[index * step : (index + 1) * step]
        container.upload_blob(f"bench/part-{index:03d}.csv", part.to_csv(index=False).encode(), max_concurrency=4)
        progress(f"uploaded part {index + 1}/{files} ({len(part)} rows)")


def through_emulator(scoring_uri: str, files: int, workers: int) -> float:
    body = {
        "properties": {
            "InputData": {"in": {"JobInputType": "UriFolder", "Uri": "azureml://datastores/inputs/paths/bench"}},
            "OutputData": {
                "score": {
                    "JobOutputType": "UriFile",
                    "Uri": "azureml://datastores/workspaceblobstore/paths/bench/predictions.csv",
                }
            },
            "miniBatchSize": max(1, files // (workers * 2)),
            "compute": {"instanceCount": workers},
        }
    }
    headers = {"Authorization": f"Bearer {TOKEN}"}
    started = time.perf_counter()
    response = requests.post(scoring_uri, json=body, headers=headers, timeout=60)
    response.raise_for_status()
    name = response.json()["name"]
    status = ""
    while True:
        job = requests.get(f"{scoring_uri}/{name}", headers=headers, timeout=60).json()
        if job["properties"]["status"] != status:
            status = job["properties"]["status"]
            progress(f"job {name}: {status}")
        if status in {"Completed", "Failed", "Canceled"}:
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    if status != "Completed":
        raise SystemExit(f"job ended {status}: {job['properties'].get('error')}")
    return elapsed


def count_output_lines(connection_string: str) -> int:
    blob = BlobServiceClient.from_connection_string(connection_string).get_blob_client(
        "azureml-blobstore", "bench/predictions.csv"
    )
    return blob.download_blob(max_concurrency=4).readall().count(b"\n")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=8, help="input CSV files the rows are split into")
    parser.add_argument("--workers", type=int, default=2, help="emulator scoring processes (instanceCount)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-emulator-") as tmp:
        work = Path(tmp)
        progress("building the demo model")
        model_dir, _ = build(REPO / ".localdev" / "bench-demo")
        progress(f"baseline: pyfunc.predict on {args.rows} rows in this process")
        base_seconds = baseline(model_dir, args.rows)
        progress(f"baseline took {base_seconds:.2f}s")
        progress("starting Azurite and the emulator")
        azurite = start_azurite(work / "azurite.log")
        try:
            BlobServiceClient.from_connection_string(azurite.connection_string).create_container("azureml-blobstore")
            service, scoring_uri = start_batch_endpoint(
                connection_string=azurite.connection_string,
                datastores={"workspaceblobstore": "azureml-blobstore", "inputs": "incoming"},
                deployments={"diamonds": model_dir},
                token=TOKEN,
                log_path=work / "emulator.log",
                job_seconds=0,
                workers=args.workers,
            )
            try:
                upload_inputs(azurite.connection_string, args.rows, args.files)
                time.sleep(2)  # let the worker warm-up (imports) finish, as a long-running endpoint would have
                emulator_seconds = through_emulator(scoring_uri, args.files, args.workers)
                lines = count_output_lines(azurite.connection_string)
                stats = requests.get(scoring_uri.replace("/jobs", "/_emulator/stats"), timeout=10).json()
            finally:
                service.stop()
        finally:
            azurite.stop()
    if lines != args.rows:
        raise SystemExit(f"predictions.csv has {lines} lines, expected {args.rows}")
    base_rate, emulator_rate = args.rows / base_seconds, args.rows / emulator_seconds
    print(f"rows:                 {args.rows} in {args.files} files, {args.workers} emulator workers")
    print(f"pyfunc.predict:       {base_seconds:8.2f} s  {base_rate:12,.0f} rows/s (one process)")
    print(f"emulator end to end:  {emulator_seconds:8.2f} s  {emulator_rate:12,.0f} rows/s")
    print(f"ratio emulator/pyfunc: {emulator_rate / base_rate:.2f} (goal >= 0.7)")
    print(f"emulator requests:    {stats['routes']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
