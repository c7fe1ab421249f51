"""Map the URI forms a batch job accepts onto an Azurite container and blob path."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from localdev.batch_endpoint.errors import ApiError, validation_error

AZURITE_ACCOUNT = "devstoreaccount1"
HTTPS_OUTPUT_MESSAGE = (
    "Output uri '{uri}' is not supported: the output must be a path to an output file in a Data Store "
    "(azureml://datastores/<datastore>/paths/<path>)."
)

_SHORT = re.compile(r"^azureml://datastores/(?P<ds>[^/]+)/paths/(?P<path>.*)$", re.IGNORECASE)
_LONG = re.compile(
    r"^azureml://subscriptions/[^/]+/resourcegroups/[^/]+/workspaces/[^/]+/datastores/(?P<ds>[^/]+)"
    r"/paths/(?P<path>.*)$",
    re.IGNORECASE,
)
_ARM = re.compile(
    r"^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.machinelearningservices"
    r"/workspaces/[^/]+/datastores/(?P<ds>[^/]+)/paths/(?P<path>.*)$",
    re.IGNORECASE,
)
_DATASTORE_FORMS = (_SHORT, _LONG, _ARM)


@dataclass(frozen=True)
class BlobLocation:
    """A container in the Azurite account and a blob path (no leading slash) inside it."""

    container: str
    path: str
    datastore: str | None = None

    def as_uri(self) -> str:
        if self.datastore:
            return f"azureml://datastores/{self.datastore}/paths/{self.path}"
        return f"https://{AZURITE_ACCOUNT}.blob.core.windows.net/{self.container}/{self.path}"


def datastore_location(datastore: str, path: str, datastores: Mapping[str, str]) -> BlobLocation:
    container = datastores.get(datastore)
    if container is None:
        raise ApiError(
            400,
            "UserError",
            f"Datastore '{datastore}' was not found in workspace. Known datastores: {sorted(datastores)}.",
        )
    return BlobLocation(container, path.strip("/"), datastore)


def _blob_url_location(uri: str) -> BlobLocation:
    parsed = urlparse(uri)
    segments = [unquote(s) for s in parsed.path.split("/") if s]
    host = (parsed.hostname or "").lower()
    # Path-style (Azurite) URLs carry the account as the first segment; Azure URLs carry it in the host.
    if not host.endswith(".blob.core.windows.net") and segments[:1] == [AZURITE_ACCOUNT]:
        segments = segments[1:]
    if len(segments) < 1:
        raise validation_error(f"Input uri '{uri}' does not name a blob container.")
    return BlobLocation(segments[0], "/".join(segments[1:]))


def resolve_uri(uri: str, datastores: Mapping[str, str], *, for_output: bool) -> BlobLocation:
    """Resolve `uri` or raise the 400 Azure gives at invoke for a URI it cannot use."""
    if not isinstance(uri, str) or not uri.strip():
        raise validation_error("The 'Uri' of a job input or output must be a non-empty string.")
    uri = uri.strip()
    for form in _DATASTORE_FORMS:
        match = form.match(uri)
        if match:
            return datastore_location(match["ds"], unquote(match["path"]), datastores)
    if uri.lower().startswith(("https://", "http://")):
        if for_output:
            raise validation_error(HTTPS_OUTPUT_MESSAGE.format(uri=uri))
        return _blob_url_location(uri)
    raise validation_error(
        f"Uri '{uri}' is not supported by the emulator: use azureml://datastores/<ds>/paths/<path>, "
        "the long azureml://subscriptions/... datastore form, or a blob URL."
    )
