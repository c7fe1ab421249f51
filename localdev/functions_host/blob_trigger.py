"""Blob trigger: which blob versions run when, how often they are tried, and the poison queue.

The scan (blob_scan.py) finds new versions of polling-source triggers, the blob webhook (server.py) those of
Event Grid-source ones; receipts (blob_receipts.py) record each version's tries; blob_version.py reads a
version and builds what the function gets (the content, or for an SDK type only the blob's name).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

from localdev.functions_host import storage
from localdev.functions_host.blob_receipts import DoneVersions, Receipts, receipt_blob_name
from localdev.functions_host.blob_scan import SCAN_BUDGET, ContainerScanner, ListedBlob, scan_info_blob_name
from localdev.functions_host.blob_version import read_blob, trigger_input
from localdev.functions_host.indexing import FunctionSpec
from localdev.functions_host.invoker import Invoker
from localdev.functions_host.settings import resolve_connection

log = logging.getLogger("functions_host")

__all__ = ["BlobPattern", "BlobTriggers", "account_name", "receipt_blob_name"]
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


class TryOutcome(enum.Enum):
    NOTHING = "nothing to do"  # gone, not matching, or this version is already done
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # tries are left
    POISONED = "poisoned"


class BlobTriggers:
    """All blob-triggered functions of one host; one scan loop per watched container."""

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
        scan_page_size: int | None = None,
        event_retry_delay: float = 0.5,
    ) -> None:
        self.host_id = host_id
        self.receipts = Receipts(host_id, message_encoding)
        self.invoker = invoker
        self.spawn = spawn
        self.threshold = poison_threshold
        self.scan_interval = scan_interval
        self.scan_page_size = scan_page_size
        self.event_retry_delay = event_retry_delay
        # host.json maxDegreeOfParallelism: concurrent invocations of all blob-triggered functions together.
        self._slots = asyncio.Semaphore(parallelism)
        # Versions whose receipt is being read or made ahead of their turn: enough to keep the slots fed,
        # few enough that a burst's receipt calls do not queue in front of the running invocations' own.
        self._preparing = asyncio.Semaphore(2 * parallelism)
        self._done = DoneVersions()
        # (function, container, blob) being tried -> the ETag of the version it is on (None until it read it).
        self._in_flight: dict[tuple[str, str, str], str | None] = {}
        # Blobs that changed (or had an event) while being tried: one more pass once the try is over, since a
        # scan will not list the new version again once the watermark has passed it.
        self._again: set[tuple[str, str, str]] = set()
        # LastModified of each version a scan found and that is still being tried: the stored scan
        # checkpoint never passes them, so a crash cannot lose one.
        self._unfinished: dict[tuple[str, str, str], datetime] = {}
        self.stopping = False

    # -- processing --

    async def process(
        self, spec: FunctionSpec, container: str, name: str, source: str, *, retry_delay: float, etag: str | None = None
    ) -> None:
        """Try the current version of a blob until it succeeds or is poisoned, `retry_delay` between tries.
        `etag`: the version a scan listed, if known. An error in the host's own storage calls (Azurite
        restarting) does not end the tries: the version is tried again after the delay."""
        key = (spec.name, container, name)
        if key in self._in_flight:
            self._again.add(key)
            return
        self._in_flight[key] = etag
        try:
            while not self.stopping:
                try:
                    outcome = await self._try_once(spec, container, name, source)
                except Exception:
                    log.exception("Blob %s/%s for %s: could not be tried; trying again", container, name, spec.name)
                    outcome = TryOutcome.FAILED
                if outcome is TryOutcome.FAILED:
                    await asyncio.sleep(retry_delay)
                elif key in self._again:
                    self._again.discard(key)
                else:
                    return
        finally:
            self._in_flight.pop(key, None)
            self._again.discard(key)
            if not self.stopping:  # a stopping host leaves it owed: the stored checkpoint still covers it
                self._unfinished.pop(key, None)

    async def _try_once(self, spec: FunctionSpec, container: str, name: str, source: str) -> TryOutcome:
        params = BlobPattern.parse(spec.trigger["path"]).match(container, name)
        if params is None:
            return TryOutcome.NOTHING
        connection = resolve_connection(spec.trigger.get("connection"))
        # Like the host's blob trigger queue, maxDegreeOfParallelism bounds invocations, not the receipt work
        # before them; that work runs at most 2 x maxDegreeOfParallelism versions ahead of a free slot.
        async with self._preparing:
            try:
                found = await asyncio.to_thread(read_blob, connection, container, name, with_content=False)
            except ResourceNotFoundError:
                return TryOutcome.NOTHING
            self._in_flight[(spec.name, container, name)] = found.etag
            done_key = (spec.name, container, name, found.etag)
            if done_key in self._done:
                return TryOutcome.NOTHING
            opened = await asyncio.to_thread(self.receipts.open, spec.function_id, found.etag, container, name)
            if opened is None:
                self._done.add(done_key)
                return TryOutcome.NOTHING
            receipt, attempt = opened[0], opened[1] + 1
            await self._slots.acquire()
        try:
            # At its turn the version is read again, as the host does: a changed or deleted blob is not run
            # (a new version has a receipt of its own). The content, if the binding needs it, is read only now.
            try:
                with_content = not spec.is_deferred(spec.trigger)
                version = await asyncio.to_thread(
                    read_blob, connection, container, name, with_content=with_content, etag=found.etag
                )
            except (ResourceNotFoundError, ResourceModifiedError):
                return TryOutcome.NOTHING
            await asyncio.to_thread(self.receipts.count_try, receipt, attempt)
            detail = f"{source} {container}/{name} etag={version.etag} try={attempt}/{self.threshold}"
            bound = trigger_input(spec, version, params, detail, attempt=attempt, tries=self.threshold)
            result = await self.invoker.invoke(spec, bound)
        finally:
            self._slots.release()
        if result.succeeded:
            await asyncio.to_thread(self.receipts.complete, receipt, attempt, "Succeeded")
            self._done.add(done_key)
            return TryOutcome.SUCCEEDED
        if attempt < self.threshold:
            return TryOutcome.FAILED
        log.error(
            "Blob %s/%s (etag %s) failed %d times for %s: moving it to queue %s",
            container, name, version.etag, attempt, spec.function_id, storage.BLOB_POISON_QUEUE,
        )  # fmt: skip
        await asyncio.to_thread(
            self.receipts.poison, spec.function_id, version.blob_type, version.etag, container, version.name
        )
        await asyncio.to_thread(self.receipts.complete, receipt, attempt, "Poisoned")
        self._done.add(done_key)
        return TryOutcome.POISONED

    async def run_by_hand(self, spec: FunctionSpec, blob_path: str) -> None:
        """`/admin/functions/<fn>` with input `container/blob`: one run, no receipts (like the host)."""
        container, _, name = blob_path.strip("/").partition("/")
        params = BlobPattern.parse(spec.trigger["path"]).match(container, name) or {}
        connection = resolve_connection(spec.trigger.get("connection"))
        with_content = not spec.is_deferred(spec.trigger)
        try:
            version = await asyncio.to_thread(read_blob, connection, container, name, with_content=with_content)
        except ResourceNotFoundError:
            log.error("Manual run of %s: blob %s does not exist", spec.name, blob_path)
            return
        await self.invoker.invoke(spec, trigger_input(spec, version, params, f"manual {blob_path}", attempt=1, tries=1))

    async def process_event(self, spec: FunctionSpec, container: str, name: str) -> None:
        """Event Grid source: no later scan retries the blob, so the tries up to the threshold happen here."""
        await self.process(spec, container, name, "EventGrid", retry_delay=self.event_retry_delay)

    # -- scanning --

    def _scanner(self, specs: list[FunctionSpec], containers_watched: int) -> ContainerScanner:
        connection = resolve_connection(specs[0].trigger.get("connection"))
        patterns = [BlobPattern.parse(spec.trigger["path"]) for spec in specs]
        service = storage.blob_service(connection)
        checkpoint_name = scan_info_blob_name(self.host_id, str(service.account_name), patterns[0].container)
        scanner = ContainerScanner(
            container=service.get_container_client(patterns[0].container),
            checkpoint=self.receipts.hosts_container().get_blob_client(checkpoint_name),
            # The host lists the whole container; the prefix all its functions share narrows nothing they need.
            prefix=_common_prefix([p.prefix for p in patterns]),
            page_size=self.scan_page_size or max(1, SCAN_BUDGET // containers_watched),
        )
        scanner.load()
        return scanner

    def _oldest_unfinished(self, container: str, names: set[str]) -> datetime | None:
        stamps = [stamp for (fn, c, _), stamp in self._unfinished.items() if c == container and fn in names]
        return min(stamps, default=None)

    def _dispatch(self, found: ListedBlob, patterns: list[tuple[FunctionSpec, BlobPattern]], container: str) -> None:
        """Start trying a scan candidate for each function whose path it matches, unless that is under way."""
        for spec, pattern in patterns:
            key = (spec.name, container, found.name)
            if (*key, found.etag) in self._done or pattern.match(container, found.name) is None:
                continue
            if key in self._in_flight:
                if self._in_flight[key] != found.etag:
                    self._again.add(key)  # a new version while the old one is tried
                continue
            self._unfinished[key] = min(self._unfinished.get(key, found.last_modified), found.last_modified)
            retry = self.scan_interval
            self.spawn(self.process(spec, container, found.name, "scan", retry_delay=retry, etag=found.etag))

    async def scan_loop(self, specs: list[FunctionSpec], containers_watched: int) -> None:
        """Poll one container for the polling-source functions on it, one listing page per interval."""
        patterns = [(spec, BlobPattern.parse(spec.trigger["path"])) for spec in specs]
        container = patterns[0][1].container
        scanner: ContainerScanner | None = None
        while not self.stopping:
            try:
                if scanner is None:
                    scanner = await asyncio.to_thread(self._scanner, specs, containers_watched)
                for found in await asyncio.to_thread(scanner.poll):
                    self._dispatch(found, patterns, container)
                oldest = self._oldest_unfinished(container, {spec.name for spec in specs})
                await asyncio.to_thread(scanner.store, oldest)
            except Exception:
                log.exception("Blob scan of %s failed; retrying in %.1fs", container, self.scan_interval)
            await asyncio.sleep(self.scan_interval)


def _common_prefix(prefixes: list[str]) -> str:
    shortest = min(prefixes, key=len, default="")
    for index, char in enumerate(shortest):
        if any(p[index] != char for p in prefixes):
            return shortest[:index]
    return shortest


def account_name(connection_string: str) -> str:
    return str(storage.blob_service(connection_string).account_name)
