"""Functions dev host, blob triggers: receipts, restarts, poison queue, Event Grid source webhook."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
import requests
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings
from azure.storage.queue import QueueClient

from localdev.azurite import Azurite
from localdev.functions_host.blob_trigger import receipt_blob_name
from tests.integration.functions_host_support import (
    BLOBS_SYSTEM_KEY,
    EVENTGRID_SYSTEM_KEY,
    FUNCTION_KEY,
    MASTER_KEY,
    ToyApp,
    make_app,
    running_host,
    unb64,
    unique,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOST_ID = f"blobtest-{uuid.uuid4().hex[:6]}"
SCAN = 0.3


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, azurite: Azurite) -> ToyApp:
    settings = {
        "CSV_CONTAINER": unique("csv"),
        "POISON_CONTAINER": unique("poison"),
        "EG_CONTAINER": unique("eg"),
        "OUT_QUEUE": unique("out"),
    }
    toy = make_app(tmp_path_factory.mktemp("blobhost"), "blobapp", azurite, settings)
    toy.env.update(settings)
    return toy


@pytest.fixture
def blobs(azurite: Azurite) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(azurite.connection_string)


def upload(container: ContainerClient, name: str, data: bytes, **kwargs: object) -> str:
    """Upload and return the new ETag (quoted, as the SDK and the host report it)."""
    return str(container.upload_blob(name, data, **kwargs).get_blob_properties().etag)


def names(app: ToyApp, fn: str) -> list[str]:
    return [r["name"] for r in app.records(fn)]


def test_receipts_fire_once_per_etag_and_survive_restart(
    app: ToyApp, blobs: BlobServiceClient, azurite: Azurite, tmp_path: Path
) -> None:
    container_name = app.env["CSV_CONTAINER"]
    container = blobs.create_container(container_name)
    with running_host(app, tmp_path / "host1.log", host_id=HOST_ID, blob_scan_interval=SCAN):
        first = upload(
            container,
            "a.csv",
            b"x,y\n1,2\n",
            content_settings=ContentSettings(content_type="text/csv"),
            metadata={"origin": "test"},
        )
        container.upload_blob("ignored.txt", b"not a csv")
        wait_for(lambda: app.records("on_csv"))
        time.sleep(SCAN * 5)
        [seen] = app.records("on_csv")
        assert seen["name"] == f"{container_name}/a.csv"
        assert seen["body"] == "x,y\n1,2\n"
        assert seen["length"] == 8
        assert seen["etag"] == first
        assert seen["content_type"] == "text/csv"
        assert seen["metadata"] == {"origin": "test"}

        receipt = blobs.get_blob_client(
            "azure-webjobs-hosts",
            receipt_blob_name(HOST_ID, "Host.Functions.on_csv", first, container_name, "a.csv"),
        )
        assert receipt.get_blob_properties().metadata["Completed"] == "true"
        out = QueueClient.from_connection_string(azurite.connection_string, app.env["OUT_QUEUE"])
        assert [unb64(m.content) for m in out.peek_messages(max_messages=5)] == [f"seen {container_name}/a.csv"]

        second = upload(container, "a.csv", b"x,y\n3,4\n", overwrite=True)
        wait_for(lambda: len(app.records("on_csv")) == 2)
        assert app.records("on_csv")[1]["etag"] == second != first

    with running_host(app, tmp_path / "host2.log", host_id=HOST_ID, blob_scan_interval=SCAN):
        time.sleep(SCAN * 6)
        assert len(app.records("on_csv")) == 2, "a processed version fired again after a restart"
        container.upload_blob("b.csv", b"z\n")
        wait_for(lambda: f"{container_name}/b.csv" in names(app, "on_csv"))
    assert len(app.records("on_csv")) == 3


def test_failing_blob_goes_to_poison_queue_after_threshold(
    app: ToyApp, blobs: BlobServiceClient, azurite: Azurite, tmp_path: Path
) -> None:
    container_name = app.env["POISON_CONTAINER"]
    uploaded = upload(blobs.create_container(container_name), "bad.txt", b"oops")
    poison = QueueClient.from_connection_string(azurite.connection_string, "webjobs-blobtrigger-poison")
    with running_host(app, tmp_path / "host.log", host_id=HOST_ID, blob_scan_interval=SCAN):

        def poison_messages() -> list[dict[str, str]]:
            try:
                found = [json.loads(unb64(m.content)) for m in poison.peek_messages(max_messages=32)]
            except Exception:
                return []
            return [m for m in found if m["ContainerName"] == container_name]

        [message] = wait_for(poison_messages, timeout=20)
        time.sleep(SCAN * 5)
        assert names(app, "always_fails") == [f"{container_name}/bad.txt"] * 3
    assert message["FunctionId"] == "Host.Functions.always_fails"
    assert message["BlobType"] == "BlockBlob"
    assert message["BlobName"] == "bad.txt"
    assert message["ETag"] == uploaded
    log = (tmp_path / "host.log").read_text()
    assert log.count("Executed 'Functions.always_fails' (Failed") == 3
    assert "RuntimeError: cannot handle" in log


def blob_created(url: str, etag: str) -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
        "subject": "/blobServices/default/containers/c/blobs/b",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": "2026-11-21T23:42:55Z",
        "dataVersion": "",
        "metadataVersion": "1",
        "data": {"api": "PutBlob", "eTag": etag, "blobType": "BlockBlob", "url": url},
    }


def test_event_grid_source_blob_webhook(
    app: ToyApp, blobs: BlobServiceClient, azurite: Azurite, tmp_path: Path
) -> None:
    container_name = app.env["EG_CONTAINER"]
    container = blobs.create_container(container_name)
    one = upload(container, "one.txt", b"first")
    two = upload(container, "two.txt", b"second")
    with running_host(app, tmp_path / "host.log", host_id=HOST_ID, blob_scan_interval=SCAN) as (_, url):
        hook = f"{url}/runtime/webhooks/blobs?functionName=Host.Functions.eg_blob&code={BLOBS_SYSTEM_KEY}"
        validation = [
            {
                "id": "v1",
                "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                "data": {"validationCode": "code-123"},
            }
        ]
        answer = requests.post(hook, json=validation, headers={"aeg-event-type": "SubscriptionValidation"})
        assert answer.status_code == 200
        assert answer.json() == {"validationResponse": "code-123"}

        time.sleep(SCAN * 4)
        assert app.records("eg_blob") == [], "an EventGrid-source trigger must not be polled"

        azure_url = f"https://devstoreaccount1.blob.core.windows.net/{container_name}/one.txt"
        event = blob_created(azure_url, one)
        response = requests.post(hook, json=[event], headers={"aeg-event-type": "Notification"})
        assert response.status_code == 202
        wait_for(lambda: app.records("eg_blob"))

        cloud_event = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "type": "Microsoft.Storage.BlobCreated",
            "source": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
            "subject": f"/blobServices/default/containers/{container_name}/blobs/two.txt",
            "time": "2026-11-21T23:42:55Z",
            "data": {"api": "PutBlob", "eTag": two, "url": f"{azurite.blob_endpoint}/{container_name}/two.txt"},
        }
        response = requests.post(
            hook, data=json.dumps([cloud_event]), headers={"content-type": "application/cloudevents-batch+json"}
        )
        assert response.status_code == 202
        wait_for(lambda: len(app.records("eg_blob")) == 2)

        # At-least-once delivery: the same event again finds the receipt and does not invoke.
        assert requests.post(hook, json=[event]).status_code == 202
        time.sleep(1.0)
        assert sorted(r["body"] for r in app.records("eg_blob")) == ["first", "second"]

        blobs_hook = f"{url}/runtime/webhooks/blobs?code={BLOBS_SYSTEM_KEY}&functionName=Host.Functions."
        assert requests.post(blobs_hook + "on_csv", json=[event]).status_code == 400
        assert requests.post(blobs_hook + "nope", json=[event]).status_code == 404

        # Like Azure: the blobs_extension system key or the master key, nothing else.
        keyless = f"{url}/runtime/webhooks/blobs?functionName=Host.Functions.eg_blob"
        for wrong in ({}, {"code": "nope"}, {"code": FUNCTION_KEY}, {"code": EVENTGRID_SYSTEM_KEY}):
            assert requests.post(keyless, params=wrong, json=[event]).status_code == 401, wrong
            assert requests.options(keyless, params=wrong).status_code == 401, wrong
        assert requests.post(keyless, params={"code": MASTER_KEY}, json=[event]).status_code == 202
        assert requests.post(keyless, headers={"x-functions-key": BLOBS_SYSTEM_KEY}, json=[event]).status_code == 202
