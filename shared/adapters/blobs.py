"""Blob storage (azure-storage-blob): ranged reads pinned to one version, streamed writes, server-side copy.

This module is the only one that imports azure-storage-blob.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import TypedDict

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings

from shared.adapters.identity import storage_client
from shared.adapters.storage_errors import storage_errors_translated, translated
from shared.config import Settings
from shared.core.naming import HEALTH_PROBE_PREFIX
from shared.errors import BlobChanged, BlobMissing, ResourceMissing, TransientError
from shared.models import BlobInfo

_COPY_WAIT_SECONDS = 600


class AzureBlobStore:
    @classmethod
    def from_settings(cls, settings: Settings) -> AzureBlobStore:
        service = storage_client(
            settings.storage,
            settings.storage.blob_url,
            from_connection_string=BlobServiceClient.from_connection_string,
            from_url=lambda url, credential: BlobServiceClient(url, credential=credential),
            client_id=settings.client_id,
        )
        return cls(service)

    def __init__(self, service: BlobServiceClient) -> None:
        self._service = service
        self._containers: set[str] = set()
        self._lock = threading.Lock()

    @property
    def account_name(self) -> str:
        return str(self._service.account_name)

    def url(self, container: str, name: str) -> str:
        """The blob's URL without a query string: a SAS credential never leaks into the ledger or events."""
        return str(self._service.get_blob_client(container, name).url).split("?", 1)[0]

    @storage_errors_translated
    def properties(self, container: str, name: str) -> BlobInfo | None:
        try:
            props = self._service.get_blob_client(container, name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        return BlobInfo(
            etag=str(props.etag).strip('"'),
            size=int(props.size),
            content_type=props.content_settings.content_type,
            metadata=dict(props.metadata or {}),
        )

    @storage_errors_translated
    def read_range(self, container: str, name: str, *, offset: int, length: int, etag: str | None) -> bytes:
        blob = self._service.get_blob_client(container, name)
        try:
            stream = blob.download_blob(offset=offset, length=length, **_pinned(etag))
            return bytes(stream.readall())
        except ResourceNotFoundError:
            raise BlobMissing(f"{container}/{name} was deleted before it could be read") from None
        except ResourceModifiedError:
            raise BlobChanged(f"{container}/{name} was overwritten after the trigger fired") from None

    def chunks(self, container: str, name: str, *, etag: str | None = None) -> Iterator[bytes]:
        """Stream a blob in the SDK's chunks; errors are translated here because a generator body runs
        only when iterated, outside any decorator."""
        blob = self._service.get_blob_client(container, name)
        try:
            yield from blob.download_blob(**_pinned(etag)).chunks()
        except ResourceNotFoundError:
            raise BlobMissing(f"{container}/{name} does not exist") from None
        except ResourceModifiedError:
            raise BlobChanged(f"{container}/{name} changed while it was read") from None
        except AzureError as exc:
            raise translated(exc) from exc

    @storage_errors_translated
    def write(self, container: str, name: str, data: Iterable[bytes] | bytes, *, content_type: str) -> None:
        self._ensure_container(container)
        blob = self._service.get_blob_client(container, name)
        blob.upload_blob(data, overwrite=True, content_settings=ContentSettings(content_type=content_type))

    @storage_errors_translated
    def copy(
        self,
        source_container: str,
        name: str,
        target_container: str,
        target_name: str,
        *,
        source_etag: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self._ensure_container(target_container)
        source = self._service.get_blob_client(source_container, name)
        target = self._service.get_blob_client(target_container, target_name)
        pinned = _pinned(source_etag)
        try:
            if pinned:
                target.start_copy_from_url(
                    source.url,
                    metadata=metadata,
                    source_etag=pinned["etag"],
                    source_match_condition=pinned["match_condition"],
                )
            else:
                target.start_copy_from_url(source.url, metadata=metadata)
        except ResourceNotFoundError:
            raise BlobMissing(f"{source_container}/{name} is gone") from None
        except ResourceModifiedError:
            raise BlobChanged(f"{source_container}/{name} was overwritten") from None
        deadline = time.monotonic() + _COPY_WAIT_SECONDS
        while True:
            copy = target.get_blob_properties().copy
            if copy.status in {None, "success"}:
                return
            if copy.status in {"failed", "aborted"}:
                raise TransientError(
                    f"copy to {target_container}/{target_name} {copy.status}: {copy.status_description}"
                )
            if time.monotonic() > deadline:
                raise TransientError(f"copy to {target_container}/{target_name} still pending")
            time.sleep(0.5)

    @storage_errors_translated
    def delete(self, container: str, name: str, *, etag: str | None = None) -> bool:
        try:
            blob = self._service.get_blob_client(container, name)
            blob.delete_blob(**_pinned(etag))
        except (ResourceNotFoundError, ResourceModifiedError):
            return False
        return True

    @storage_errors_translated
    def probe_container(self, container: str) -> None:
        client = self._service.get_container_client(container)
        try:
            client.get_container_properties()
        except ResourceNotFoundError:
            raise ResourceMissing(f"container {container} does not exist") from None
        probe = f"{HEALTH_PROBE_PREFIX}/{uuid.uuid4().hex}"
        client.upload_blob(probe, b"", overwrite=True)
        client.delete_blob(probe)

    def _ensure_container(self, container: str) -> None:
        if container in self._containers:
            return
        with self._lock:
            with contextlib.suppress(ResourceExistsError):
                self._service.create_container(container)
            self._containers.add(container)


class _Pinned(TypedDict, total=False):
    etag: str
    match_condition: MatchConditions


def _pinned(etag: str | None) -> _Pinned:
    """Conditions that make a read or delete apply to exactly one blob version (quoted ETag, If-Match)."""
    if not etag:
        return {}
    return {"etag": etag if etag.startswith('"') else f'"{etag}"', "match_condition": MatchConditions.IfNotModified}
