"""Toy app: blob triggers bound to the SDK type (BlobClient) and, for comparison, to an InputStream."""

from __future__ import annotations

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob
from record import record

app = func.FunctionApp()


def describe(client: blob.BlobClient) -> dict[str, object]:
    properties = client.get_blob_properties()
    return {
        "type": f"{type(client).__module__}.{type(client).__qualname__}",
        "container": client.container_name,
        "name": client.blob_name,
        "etag": properties.etag,
        "size": properties.size,
        "head": client.download_blob(offset=0, length=4).readall().decode(),
    }


@app.blob_trigger(arg_name="client", path="%SDK_CONTAINER%/{name}", connection="AzureWebJobsStorage")
def on_sdk_blob(client: blob.BlobClient) -> None:
    record("on_sdk_blob", **describe(client))


@app.blob_trigger(arg_name="stream", path="%STREAM_CONTAINER%/{name}", connection="AzureWebJobsStorage")
def on_stream_blob(stream: func.InputStream) -> None:
    record("on_stream_blob", name=stream.name, length=stream.length)


@app.blob_trigger(
    arg_name="client", path="%SDK_EG_CONTAINER%/{name}", connection="AzureWebJobsStorage", source="EventGrid"
)
def on_sdk_event(client: blob.BlobClient) -> None:
    record("on_sdk_event", **describe(client))
