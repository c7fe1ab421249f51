"""Functions dev host, HTTP side: routes, auth levels and keys, admin API, Event Grid trigger webhook."""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from azure.core.credentials import AzureKeyCredential
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridPublisherClient
from azure.storage.blob import BlobServiceClient

from localdev.azurite import Azurite
from localdev.eventgrid.launcher import start_eventgrid
from localdev.functions_host.keys import SYSTEM_KEY_NAMES, KeysFile, load_or_create_keys
from tests.integration.functions_host_support import (
    BLOBS_SYSTEM_KEY,
    EVENTGRID_SYSTEM_KEY,
    FUNCTION_KEY,
    MASTER_KEY,
    ToyApp,
    make_app,
    running_host,
    unique,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, azurite: Azurite) -> Iterator[tuple[ToyApp, str]]:
    tmp = tmp_path_factory.mktemp("httphost")
    settings = {
        "MANUAL_QUEUE": unique("manualq"),
        "MANUAL_CONTAINER": unique("manualc"),
        "AzureWebJobs.disabled_fn.Disabled": "true",
    }
    app = make_app(tmp, "httpapp", azurite, settings)
    app.env["MANUAL_CONTAINER"] = settings["MANUAL_CONTAINER"]
    with running_host(app, tmp / "host.log", host_id=f"httptest-{uuid.uuid4().hex[:6]}") as (_, url):
        yield app, url


def test_function_level_auth(host: tuple[ToyApp, str]) -> None:
    _, url = host
    assert requests.get(f"{url}/api/items/42").status_code == 401
    assert requests.get(f"{url}/api/items/42?code=wrong").status_code == 401
    ok = requests.get(f"{url}/api/items/42?code={FUNCTION_KEY}&q=x")
    assert ok.status_code == 200
    assert ok.json() == {"id": 42, "q": "x"}
    assert ok.headers["x-toy"] == "1"
    assert ok.headers["content-type"].startswith("application/json")
    assert requests.get(f"{url}/api/items/7", headers={"x-functions-key": FUNCTION_KEY}).status_code == 200
    assert requests.get(f"{url}/api/items/7", headers={"x-functions-key": MASTER_KEY}).status_code == 200


def test_admin_level_needs_master_key(host: tuple[ToyApp, str]) -> None:
    _, url = host
    assert requests.get(f"{url}/api/admin-only", params={"code": FUNCTION_KEY}).status_code == 401
    answer = requests.get(f"{url}/api/admin-only", params={"code": MASTER_KEY})
    assert answer.status_code == 200
    assert answer.text == "admin ok"


def test_routes_methods_and_errors(host: tuple[ToyApp, str]) -> None:
    _, url = host
    named = requests.get(f"{url}/api/items/abc")
    assert named.status_code == 200
    assert named.text == "named abc"
    assert requests.get(f"{url}/api/items/4x2").status_code == 404  # neither int nor alpha
    assert requests.get(f"{url}/api/nowhere").status_code == 404
    assert requests.get(f"{url}/items/42?code={FUNCTION_KEY}").status_code == 404  # routePrefix is required
    assert requests.post(f"{url}/api/items/42?code={FUNCTION_KEY}").status_code == 404  # GET only
    echo = requests.post(f"{url}/api/echo", data=b"ping")
    assert (echo.status_code, echo.content) == (201, b"ping")
    assert requests.get(f"{url}/api/boom").status_code == 500
    assert requests.get(f"{url}/api/disabled-fn").status_code == 404
    assert requests.get(f"{url}/admin/host/status").json()["state"] == "Running"


def test_admin_functions_listing(host: tuple[ToyApp, str]) -> None:
    _, url = host
    assert requests.get(f"{url}/admin/functions").status_code == 401
    listing = requests.get(f"{url}/admin/functions", headers={"x-functions-key": MASTER_KEY}).json()
    by_name = {f["name"]: f for f in listing}
    assert by_name["get_item"]["trigger"] == "httpTrigger"
    assert by_name["disabled_fn"]["isDisabled"] is True
    assert {b["type"] for b in by_name["get_item"]["bindings"]} == {"httpTrigger", "http"}


def test_run_non_http_functions_by_hand(host: tuple[ToyApp, str], azurite: Azurite) -> None:
    app, url = host
    admin = {"x-functions-key": MASTER_KEY}
    assert requests.post(f"{url}/admin/functions/manual_timer", json={"input": ""}).status_code == 401
    assert requests.post(f"{url}/admin/functions/manual_timer", json={"input": ""}, headers=admin).status_code == 202
    wait_for(lambda: app.records("manual_timer"))

    assert requests.post(f"{url}/admin/functions/manual_queue", json={"input": "hi"}, headers=admin).status_code == 202
    assert wait_for(lambda: app.records("manual_queue"))[0]["body"] == "hi"

    container = app.env["MANUAL_CONTAINER"]
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(container).upload_blob(
        "x.txt", b"by hand"
    )
    answer = requests.post(f"{url}/admin/functions/manual_blob", json={"input": f"{container}/x.txt"}, headers=admin)
    assert answer.status_code == 202
    [blob] = wait_for(lambda: app.records("manual_blob"))
    assert blob == {**blob, "name": f"{container}/x.txt", "body": "by hand"}

    assert requests.post(f"{url}/admin/functions/get_item", json={"input": ""}, headers=admin).status_code == 400
    assert requests.post(f"{url}/admin/functions/nope", json={"input": ""}, headers=admin).status_code == 404


