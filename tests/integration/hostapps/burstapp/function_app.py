"""Toy app: how the host paces work (queue slots, blob parallelism, the incremental scan, crash recovery).

A message or blob whose name starts with "hold" blocks until the file $RELEASE_FILE exists.
"""

from __future__ import annotations

import os
import time

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob
from record import record

app = func.FunctionApp()


def hold_or_pause(name: str, pause: float) -> None:
    if not name.startswith("hold"):
        time.sleep(pause)
        return
    deadline = time.monotonic() + 60
    while not os.path.exists(os.environ["RELEASE_FILE"]) and time.monotonic() < deadline:
        time.sleep(0.05)


@app.queue_trigger(arg_name="msg", queue_name="%SLOT_QUEUE%", connection="AzureWebJobsStorage")
def on_slot_message(msg: func.QueueMessage) -> None:
    body, started = msg.get_body().decode(), time.time()
    hold_or_pause(body, 0.2)
    record("on_slot_message", name=body, started=started, ended=time.time())


@app.blob_trigger(arg_name="client", path="%PARALLEL_CONTAINER%/{name}", connection="AzureWebJobsStorage")
def on_parallel_blob(client: blob.BlobClient) -> None:
    started = time.time()
    hold_or_pause(client.blob_name, 0.5)
    record("on_parallel_blob", name=client.blob_name, started=started, ended=time.time())


@app.blob_trigger(arg_name="client", path="%SCAN_CONTAINER%/{name}", connection="AzureWebJobsStorage")
def on_scanned_blob(client: blob.BlobClient) -> None:
    record("scan_started", name=client.blob_name)
    hold_or_pause(client.blob_name, 0.0)
    record("on_scanned_blob", name=client.blob_name)
