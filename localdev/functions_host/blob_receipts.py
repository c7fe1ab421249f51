"""Blob trigger receipts and the poison queue, in the host's storage (`AzureWebJobsStorage`).

Receipts follow the WebJobs SDK's `BlobReceiptManager`: block blobs in `azure-webjobs-hosts` named
`blobreceipts/<hostId>/<functionId>/<ETag>/<container>/<blob>`, where functionId is `Host.Functions.<fn>`
and the ETag keeps its quotes. The ETag comes before the blob name because blob names can hold slashes.
Metadata: `Completed` (`true`/`false`), `Attempts` (tries so far, counted before each try like a dequeue
count), `Outcome` (`Succeeded`/`Poisoned`).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections import OrderedDict
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from localdev.functions_host import storage
from localdev.functions_host.settings import resolve_connection

RECEIPTS_DIRECTORY = "blobreceipts"
#: Versions known to be done, so a scan that lists them again (same-second overlap) reads no receipt.
DONE_CACHE_SIZE = 4096


def receipt_blob_name(host_id: str, function_id: str, etag: str, container: str, blob_name: str) -> str:
    return f"{RECEIPTS_DIRECTORY}/{host_id}/{function_id}/{etag}/{container}/{blob_name}"


class DoneVersions:
    """A bounded memory of finished versions (the receipts are the record; this only spares reads)."""

    def __init__(self, size: int = DONE_CACHE_SIZE) -> None:
        self.size = size
        self._keys: OrderedDict[tuple[str, ...], None] = OrderedDict()

    def add(self, key: tuple[str, ...]) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)


class Receipts:
    """Receipts and poison messages of one host (blocking calls: run them in a thread)."""

    def __init__(self, host_id: str, message_encoding: str) -> None:
        self.host_id = host_id
        self.message_encoding = message_encoding
        self._hosts_ready = False

    def hosts_container(self) -> Any:
        """`azure-webjobs-hosts`, created once per process rather than before every receipt."""
        hosts = storage.blob_service(resolve_connection("AzureWebJobsStorage")).get_container_client(
            storage.HOSTS_CONTAINER
        )
        if not self._hosts_ready:
            with contextlib.suppress(ResourceExistsError):
                hosts.create_container()
            self._hosts_ready = True
        return hosts

    @staticmethod
    def _read(client: Any) -> dict[str, str] | None:
        try:
            return dict(client.get_blob_properties().metadata or {})
        except ResourceNotFoundError:
            return None

    def open(self, function_id: str, etag: str, container: str, name: str) -> tuple[Any, int] | None:
        """The version's receipt (created when missing) and its tries so far; None when it is completed."""
        name = receipt_blob_name(self.host_id, function_id, etag, container, name)
        client = self.hosts_container().get_blob_client(name)
        receipt = self._read(client)
        if receipt is None:
            try:
                client.upload_blob(b"", overwrite=False, metadata={"Completed": "false", "Attempts": "0"})
                receipt = {"Completed": "false", "Attempts": "0"}
            except ResourceExistsError:  # another try made it first
                receipt = self._read(client) or {"Completed": "false", "Attempts": "0"}
        if receipt.get("Completed") == "true":
            return None
        return client, int(receipt.get("Attempts", "0"))

    @staticmethod
    def count_try(client: Any, attempt: int) -> None:
        """Record a try before it runs, like a dequeue count: a crash mid-try still counts."""
        client.set_blob_metadata(
            {"Completed": "false", "Attempts": str(attempt), "IncompleteInvocationId": str(uuid.uuid4())}
        )

    @staticmethod
    def complete(client: Any, attempt: int, outcome: str) -> None:
        client.set_blob_metadata({"Completed": "true", "Attempts": str(attempt), "Outcome": outcome})

    def poison(self, function_id: str, blob_type: str, etag: str, container: str, name: str) -> None:
        message = {
            "Type": "BlobTrigger",
            "FunctionId": function_id,
            "BlobType": blob_type,
            "ContainerName": container,
            "BlobName": name,
            "ETag": etag,
        }
        queue = storage.queue_service(resolve_connection("AzureWebJobsStorage")).get_queue_client(
            storage.BLOB_POISON_QUEUE
        )
        with contextlib.suppress(ResourceExistsError):
            queue.create_queue()
        queue.send_message(storage.encode_message(json.dumps(message), self.message_encoding))
