"""Functions dev host, SDK-type blob bindings: the function gets a BlobClient and the host never reads the content.

The first tests run the toy app under the dev host with the real `azurefunctions-extensions-bindings-blob`
converting the host's model binding data, and count, with a byte meter between host and Azurite, what the
host read. The last one feeds the dev host's model binding data to the real Python 3.13 worker runtime
(azure-functions-runtime) with dropscore's own function_app.py, so both sides of the contract are the real
packages (skipped without python3.13).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from localdev.azurite import Azurite
from localdev.functions_host.meter import ByteMeter, with_blob_endpoint
from localdev.functions_host.sdk_bindings import blob_binding_data
from tests.integration.functions_host_support import (
    BLOBS_SYSTEM_KEY,
    MASTER_KEY,
    ToyApp,
    make_app,
    running_host,
    unique,
    wait_for,
)
from tests.integration.test_worker_indexing import ROOT, RUNTIME_PREAMBLE, find_python313, worker_venv

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIG = 8 * 1024 * 1024  # big enough that reading it could never hide in the host's own storage chatter
CHATTER_LIMIT = 512 * 1024  # listing pages, receipts, one HEAD and the function's 4-byte read


@pytest.fixture
def meter(azurite: Azurite) -> Iterator[ByteMeter]:
    with ByteMeter(azurite.blob_port) as running:
        yield running


@pytest.fixture
def app(tmp_path: Path, azurite: Azurite, meter: ByteMeter) -> ToyApp:
    settings = {"SDK_CONTAINER": unique("sdk"), "STREAM_CONTAINER": unique("stream"), "SDK_EG_CONTAINER": unique("eg")}
    toy = make_app(tmp_path, "sdkblobapp", azurite, settings)
    # The environment wins over local.settings.json: all of the host's blob traffic goes through the meter.
    toy.env.update(settings, AzureWebJobsStorage=with_blob_endpoint(azurite.connection_string, meter.port))
    return toy


def upload(blobs: BlobServiceClient, container: str, name: str, data: bytes) -> str:
    client = blobs.get_container_client(container)
    if not client.exists():
        client.create_container()
    return str(client.upload_blob(name, data, overwrite=True).get_blob_properties().etag)


def test_an_sdk_type_trigger_gets_a_blob_client_and_the_host_never_reads_the_content(
    app: ToyApp, azurite: Azurite, meter: ByteMeter, tmp_path: Path
) -> None:
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)  # uploads bypass the meter
    content = b"abcd" + bytes(BIG - 4)
    with running_host(app, tmp_path / "host.log", host_id=f"sdk-{uuid.uuid4().hex[:6]}") as (_, url):
        described = requests.get(f"{url}/admin/functions/on_sdk_blob", headers={"x-functions-key": MASTER_KEY})
        trigger = described.json()["bindings"][0]
        assert trigger["properties"] == {"SupportsDeferredBinding": True}
        plain = requests.get(f"{url}/admin/functions/on_stream_blob", headers={"x-functions-key": MASTER_KEY})
        assert "properties" not in plain.json()["bindings"][0]

        meter.reset()
        etag = upload(blobs, app.env["SDK_CONTAINER"], "folder/big.bin", content)
        [seen] = wait_for(lambda: app.records("on_sdk_blob"), timeout=30)
        sdk_read, _ = meter.reset()

        upload(blobs, app.env["STREAM_CONTAINER"], "big.bin", content)
        wait_for(lambda: app.records("on_stream_blob"), timeout=30)
        stream_read, _ = meter.reset()

    assert seen["type"] == "azure.storage.blob._blob_client.BlobClient"
    assert (seen["container"], seen["name"]) == (app.env["SDK_CONTAINER"], "folder/big.bin")
    assert (seen["etag"], seen["size"], seen["head"]) == (etag, BIG, "abcd")
    assert sdk_read < CHATTER_LIMIT, f"the host read {sdk_read} bytes for an SDK-type trigger"
    assert stream_read >= BIG, f"an InputStream trigger should download the blob, the host read {stream_read}"
    log = (tmp_path / "host.log").read_text()
    assert "Executed 'Functions.on_sdk_blob' (Succeeded" in log


def test_an_event_grid_source_sdk_trigger_gets_a_blob_client(
    app: ToyApp, azurite: Azurite, meter: ByteMeter, tmp_path: Path
) -> None:
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = app.env["SDK_EG_CONTAINER"]
    etag = upload(blobs, container, "one.csv", b"head,rest\n" + bytes(BIG))
    with running_host(app, tmp_path / "host.log", host_id=f"sdkeg-{uuid.uuid4().hex[:6]}") as (_, url):
        meter.reset()
        event = {
            "id": str(uuid.uuid4()),
            "eventType": "Microsoft.Storage.BlobCreated",
            "subject": f"/blobServices/default/containers/{container}/blobs/one.csv",
            "eventTime": "2026-11-21T23:42:55Z",
            "dataVersion": "",
            "data": {"api": "PutBlob", "eTag": etag, "url": f"{azurite.blob_endpoint}/{container}/one.csv"},
        }
        hook = f"{url}/runtime/webhooks/blobs?functionName=Host.Functions.on_sdk_event&code={BLOBS_SYSTEM_KEY}"
        assert requests.post(hook, json=[event], headers={"aeg-event-type": "Notification"}).status_code == 202
        [seen] = wait_for(lambda: app.records("on_sdk_event"), timeout=30)
        read, _ = meter.reset()
    assert (seen["name"], seen["etag"], seen["head"]) == ("one.csv", etag, "head")
    assert read < CHATTER_LIMIT


DECODE_SCRIPT = (
    RUNTIME_PREAMBLE
    + r"""
