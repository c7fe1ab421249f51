"""Blob storage (azure-storage-blob): ranged reads pinned to one version, streamed writes, server-side copy.

Whole-blob reads and writes (the join's) overlap with the caller's work within TransferLimits (transfers.py).

This module is the only one that imports azure-storage-blob.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, TypedDict

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobClient, BlobServiceClient, ContentSettings

from shared.adapters.identity import credential, storage_client
from shared.adapters.storage_errors import storage_errors_translated, translated
from shared.adapters.transfers import TransferLimits, read_ahead, stage_blocks
from shared.config import Settings
from shared.core.naming import HEALTH_PROBE_PREFIX
from shared.errors import BlobChanged, BlobExists, BlobMissing, ResourceMissing, StorageRequestError, TransientError
from shared.models import BlobInfo

_COPY_WAIT_SECONDS = 600


class AzureBlobStore:
    @classmethod
    def from_settings(cls, settings: Settings) -> AzureBlobStore:
        limits = TransferLimits.within(
            memory_bytes=settings.join_memory_mb * 1024 * 1024, concurrency=settings.join_concurrency
        )
        # A ranged read of the join comes back in one piece (the SDK reads 256 KiB pieces and joins them
        # otherwise): one copy less of every byte downloaded.
        piece = limits.chunk_bytes
        service = storage_client(
            settings.storage,
            settings.storage.blob_url,
            from_connection_string=lambda connection: BlobServiceClient.from_connection_string(
                connection, connection_data_block_size=piece
            ),
            from_url=lambda url, credential: BlobServiceClient(
                url, credential=credential, connection_data_block_size=piece
            ),
            client_id=settings.client_id,
        )
        return cls(service, transfer=limits)

    def __init__(self, service: BlobServiceClient, *, transfer: TransferLimits | None = None) -> None:
        self._service = service
        self._transfer = transfer or TransferLimits()
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
        """Stream a blob in chunks read ahead in parallel (TransferLimits); every range is pinned to the
        version `etag`, or to the one found first. Errors are translated here because a generator body
        runs only when iterated, outside any decorator."""
        blob = self._service.get_blob_client(container, name)
        try:
            found = blob.get_blob_properties(**_pinned(etag))
            version = _pinned(etag or str(found.etag))

            def read_range(offset: int, length: int) -> bytes:
                # One GET; `chunks()` hands over the bytes it read (readall would copy them twice more).
                return b"".join(blob.download_blob(offset=offset, length=length, **version).chunks())

            yield from read_ahead(read_range, int(found.size), self._transfer)
        except ResourceNotFoundError:
            raise BlobMissing(f"{container}/{name} does not exist") from None
        except ResourceModifiedError:
            raise BlobChanged(f"{container}/{name} changed while it was read") from None
        except AzureError as exc:
            raise translated(exc) from exc

    @storage_errors_translated
    def write(self, container: str, name: str, data: Iterable[bytes] | bytes, *, content_type: str) -> None:
        """Bytes in one request; a stream as staged blocks (uploaded while the next is made), committed
        as one block list: the blob changes all at once, and a failure before the commit changes nothing."""
        self._ensure_container(container)
        blob = self._service.get_blob_client(container, name)
        content = ContentSettings(content_type=content_type)
        if isinstance(data, bytes):
            blob.upload_blob(data, overwrite=True, content_settings=content)
            return
        block_ids = stage_blocks(blob.stage_block, data, self._transfer)
        blob.commit_block_list([BlobBlock(block_id) for block_id in block_ids], content_settings=content)

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
        if_absent: bool = False,
    ) -> str:
        self._ensure_container(target_container)
        source = self._service.get_blob_client(source_container, name)
        target = self._service.get_blob_client(target_container, target_name)
        pinned = _pinned(source_etag)
        conditions: dict[str, Any] = {}
        if pinned:
            conditions.update(source_etag=pinned["etag"], source_match_condition=pinned["match_condition"])
        if if_absent:  # If-None-Match: * on the target: the copy never replaces a blob
            conditions["match_condition"] = MatchConditions.IfMissing
        try:
            started = target.start_copy_from_url(source.url, metadata=metadata, **conditions)
        except ResourceExistsError:  # 409 BlobAlreadyExists: the target's If-None-Match: *
            raise BlobExists(f"{target_container}/{target_name} already exists") from None
        except ResourceNotFoundError:
            raise BlobMissing(f"{source_container}/{name} is gone") from None
        except ResourceModifiedError:
            # A 412 names no side reliably (services and emulators differ): the source still at its version
            # means the target's condition failed.
            if if_absent and _still_at(source, source_etag):
                raise BlobExists(f"{target_container}/{target_name} already exists") from None
            raise BlobChanged(f"{source_container}/{name} was overwritten") from None
        if started.get("copy_status") == "success":  # a copy within one account is done at once
            return str(started["etag"]).strip('"')
        deadline = time.monotonic() + _COPY_WAIT_SECONDS
        while True:
            props = target.get_blob_properties()
            copy = props.copy
            if copy.status in {None, "success"}:
                return str(props.etag).strip('"')
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


def _still_at(blob: BlobClient, etag: str | None) -> bool:
    """The blob exists (at the version `etag`, when given)."""
    try:
        found = blob.get_blob_properties()
    except ResourceNotFoundError:
        return False
    return etag is None or str(found.etag).strip('"') == etag.strip('"')


class _Pinned(TypedDict, total=False):
    etag: str
    match_condition: MatchConditions


def _pinned(etag: str | None) -> _Pinned:
    """Conditions that make a read or delete apply to exactly one blob version (quoted ETag, If-Match)."""
    if not etag:
        return {}
    return {"etag": etag if etag.startswith('"') else f'"{etag}"', "match_condition": MatchConditions.IfNotModified}


class DatastoreFiles:
    """Small files in an Azure ML datastore's storage account (a model's MLmodel), read with the app's identity.

    A datastore on the app's own account (Azurite locally, or a workspace that shares the app's storage) is
    read with the app's storage client; any other account with the managed identity, which then needs
    Storage Blob Data Reader there (README: REQUIRED_COLUMNS=auto).
    """

    @classmethod
    def from_settings(cls, settings: Settings) -> DatastoreFiles:
        return cls(AzureBlobStore.from_settings(settings)._service, client_id=settings.client_id)

    def __init__(self, own: BlobServiceClient, *, client_id: str | None) -> None:
        self._own = own
        self._client_id = client_id
        self._others: dict[str, BlobServiceClient] = {}

    @storage_errors_translated
    def read_small(self, *, account: str, endpoint_suffix: str, container: str, path: str, max_bytes: int) -> bytes:
        """The whole file; ResourceMissing when it is not there, StorageRequestError when over `max_bytes`."""
        blob = self._service(account, endpoint_suffix).get_blob_client(container, path)
        try:
            stream = blob.download_blob(offset=0, length=max_bytes + 1)
            data = bytes(stream.readall())
        except ResourceNotFoundError:
            raise ResourceMissing(f"{account}/{container}/{path} does not exist") from None
        if len(data) > max_bytes:
            raise StorageRequestError(f"{container}/{path} is over {max_bytes} bytes: not a model's metadata file")
        return data

    def _service(self, account: str, endpoint_suffix: str) -> BlobServiceClient:
        if account == self._own.account_name:
            return self._own
        if account not in self._others:
            url = f"https://{account}.blob.{endpoint_suffix}"
            self._others[account] = BlobServiceClient(url, credential=credential(self._client_id))
        return self._others[account]
