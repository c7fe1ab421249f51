"""Blob trigger: container scans (polling source), Event Grid source, receipts and the poison queue.

Receipts follow the WebJobs SDK's `BlobReceiptManager`: block blobs in `azure-webjobs-hosts` named
`blobreceipts/<hostId>/<functionId>/<ETag>/<container>/<blob>`, where functionId is `Host.Functions.<fn>`
and the ETag keeps its quotes. The ETag comes before the blob name because blob names can hold slashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions import meta

from localdev.functions_host import storage
from localdev.functions_host.indexing import FunctionSpec
from localdev.functions_host.invoker import Invoker, TriggerInput
from localdev.functions_host.settings import resolve_connection

log = logging.getLogger("functions_host")

RECEIPTS_DIRECTORY = "blobreceipts"
_PARAM = re.compile(r"\{([^{}]+)\}")
Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


@dataclass(frozen=True)
class BlobPattern:
    """A trigger path like `incoming/{name}.csv`: a literal container, then a blob-name pattern."""

    container: str
    prefix: str
    regex: re.Pattern[str]

    @classmethod
    def parse(cls, path: str) -> BlobPattern:
        container, sep, blob_pattern = path.strip("/").partition("/")
        if not container or "{" in container:
            raise ValueError(f"blob trigger path {path!r} must start with a literal container name")
        blob_pattern = blob_pattern if sep else "{name}"
        pieces: list[str] = []
        last = 0
        for match in _PARAM.finditer(blob_pattern):
            pieces.append(re.escape(blob_pattern[last : match.start()]))
            # Like the SDK, a parameter may span "/" so `{name}` also matches blobs in virtual folders.
            pieces.append(f"(?P<{match.group(1)}>.+?)")
            last = match.end()
        pieces.append(re.escape(blob_pattern[last:]))
        prefix = blob_pattern.split("{", 1)[0]
        # DOTALL: a blob name may hold a newline, and Azure still triggers on it.
        return cls(container, prefix, re.compile("^" + "".join(pieces) + "$", re.DOTALL))

    def match(self, container: str, blob_name: str) -> dict[str, str] | None:
        if container != self.container:
            return None
        found = self.regex.match(blob_name)
        return found.groupdict() if found else None


def receipt_blob_name(host_id: str, function_id: str, etag: str, container: str, blob_name: str) -> str:
    return f"{RECEIPTS_DIRECTORY}/{host_id}/{function_id}/{etag}/{container}/{blob_name}"


@dataclass
class BlobVersion:
    container: str
    name: str
    etag: str
    blob_type: str
    content: bytes
    properties: dict[str, Any]
    metadata: dict[str, str]
    uri: str


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def download_blob(connection_string: str, container: str, name: str) -> BlobVersion:
    client = storage.blob_service(connection_string).get_blob_client(container, name)
    downloader = client.download_blob()
    content = downloader.readall()
    props = downloader.properties
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
        blob_type=properties["BlobType"],
        content=content,
        properties=properties,
        metadata=dict(props.metadata or {}),
        uri=client.url,
    )


def trigger_input(version: BlobVersion, params: dict[str, str], detail: str, attempt: int, tries: int) -> TriggerInput:
    path = f"{version.container}/{version.name}"
    metadata = {
        "BlobTrigger": meta.Datum(path, "string"),
        "Uri": meta.Datum(version.uri, "string"),
        "Properties": meta.Datum(json.dumps(version.properties), "json"),
        "Metadata": meta.Datum(json.dumps(version.metadata), "json"),
        **{key: meta.Datum(value, "string") for key, value in params.items()},
    }
    return TriggerInput(
        datum=meta.Datum(version.content, "bytes"),
        metadata=metadata,
        binding_data={"BlobTrigger": path, **params},
        detail=detail,
        attempt=attempt,
        tries=tries,
    )


class BlobTriggers:
    """All blob-triggered functions of one host; one scan loop per polling-source function."""

    def __init__(
        self,
        *,
        host_id: str,
        invoker: Invoker,
        spawn: Spawn,
        poison_threshold: int,
        parallelism: int,
        scan_interval: float,
        message_encoding: str,
        event_retry_delay: float = 0.5,
    ) -> None:
        self.host_id = host_id
        self.invoker = invoker
        self.spawn = spawn
        self.threshold = poison_threshold
        self.scan_interval = scan_interval
        self.message_encoding = message_encoding
        self.event_retry_delay = event_retry_delay
        self._slots = asyncio.Semaphore(parallelism)
        self._done: set[tuple[str, str, str, str]] = set()
        self._in_flight: set[tuple[str, str, str]] = set()

    # -- receipts --

    def _receipt_client(self, spec: FunctionSpec, version: BlobVersion) -> Any:
        name = receipt_blob_name(self.host_id, spec.function_id, version.etag, version.container, version.name)
        hosts = storage.blob_service(resolve_connection("AzureWebJobsStorage")).get_container_client(
            storage.HOSTS_CONTAINER
        )
        with contextlib.suppress(ResourceExistsError):
            hosts.create_container()
        return hosts.get_blob_client(name)

    def _read_receipt(self, client: Any) -> dict[str, str] | None:
        try:
            return dict(client.get_blob_properties().metadata or {})
        except ResourceNotFoundError:
            return None

    def _begin_attempt(self, spec: FunctionSpec, version: BlobVersion) -> tuple[Any, int] | None:
        """Count one more try in the receipt before running (like a dequeue count); None when completed."""
        client = self._receipt_client(spec, version)
        receipt = self._read_receipt(client)
        if receipt is None:
            with contextlib.suppress(ResourceExistsError):
                client.upload_blob(b"", overwrite=False, metadata={"Completed": "false", "Attempts": "0"})
            receipt = self._read_receipt(client) or {"Completed": "false", "Attempts": "0"}
        if receipt.get("Completed") == "true":
            return None
        attempt = int(receipt.get("Attempts", "0")) + 1
        client.set_blob_metadata(
            {"Completed": "false", "Attempts": str(attempt), "IncompleteInvocationId": str(uuid.uuid4())}
        )
        return client, attempt

    def _complete(self, client: Any, attempt: int, outcome: str) -> None:
        client.set_blob_metadata({"Completed": "true", "Attempts": str(attempt), "Outcome": outcome})

    def _poison(self, spec: FunctionSpec, version: BlobVersion) -> None:
        message = {
            "Type": "BlobTrigger",
            "FunctionId": spec.function_id,
            "BlobType": version.blob_type,
            "ContainerName": version.container,
            "BlobName": version.name,
            "ETag": version.etag,
        }
        queue = storage.queue_service(resolve_connection("AzureWebJobsStorage")).get_queue_client(
            storage.BLOB_POISON_QUEUE
        )
        with contextlib.suppress(ResourceExistsError):
            queue.create_queue()
        queue.send_message(storage.encode_message(json.dumps(message), self.message_encoding))

    # -- processing --

    async def process(self, spec: FunctionSpec, container: str, name: str, source: str) -> bool | None:
        """One try at the current version of a blob, honouring receipts; None when there was nothing to do."""
        key = (spec.name, container, name)
        if key in self._in_flight:
            return None
        self._in_flight.add(key)
        try:
            async with self._slots:
                return await self._process_once(spec, container, name, source)
        finally:
            self._in_flight.discard(key)

    async def _process_once(self, spec: FunctionSpec, container: str, name: str, source: str) -> bool | None:
        params = BlobPattern.parse(spec.trigger["path"]).match(container, name)
        if params is None:
            return None
        connection = resolve_connection(spec.trigger.get("connection"))
        try:
            version = await asyncio.to_thread(download_blob, connection, container, name)
        except ResourceNotFoundError:
            return None
        done_key = (spec.name, container, name, version.etag)
        if done_key in self._done:
            return None
        begun = await asyncio.to_thread(self._begin_attempt, spec, version)
        if begun is None:
            self._done.add(done_key)
            return None
        receipt, attempt = begun
        detail = f"{source} {container}/{name} etag={version.etag} try={attempt}/{self.threshold}"
        result = await self.invoker.invoke(spec, trigger_input(version, params, detail, attempt, self.threshold))
        if result.succeeded:
            await asyncio.to_thread(self._complete, receipt, attempt, "Succeeded")
            self._done.add(done_key)
        elif attempt >= self.threshold:
            log.error(
                "Blob %s/%s (etag %s) failed %d times for %s: moving it to queue %s",
                container, name, version.etag, attempt, spec.function_id, storage.BLOB_POISON_QUEUE,
            )  # fmt: skip
            await asyncio.to_thread(self._poison, spec, version)
            await asyncio.to_thread(self._complete, receipt, attempt, "Poisoned")
            self._done.add(done_key)
        return result.succeeded

    async def run_by_hand(self, spec: FunctionSpec, blob_path: str) -> None:
        """`/admin/functions/<fn>` with input `container/blob`: one run, no receipts (like the host)."""
        container, _, name = blob_path.strip("/").partition("/")
        params = BlobPattern.parse(spec.trigger["path"]).match(container, name) or {}
        connection = resolve_connection(spec.trigger.get("connection"))
        try:
            version = await asyncio.to_thread(download_blob, connection, container, name)
        except ResourceNotFoundError:
            log.error("Manual run of %s: blob %s does not exist", spec.name, blob_path)
            return
        await self.invoker.invoke(spec, trigger_input(version, params, f"manual {blob_path}", 1, 1))

    async def process_event(self, spec: FunctionSpec, container: str, name: str) -> None:
        """Event Grid source: no later scan retries the blob, so the tries up to the threshold happen here."""
        for _ in range(self.threshold):
            outcome = await self.process(spec, container, name, "EventGrid")
            if outcome is not False:
                return
            await asyncio.sleep(self.event_retry_delay)

    # -- scanning --

    def _list_candidates(self, spec: FunctionSpec) -> list[tuple[str, str]]:
        pattern = BlobPattern.parse(spec.trigger["path"])
        container = storage.blob_service(resolve_connection(spec.trigger.get("connection"))).get_container_client(
            pattern.container
        )
        found: list[tuple[str, str]] = []
        try:
            for blob in container.list_blobs(name_starts_with=pattern.prefix or None):
                if (spec.name, pattern.container, blob.name, blob.etag) in self._done:
                    continue
                if pattern.match(pattern.container, blob.name) is not None:
                    found.append((pattern.container, blob.name))
        except ResourceNotFoundError:
            return []
        return found

    async def scan_loop(self, spec: FunctionSpec) -> None:
        """Poll the container like the scan half of `LogsAndContainerScan` (Azurite has no storage logs)."""
        while True:
            try:
                candidates = await asyncio.to_thread(self._list_candidates, spec)
                for container, name in candidates:
                    if (spec.name, container, name) not in self._in_flight:
                        self.spawn(self.process(spec, container, name, "scan"))
            except Exception:
                log.exception("Blob scan for %s failed; retrying in %.1fs", spec.name, self.scan_interval)
            await asyncio.sleep(self.scan_interval)


def account_name(connection_string: str) -> str:
    return str(storage.blob_service(connection_string).account_name)
