"""One blob version as the host reads it for a trigger, and what it hands the function for it.

An `InputStream` parameter gets the content the host downloaded; an SDK-type parameter (sdk_bindings.py) gets
model binding data naming the blob, so the host reads only its properties. The trigger metadata (path, URI,
properties, metadata) goes with either, as in Azure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.functions import meta

from localdev.functions_host import storage
from localdev.functions_host.indexing import FunctionSpec
from localdev.functions_host.invoker import TriggerInput
from localdev.functions_host.sdk_bindings import MODEL_BINDING_DATA, blob_binding_data
from localdev.functions_host.settings import connection_setting_name


@dataclass
class BlobVersion:
    container: str
    name: str
    etag: str
    blob_type: str
    properties: dict[str, Any]
    metadata: dict[str, str]
    uri: str
    content: bytes | None  # None: bound to an SDK type, the content is never read


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def read_blob(
    connection_string: str, container: str, name: str, *, with_content: bool, etag: str | None = None
) -> BlobVersion:
    """The current version: its properties (one HEAD), and its content only when the binding needs it.
    With `etag`, only that version (ResourceModifiedError when the blob has changed since)."""
    client = storage.blob_service(connection_string).get_blob_client(container, name)
    same = {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
    content = None
    if with_content:
        downloader = client.download_blob(**same)
        content, props = downloader.readall(), downloader.properties
    else:
        props = client.get_blob_properties(**same)
    settings = props.content_settings
    properties = {
        "Length": props.size,
        "ContentLength": props.size,
        "ContentType": settings.content_type,
        "ContentEncoding": settings.content_encoding,
        "ETag": props.etag,
        "LastModified": _iso(props.last_modified),
        "CreatedOn": _iso(props.creation_time),
        "BlobType": str(getattr(props.blob_type, "value", props.blob_type)),
    }
    return BlobVersion(
        container=container,
        name=name,
        etag=props.etag,
        blob_type=str(properties["BlobType"]),
        properties=properties,
        metadata=dict(props.metadata or {}),
        uri=client.url,
        content=content,
    )


def trigger_input(
    spec: FunctionSpec, version: BlobVersion, params: dict[str, str], detail: str, *, attempt: int, tries: int
) -> TriggerInput:
    """What the host sends the worker: the content, or for an SDK-type binding the model binding data;
    the trigger metadata (path, URI, properties, metadata) either way."""
    path = f"{version.container}/{version.name}"
    metadata = {
        "BlobTrigger": meta.Datum(path, "string"),
        "Uri": meta.Datum(version.uri, "string"),
        "Properties": meta.Datum(json.dumps(version.properties), "json"),
        "Metadata": meta.Datum(json.dumps(version.metadata), "json"),
        **{key: meta.Datum(value, "string") for key, value in params.items()},
    }
    if spec.is_deferred(spec.trigger):
        setting = connection_setting_name(spec.trigger.get("connection"))
        binding_data = blob_binding_data(setting, version.container, version.name)
        datum, data_bytes = meta.Datum(binding_data, MODEL_BINDING_DATA), binding_data.size
    else:
        datum, data_bytes = meta.Datum(version.content or b"", "bytes"), len(version.content or b"")
    # What the host hands the worker for this invocation, in the log line (bench/intake.py reads it).
    handed = data_bytes + sum(len(str(value.value).encode()) for value in metadata.values())
    detail = f"{detail} handed={handed}B"
    return TriggerInput(datum, metadata, {"BlobTrigger": path, **params}, detail, attempt, tries)
