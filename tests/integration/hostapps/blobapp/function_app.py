"""Toy app: blob triggers (scan source, poison, Event Grid source)."""

from __future__ import annotations

import azure.functions as func
from record import record

app = func.FunctionApp()


@app.blob_trigger(arg_name="blob", path="%CSV_CONTAINER%/{name}.csv", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="out", queue_name="%OUT_QUEUE%", connection="AzureWebJobsStorage")
def on_csv(blob: func.InputStream, out: func.Out[str]) -> None:
    props = blob.blob_properties or {}
    record(
        "on_csv",
        name=blob.name,
        length=blob.length,
        etag=props.get("ETag"),
        content_type=props.get("ContentType"),
        metadata=blob.metadata,
        body=blob.read().decode(),
    )
    out.set(f"seen {blob.name}")


@app.blob_trigger(arg_name="blob", path="%POISON_CONTAINER%/{name}", connection="AzureWebJobsStorage")
def always_fails(blob: func.InputStream) -> None:
    record("always_fails", name=blob.name)
    raise RuntimeError(f"cannot handle {blob.name}")


@app.blob_trigger(arg_name="blob", path="%EG_CONTAINER%/{name}", connection="AzureWebJobsStorage", source="EventGrid")
async def eg_blob(blob: func.InputStream) -> None:
    record("eg_blob", name=blob.name, body=blob.read().decode())