class TypedData:  # FunctionRpc.proto TypedData carrying model_binding_data, as the host sends it
    def __init__(self, data): self.model_binding_data = data
    def WhichOneof(self, _): return "model_binding_data"

class ParameterBinding:
    def __init__(self, name, data): self.name, self.data = name, data
    def WhichOneof(self, _): return "data"

registry = Registry()
metadata, _ = loader.process_indexed_function(protos, registry, loader.index_function_app(sys.argv[1]), sys.argv[2])
raw = {m.name: [json.loads(b) for b in m.raw_bindings] for m in metadata}
sent = json.loads(sys.argv[3])
data = types.SimpleNamespace(**{**sent, "content": sent["content"].encode()})
param = registry.get_function(str(uuid.uuid5(uuid.NAMESPACE_OID, "on_input_blob"))).input_types["blob"]
client = meta.from_incoming_proto(
    param.binding_name, ParameterBinding("blob", TypedData(data)), pytype=param.pytype, trigger_metadata=None,
    function_name="on_input_blob", is_deferred_binding=param.deferred_bindings_enabled,
)
properties = client.get_blob_properties()
print(json.dumps({
    "raw": raw["on_input_blob"], "deferred": param.deferred_bindings_enabled,
    "type": type(client).__module__ + "." + type(client).__qualname__,
    "container": client.container_name, "name": client.blob_name, "size": properties.size,
}))
"""
)


@pytest.mark.skipif(find_python313() is None, reason="no python3.13 on this machine: the 3.13 worker cannot run")
def test_the_real_313_worker_builds_dropscores_blob_client_from_the_dev_hosts_binding_data(
    azurite: Azurite, tmp_path: Path
) -> None:
    python = worker_venv(str(find_python313()))
    container = unique("incoming")
    upload(BlobServiceClient.from_connection_string(azurite.connection_string), container, "a b/x.csv", b"x\n1\n")
    sent = blob_binding_data("AzureWebJobsStorage", container, "a b/x.csv")
    as_json = {
        "version": sent.version,
        "source": sent.source,
        "content_type": sent.content_type,
        "content": sent.content.decode(),
    }
    script = tmp_path / "decode.py"
    script.write_text(DECODE_SCRIPT)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "AzureWebJobsStorage": azurite.connection_string}
    result = subprocess.run(
        [str(python), str(script), "function_app.py", str(ROOT), json.dumps(as_json)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    [trigger] = got["raw"]
    assert (trigger["type"], trigger["properties"]) == ("blobTrigger", {"SupportsDeferredBinding": True})
    assert got["deferred"] is True
    assert got["type"] == "azure.storage.blob._blob_client.BlobClient"
    assert (got["container"], got["name"], got["size"]) == (container, "a b/x.csv", 4)
