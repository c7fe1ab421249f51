"""SDK-type ("deferred") bindings, the way the Python worker and `azurefunctions-extensions-base` do them.

A function opts in by annotating a parameter with an SDK type from an extension package, e.g.
`azurefunctions.extensions.bindings.blob.BlobClient`. At indexing the worker marks that binding
`"properties": {"SupportsDeferredBinding": true}`; the host then sends, instead of the data, a
`ModelBindingData` (FunctionRpc.proto) naming where the data is, and the extension's converter turns it
into the SDK client. For blobs the host's blob extension sends version "1.0", source "AzureStorageBlobs",
content type "application/json" and `{"Connection": <setting name>, "ContainerName", "BlobName"}`:
the blob's content never crosses to the worker.

The registry is the extension base's own (`get_binding_registry()`), looked up only when the app has
imported `azurefunctions.extensions.base` (azure-functions-runtime 1.3 checks `sys.modules` the same way),
so the converter, the type check and the decoding are the real package's, not a copy.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from azure.functions import meta

BASE_EXTENSION = "azurefunctions.extensions.base"
MODEL_BINDING_DATA = "model_binding_data"
BLOB_EXTENSION_SOURCE = "AzureStorageBlobs"
SUPPORTS_DEFERRED_BINDING = "SupportsDeferredBinding"


@dataclass(frozen=True)
class ModelBindingData:
    """FunctionRpc.proto's `ModelBindingData` (the host's ParameterBindingData): the fields converters read."""

    version: str
    source: str
    content_type: str
    content: bytes

    @property
    def size(self) -> int:
        """What crosses from host to worker for this binding: the four fields' bytes."""
        return sum(len(text.encode()) for text in (self.version, self.source, self.content_type)) + len(self.content)


def blob_binding_data(connection_setting: str, container: str, blob_name: str) -> ModelBindingData:
    """What the host's blob extension sends for a blob trigger or input bound to an SDK type."""
    content = {"Connection": connection_setting, "ContainerName": container, "BlobName": blob_name}
    return ModelBindingData("1.0", BLOB_EXTENSION_SOURCE, "application/json", json.dumps(content).encode())


def deferred_registry() -> Any | None:
    """The extension base's converter registry, or None when the app imported no SDK-type extension."""
    base = sys.modules.get(BASE_EXTENSION)
    return None if base is None else base.get_binding_registry()


def is_sdk_type(binding: dict[str, Any], annotation: Any) -> bool:
    """The worker's test (check_deferred_bindings_enabled): an input parameter annotated with a type the
    extension base knows as an SDK type. Whether the binding's converter accepts it is annotation_problem."""
    registry = deferred_registry()
    if registry is None or str(binding.get("direction", "IN")).upper() != "IN":
        return False
    return bool(registry.check_supported_type(annotation))


def annotation_problem(binding: dict[str, Any], annotation: Any) -> str | None:
    """The worker's load check for a deferred binding: the converter must accept the annotation."""
    registry = deferred_registry()
    converter = None if registry is None else registry.get(binding["type"])
    if converter is None or not converter.check_input_type_annotation(annotation):
        name = getattr(annotation, "__name__", repr(annotation))
        return f"type of {binding['name']} binding {binding['type']!r} does not match its Python annotation {name!r}"
    return None


def decode(binding_type: str, data: ModelBindingData, metadata: dict[str, meta.Datum], annotation: Any) -> Any:
    """The SDK object, built by the extension's converter from the model binding data (no cache: like
    azure-functions-runtime 1.3, every invocation gets a client of its own)."""
    registry = deferred_registry()
    converter = None if registry is None else registry.get(binding_type)
    if converter is None:
        raise RuntimeError(f"no SDK-type converter for {binding_type}: is the extension package still imported?")
    return converter.decode(meta.Datum(data, MODEL_BINDING_DATA), trigger_metadata=metadata, pytype=annotation)
