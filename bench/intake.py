"""Intake without the content: bytes moved for one blob trigger on a 100 MB input, SDK type vs InputStream.

Run: `.venv/bin/python bench/intake.py [--mb 100]`. Starts its own Azurite and runs the Functions dev host
twice on a one-function app whose trigger is bound the way on_input_blob is (an SDK-type `BlobClient`,
azurefunctions-extensions-bindings-blob) and, as the baseline, the way it was (`func.InputStream`). Both
functions read what on_input_blob reads: the blob's properties and its first MiB. Two figures per run:

- read from storage: every byte the host process (host and function together) received from Azurite's blob
  service from its start until the function was done, counted by a TCP meter between them (start-up,
  listing, receipts, properties, content, the function's own reads);
- handed to the function: what the host passed the worker for the invocation (the content, or the model
  binding data naming the blob, plus the trigger metadata), from the host's own log line.

Goal: read from storage <= 2 MiB with the SDK type; the ratio is baseline / SDK type.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from azure.storage.blob import BlobServiceClient  # noqa: E402

from localdev.azurite import Azurite, start_azurite  # noqa: E402
from localdev.functions_host.launcher import start_functions_host  # noqa: E402
from localdev.functions_host.meter import ByteMeter, with_blob_endpoint  # noqa: E402

GOAL_BYTES = 2 * 1024 * 1024
HEAD = 1024 * 1024  # shared/csvfiles.HEAD_BYTES: what intake validates
CONTAINER = "incoming"

APP = """
import os, time
import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob_binding

app = func.FunctionApp()
HEAD = HEAD_BYTES

def done(head):
    with open(os.environ["DONE_FILE"], "w") as out:
        out.write(str(len(head)))

@app.blob_trigger(arg_name="blob", path="incoming/{name}", connection="AzureWebJobsStorage",
                  source="LogsAndContainerScan")
def on_input_blob(blob: ANNOTATION) -> None:
BODY
"""
SDK_BODY = """    size = blob.get_blob_properties().size  # what accept_blob reads: one properties call...
    done(blob.download_blob(offset=0, length=min(size, HEAD)).readall())  # ...and the first MiB"""
STREAM_BODY = """    done(blob.read(HEAD))  # the content is already here: the host downloaded all of it"""
VARIANTS = {
    "SDK type (BlobClient)": ("blob_binding.BlobClient", SDK_BODY),
    "InputStream (baseline)": ("func.InputStream", STREAM_BODY),
}
HANDED = re.compile(r"Executed 'Functions\.on_input_blob' \(Succeeded.* handed=(\d+)B")


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def write_app(folder: Path, annotation: str, body: str) -> Path:
    folder.mkdir(parents=True)
    code = APP.replace("ANNOTATION", annotation).replace("BODY", body).replace("HEAD_BYTES", str(HEAD))
    (folder / "function_app.py").write_text(code)
    (folder / "host.json").write_text(json.dumps({"version": "2.0"}))
    return folder


def measure(azurite: Azurite, work: Path, label: str, annotation: str, body: str) -> tuple[int, int, float]:
    """(bytes read from storage, bytes handed to the function, seconds from host start to the function done)."""
    app_dir = write_app(work / uuid.uuid4().hex[:8], annotation, body)
    done_file = app_dir / "done"
    with ByteMeter(azurite.blob_port) as meter:
        env = {
            "AzureWebJobsStorage": with_blob_endpoint(azurite.connection_string, meter.port),
            "DONE_FILE": str(done_file),
            "FUNCTIONS_WORKER_RUNTIME": "python",
        }
        log_path = app_dir / "host.log"
        # Counted from before the host starts (its start-up storage calls too): nothing the trigger reads escapes.
        started = time.monotonic()
        service, _ = start_functions_host(
            app_dir=app_dir, env=env, log_path=log_path, blob_scan_interval=0.5, host_id=f"bench-{app_dir.name}"
        )
        try:
            while not done_file.exists():
                if service.process.poll() is not None or time.monotonic() - started > 300:
                    raise RuntimeError(f"{label}: the function never ran; see {log_path}")
                time.sleep(0.05)
            seconds = time.monotonic() - started
            while not (found := HANDED.search(log_path.read_text(errors="replace"))):
                time.sleep(0.05)
            read, _ = meter.reset()
        finally:
            service.stop()
    return read, int(found.group(1)), seconds


def mib(count: float) -> str:
    return f"{count / 1024 / 1024:,.2f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="input size in MB (10^6 bytes)")
    args = parser.parse_args()
    size = args.mb * 1_000_000
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        work = Path(tmp)
        azurite = start_azurite(work / "azurite.log")
        try:
            blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
            blobs.create_container(CONTAINER)
            progress(f"uploading a {args.mb} MB input (straight to Azurite, not through the meter)")
            blobs.get_blob_client(CONTAINER, "big.csv").upload_blob(
                b"carat,cut\n" + b"0.3,Ideal\n" * ((size - 10) // 10), max_concurrency=4
            )
            results = {}
            for label, (annotation, body) in VARIANTS.items():
                progress(f"{label}: starting the host, waiting for the trigger")
                results[label] = measure(azurite, work, label, annotation, body)
        finally:
            azurite.stop()
    print()
    print(f"{'binding':<24} {'read from storage':>18} {'handed to the function':>24} {'start to done':>16}")
    for label, (read, handed, seconds) in results.items():
        print(f"{label:<24} {mib(read):>18} {f'{handed:,} B':>24} {seconds:>15.1f}s")
    sdk_read = results["SDK type (BlobClient)"][0]
    base_read = results["InputStream (baseline)"][0]
    print(f"ratio InputStream / SDK type, bytes read from storage: {base_read / sdk_read:,.0f}x")
    print(f"SDK type read from storage: {mib(sdk_read)} for a {args.mb} MB input (goal <= {mib(GOAL_BYTES)})")
    return 0 if sdk_read <= GOAL_BYTES else 1


if __name__ == "__main__":
    raise SystemExit(main())
