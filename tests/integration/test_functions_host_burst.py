"""Functions dev host under a burst: queue slots, blob parallelism, the incremental scan and crash recovery."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient

from localdev.azurite import Azurite
from localdev.functions_host.blob_scan import scan_info_blob_name
from localdev.functions_host.blob_trigger import receipt_blob_name
from tests.integration.functions_host_support import ToyApp, b64, make_app, running_host, unique, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCAN = 0.3


@pytest.fixture
def app(tmp_path: Path, azurite: Azurite) -> ToyApp:
    settings = {
        "SLOT_QUEUE": unique("slots"),
        "PARALLEL_CONTAINER": unique("parallel"),
        "SCAN_CONTAINER": unique("scan"),
    }
    toy = make_app(tmp_path, "burstapp", azurite, settings)
    toy.env.update(settings, RELEASE_FILE=str(tmp_path / "release"))
    return toy


@pytest.fixture
def blobs(azurite: Azurite) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(azurite.connection_string)


def most_at_once(records: list[dict[str, Any]]) -> int:
    """The most invocations that were running at the same moment."""
    edges = sorted([(r["started"], 1) for r in records] + [(r["ended"], -1) for r in records])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def release(app: ToyApp) -> None:
    Path(app.env["RELEASE_FILE"]).touch()


def names(app: ToyApp, fn: str) -> list[str]:
    return sorted(r["name"] for r in app.records(fn))


def test_the_queue_trigger_takes_new_messages_as_slots_free_up(app: ToyApp, azurite: Azurite, tmp_path: Path) -> None:
    """batchSize 2, newBatchThreshold 1: a message that holds its slot never holds back the others."""
    queue = QueueClient.from_connection_string(azurite.connection_string, app.env["SLOT_QUEUE"])
    queue.create_queue()
    fast = [f"fast-{i}" for i in range(6)]
    with running_host(app, tmp_path / "host.log", host_id=f"slots-{uuid.uuid4().hex[:6]}"):
        queue.send_message(b64("hold"))
        for body in fast:
            queue.send_message(b64(body))
        # Waiting for a whole batch would stall here until "hold" is released.
        wait_for(lambda: names(app, "on_slot_message") == fast, timeout=20)
        release(app)
        wait_for(lambda: "hold" in names(app, "on_slot_message"), timeout=20)
    peak = most_at_once(app.records("on_slot_message"))
    assert 2 <= peak <= 3, f"batchSize + newBatchThreshold = 3 may run at once, {peak} did"


def test_blob_invocations_run_maxdegreeofparallelism_at_a_time(
    app: ToyApp, blobs: BlobServiceClient, tmp_path: Path
) -> None:
    container = blobs.create_container(app.env["PARALLEL_CONTAINER"])
    uploaded = [f"b-{i}.bin" for i in range(6)]
    with running_host(app, tmp_path / "host.log", host_id=f"par-{uuid.uuid4().hex[:6]}", blob_scan_interval=SCAN):
        for name in uploaded:
            container.upload_blob(name, b"x")
        wait_for(lambda: names(app, "on_parallel_blob") == uploaded, timeout=30)
    assert most_at_once(app.records("on_parallel_blob")) == 2  # host.json maxDegreeOfParallelism


def upload_in_a_later_second(container: ContainerClient, name: str, after: datetime) -> datetime:
    """Upload `name` until storage stamps it later than `after` (LastModified has one-second precision)."""
    stamp = after
    while stamp <= after:
        stamp = container.upload_blob(name, b"x", overwrite=True).get_blob_properties().last_modified
    return stamp


def stored_watermark(blobs: BlobServiceClient, host_id: str, container: str) -> datetime | None:
    client = blobs.get_blob_client("azure-webjobs-hosts", scan_info_blob_name(host_id, "devstoreaccount1", container))
    if not client.exists():
        return None
    return datetime.fromisoformat(json.loads(client.download_blob().readall())["LatestScan"])


def test_the_scan_pages_through_the_container_and_a_restart_skips_what_its_watermark_passed(
    app: ToyApp, blobs: BlobServiceClient, tmp_path: Path
) -> None:
    host_id = f"scan-{uuid.uuid4().hex[:6]}"
    container_name = app.env["SCAN_CONTAINER"]
    container = blobs.create_container(container_name)
    early = [f"a-{i}.txt" for i in range(5)]
    two_per_page = ("--blob-scan-page-size", "2")
    with running_host(app, tmp_path / "host1.log", host_id=host_id, blob_scan_interval=SCAN, extra_args=two_per_page):
        stamps = [container.upload_blob(name, b"x").get_blob_properties().last_modified for name in early]
        wait_for(lambda: names(app, "on_scanned_blob") == early, timeout=30)  # three pages, one per scan
        later = upload_in_a_later_second(container, "m.txt", max(stamps))
        wait_for(lambda: "m.txt" in names(app, "on_scanned_blob"), timeout=30)
        # The stored watermark: the newest LastModified a finished sweep saw, one millisecond early.
        wait_for(lambda: stored_watermark(blobs, host_id, container_name) == later - timedelta(milliseconds=1))

    # Without their receipts, the early versions would run again if anything looked at them again.
    hosts = blobs.get_container_client("azure-webjobs-hosts")
    for name, item in ((n, container.get_blob_client(n).get_blob_properties()) for n in early):
        hosts.delete_blob(receipt_blob_name(host_id, "Host.Functions.on_scanned_blob", item.etag, container_name, name))
    with running_host(app, tmp_path / "host2.log", host_id=host_id, blob_scan_interval=SCAN, extra_args=two_per_page):
        container.upload_blob("z.txt", b"x")  # on the last page: found only after a sweep passed the others
        wait_for(lambda: "z.txt" in names(app, "on_scanned_blob"), timeout=30)
    assert names(app, "on_scanned_blob") == [*early, "m.txt", "z.txt"]


def test_a_version_cut_off_by_a_crash_runs_again_after_the_restart(
    app: ToyApp, blobs: BlobServiceClient, tmp_path: Path
) -> None:
    """No internal queue holds it: the stored watermark stays behind it until it is done."""
    host_id = f"crash-{uuid.uuid4().hex[:6]}"
    container_name = app.env["SCAN_CONTAINER"]
    container = blobs.create_container(container_name)
    with running_host(app, tmp_path / "host1.log", host_id=host_id, blob_scan_interval=SCAN) as (service, _):
        held = container.upload_blob("hold-1.txt", b"x").get_blob_properties()
        wait_for(lambda: names(app, "scan_started") == ["hold-1.txt"], timeout=30)
        upload_in_a_later_second(container, "next.txt", held.last_modified)
        wait_for(lambda: "next.txt" in names(app, "on_scanned_blob"), timeout=30)
        wait_for(lambda: stored_watermark(blobs, host_id, container_name) is not None)
        assert stored_watermark(blobs, host_id, container_name) == held.last_modified - timedelta(milliseconds=1)
        service.process.kill()  # kill -9 while hold-1.txt is running
        service.process.wait(timeout=10)
    release(app)
    with running_host(app, tmp_path / "host2.log", host_id=host_id, blob_scan_interval=SCAN):
        wait_for(lambda: "hold-1.txt" in names(app, "on_scanned_blob"), timeout=30)
    assert names(app, "scan_started") == ["hold-1.txt", "hold-1.txt", "next.txt"]
    receipt = blobs.get_blob_client(
        "azure-webjobs-hosts",
        receipt_blob_name(host_id, "Host.Functions.on_scanned_blob", held.etag, container_name, "hold-1.txt"),
    )
    assert receipt.get_blob_properties().metadata == {"Completed": "true", "Attempts": "2", "Outcome": "Succeeded"}


def test_a_version_uploaded_while_the_previous_one_runs_runs_too(
    app: ToyApp, blobs: BlobServiceClient, tmp_path: Path
) -> None:
    """The scan lists the new version while the old one is being tried; once the watermark passes it, no
    later scan would list it again, so the running try takes it on when it ends."""
    host_id = f"again-{uuid.uuid4().hex[:6]}"
    container_name = app.env["SCAN_CONTAINER"]
    container = blobs.create_container(container_name)
    with running_host(app, tmp_path / "host.log", host_id=host_id, blob_scan_interval=SCAN):
        first = container.upload_blob("hold-2.txt", b"v1").get_blob_properties()
        wait_for(lambda: names(app, "scan_started") == ["hold-2.txt"], timeout=30)
        second = upload_in_a_later_second(container, "hold-2.txt", first.last_modified)
        upload_in_a_later_second(container, "later.txt", second)  # moves the watermark past the new version
        wait_for(lambda: "later.txt" in names(app, "on_scanned_blob"), timeout=30)
        release(app)
        wait_for(lambda: names(app, "on_scanned_blob").count("hold-2.txt") == 2, timeout=30)
    hosts = blobs.get_container_client("azure-webjobs-hosts")
    prefix = f"blobreceipts/{host_id}/Host.Functions.on_scanned_blob/"
    receipts = [b for b in hosts.list_blobs(name_starts_with=prefix, include=["metadata"]) if "hold-2" in b.name]
    assert len(receipts) == 2
    assert all(b.metadata["Completed"] == "true" for b in receipts)
