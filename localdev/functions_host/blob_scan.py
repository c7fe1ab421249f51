"""Polling blob triggers: an incremental container scan, after the WebJobs SDK's hybrid polling strategy.

Each poll lists ONE page of the container and resumes from that page's continuation token on the next
poll; a sweep runs from the first page to the last. The host lists 10,000 blobs per poll, shared by the
containers it watches; so does this one. A listed blob is a candidate only if its LastModified is at or
after the watermark W, the newest timestamp an earlier finished sweep saw (inclusive: storage timestamps
have one-second precision, and receipts tell two versions of the same second apart). A multi-page sweep
ignores timestamps after its own start S, because a write behind the name cursor can be older than what a
later page shows; a complete one-page listing has no such gap (Azure/azure-sdk-for-net PR #62764).

Memory holds the scan state and the versions still being tried, never a list of everything seen. The
watermark survives restarts in `azure-webjobs-hosts/blobscaninfo/<hostId>/<account>/<container>/scanInfo`
(`{"LatestScan": ...}`, one millisecond early, as the host writes it) and is never stored past the oldest
version still being tried: this host has no internal blob-trigger queue, so after a crash the next start
rescans that version and its receipt says how many tries it has had.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

log = logging.getLogger("functions_host")

SCAN_BUDGET = 10_000  # blobs listed per poll, divided among the watched containers (the host's budget)
SCAN_INFO_DIRECTORY = "blobscaninfo"
NEVER = datetime.min.replace(tzinfo=UTC)
CHECKPOINT_OVERLAP = timedelta(milliseconds=1)


@dataclass(frozen=True)
class ListedBlob:
    name: str
    etag: str
    last_modified: datetime


@dataclass
class SweepState:
    """The host's ContainerScanInfo: W, H, S and the listing position."""

    watermark: datetime = NEVER  # W: LastSweepCycleLatestModified
    sweep_latest: datetime = NEVER  # H: CurrentSweepCycleLatestModified
    sweep_started: datetime = NEVER  # S: PollingStartTime
    continuation: str | None = None

    def take_page(
        self, page: list[ListedBlob], incoming: str | None, outgoing: str | None, started: datetime
    ) -> list[ListedBlob]:
        """One page's transition; returns the candidates. `started` is when this poll began listing."""
        incoming, outgoing = incoming or None, outgoing or None  # "" is an end marker too (issue #61660)
        if incoming is None:
            self.sweep_started, self.sweep_latest = started, NEVER
        complete = incoming is None and outgoing is None
        candidates = []
        for blob in page:
            eligible = complete or blob.last_modified <= self.sweep_started
            if eligible and blob.last_modified > self.sweep_latest:
                self.sweep_latest = blob.last_modified
            if eligible and blob.last_modified >= self.watermark:
                candidates.append(blob)
        self.continuation = outgoing
        if outgoing is None and self.sweep_latest > self.watermark:
            self.watermark = self.sweep_latest
        return candidates


def scan_info_blob_name(host_id: str, account: str, container: str) -> str:
    return f"{SCAN_INFO_DIRECTORY}/{host_id}/{account}/{container}/scanInfo"


class ContainerScanner:
    """One watched container: its sweep state, one page per poll, and the stored watermark."""

    def __init__(self, *, container: Any, checkpoint: Any, prefix: str, page_size: int) -> None:
        self.container = container  # azure.storage.blob ContainerClient of the watched container
        self.checkpoint = checkpoint  # BlobClient of the scanInfo blob in azure-webjobs-hosts
        self.prefix = prefix
        self.page_size = page_size
        self.state = SweepState()
        self._stored: datetime | None = None

    def load(self) -> None:
        """The stored watermark, if any (a missing one means: consider every blob, as on a first start)."""
        try:
            doc = json.loads(self.checkpoint.download_blob().readall())
            self.state.watermark = datetime.fromisoformat(doc["LatestScan"])
            self._stored = self.state.watermark
        except ResourceNotFoundError:
            self.state.watermark = NEVER
        except (ValueError, KeyError, TypeError):
            log.warning("Ignoring an unreadable blob scan checkpoint %s", self.checkpoint.blob_name)
            self.state.watermark = NEVER

    def poll(self) -> list[ListedBlob]:
        """List the next page; the candidates among it (none when the container does not exist yet)."""
        incoming = self.state.continuation
        started = datetime.now(UTC)
        pages = self.container.list_blobs(
            name_starts_with=self.prefix or None, results_per_page=self.page_size
        ).by_page(continuation_token=incoming)
        try:
            page = [ListedBlob(b.name, b.etag, b.last_modified) for b in next(pages, [])]
        except ResourceNotFoundError:
            self.state.continuation = None
            return []
        return self.state.take_page(page, incoming, pages.continuation_token, started)

    def store(self, oldest_unfinished: datetime | None) -> None:
        """Write the watermark (held back to the oldest version still being tried) when it moved; best effort,
        like the host: a failed write only means more rescanning after a restart."""
        value = self.state.watermark
        if oldest_unfinished is not None and oldest_unfinished < value:
            value = oldest_unfinished
        if value in {NEVER, self._stored}:
            return
        text = json.dumps({"LatestScan": (value - CHECKPOINT_OVERLAP).isoformat()})
        try:
            self.checkpoint.upload_blob(text.encode(), overwrite=True)
            self._stored = value
        except AzureError as exc:
            log.warning("Could not store the blob scan checkpoint %s: %s", self.checkpoint.blob_name, exc)