def test_event_grid_trigger_webhook(host: tuple[ToyApp, str]) -> None:
    app, url = host
    hook = f"{url}/runtime/webhooks/eventgrid?functionName=on_event&code={EVENTGRID_SYSTEM_KEY}"
    handshake = requests.post(
        hook,
        json=[
            {
                "id": "1",
                "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                "data": {"validationCode": "abc"},
            }
        ],
        headers={"aeg-event-type": "SubscriptionValidation"},
    )
    assert (handshake.status_code, handshake.json()) == (200, {"validationResponse": "abc"})
    assert app.records("on_event") == []

    options = requests.options(hook, headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert options.status_code == 200
    assert options.headers["webhook-allowed-origin"] == "eventgrid.azure.net"

    eg_event = {
        "id": "eg-1",
        "subject": "jobs/j1",
        "eventType": "Contoso.Done",
        "eventTime": "2026-11-21T23:42:55Z",
        "dataVersion": "1.0",
        "data": {"n": 1},
    }
    cloud_event = {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "/jobs",
        "type": "Contoso.Done",
        "subject": "jobs/j2",
        "time": "2026-11-21T23:42:55Z",
        "data": {"n": 2},
    }
    assert requests.post(hook, json=[eg_event], headers={"aeg-event-type": "Notification"}).status_code == 200
    assert requests.post(hook, json=[cloud_event]).status_code == 200
    seen = {r["id"]: r for r in app.records("on_event")}
    assert seen["eg-1"]["kind"] == "EventGridEvent"
    assert seen["eg-1"]["data"] == {"n": 1}
    assert seen["ce-1"]["kind"] == "CloudEvent"
    assert seen["ce-1"]["subject"] == "jobs/j2"
    unknown = f"{url}/runtime/webhooks/eventgrid?functionName=nope&code={EVENTGRID_SYSTEM_KEY}"
    assert requests.post(unknown, json=[eg_event]).status_code == 404


def test_the_event_grid_webhook_needs_its_system_key_or_the_master_key(host: tuple[ToyApp, str]) -> None:
    app, url = host
    hook = f"{url}/runtime/webhooks/eventgrid?functionName=on_event"
    event = {
        "id": "keyed-1",
        "subject": "s",
        "eventType": "Contoso.Done",
        "eventTime": "2026-11-21T23:42:55Z",
        "dataVersion": "1.0",
        "data": {},
    }
    validation = [{"id": "v", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": {}}]
    for wrong in ({}, {"code": "nope"}, {"code": FUNCTION_KEY}, {"code": BLOBS_SYSTEM_KEY}):
        assert requests.post(hook, params=wrong, json=[event]).status_code == 401, wrong
        assert requests.post(hook, params=wrong, json=validation).status_code == 401, wrong
        assert requests.options(hook, params=wrong).status_code == 401, wrong
    assert "keyed-1" not in {r["id"] for r in app.records("on_event")}
    assert requests.post(hook, params={"code": MASTER_KEY}, json=[event]).status_code == 200
    assert requests.post(hook, headers={"x-functions-key": EVENTGRID_SYSTEM_KEY}, json=[event]).status_code == 200
    assert [r["id"] for r in app.records("on_event")].count("keyed-1") == 2


def test_event_grid_delivers_through_a_subscription_url_carrying_the_system_key(
    host: tuple[ToyApp, str], tmp_path: Path
) -> None:
    """What a stack that subscribes the dev host to the Event Grid emulator does: the key rides in the
    subscription URL, which reaches the emulator through its environment, never its command line."""
    app, url = host
    hook = f"{url}/runtime/webhooks/eventgrid?functionName=on_event&code={EVENTGRID_SYSTEM_KEY}"
    topic_key = "dGVzdC10b3BpYy1rZXk="
    service, endpoint = start_eventgrid(
        key=topic_key,
        log_path=tmp_path / "eventgrid.log",
        events_log=tmp_path / "events.jsonl",
        subscriptions=[f"devhost={hook};types=Contoso.Delivered"],
        retry_scale=0.01,
        state_dir=tmp_path / "state",
    )
    try:
        event_id = f"delivered-{uuid.uuid4().hex[:8]}"
        client = EventGridPublisherClient(endpoint, AzureKeyCredential(topic_key))
        client.send([CloudEvent(source="/tests", type="Contoso.Delivered", data={"n": 3}, id=event_id)])
        [delivered] = wait_for(lambda: [r for r in app.records("on_event") if r["id"] == event_id])
        assert (delivered["kind"], delivered["data"]) == ("CloudEvent", {"n": 3})
        command_line = Path(f"/proc/{service.pid}/cmdline").read_bytes().decode(errors="replace")
        assert "localdev.eventgrid" in command_line
        assert EVENTGRID_SYSTEM_KEY not in command_line
        assert topic_key not in command_line
    finally:
        service.stop()


def test_a_new_keys_file_has_a_system_key_for_each_extension_webhook(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    keys, what = load_or_create_keys(path)
    assert what is KeysFile.CREATED
    assert set(keys.system_keys) == set(SYSTEM_KEY_NAMES)
    assert len({keys.master_key, *keys.function_keys.values(), *keys.system_keys.values()}) == 4  # all different
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_keys(path) == (keys, KeysFile.READ)


def test_a_keys_file_from_before_system_keys_gets_them_added_and_keeps_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"masterKey": "m", "functionKeys": {"default": "f"}, "systemKeys": {"x": "y"}}))
    keys, what = load_or_create_keys(path)
    assert what is KeysFile.UPDATED
    assert (keys.master_key, keys.function_keys) == ("m", {"default": "f"})
    assert set(keys.system_keys) == {"x", *SYSTEM_KEY_NAMES}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_keys(path) == (keys, KeysFile.READ)  # written back: the same keys next start
