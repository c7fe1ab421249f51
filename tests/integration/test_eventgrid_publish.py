"""Publishing to the Event Grid emulator with the real azure-eventgrid SDK, and the requests
Event Grid rejects (status code, error body, nothing logged)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.credentials import AzureKeyCredential, AzureSasCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient, generate_sas

from localdev.procs import REPO_ROOT
from tests.integration.eventgrid_support import TOPIC_KEY, Emulator, EmulatorRunner

pytestmark = pytest.mark.integration

CE_BATCH = "application/cloudevents-batch+json; charset=utf-8"
JSON = "application/json; charset=utf-8"
API = "?api-version=2018-01-01"


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorRunner]:
    runner = EmulatorRunner(tmp_path_factory.mktemp("eventgrid-publish"))
    yield runner
    runner.stop_all()


@pytest.fixture(scope="module")
def ce_topic(runner: EmulatorRunner) -> Emulator:
    return runner.start(name="ce")


@pytest.fixture(scope="module")
def eg_topic(runner: EmulatorRunner) -> Emulator:
    return runner.start(name="eg", input_schema="eventgrid")


def send_capturing(endpoint: str, credential: Any, events: list[Any]) -> list[Any]:
    """Send with the real SDK and return the JSON body it put on the wire (its raw_request_hook)."""
    bodies: list[str] = []
    client = EventGridPublisherClient(endpoint, credential)
    client.send(events, raw_request_hook=lambda request: bodies.append(request.http_request.body))
    assert len(bodies) == 1
    return json.loads(bodies[0])


def new_lines(topic: Emulator, before: int) -> list[dict[str, Any]]:
    return topic.logged_events()[before:]


def test_cloudevents_with_key_are_logged_as_sent(ce_topic: Emulator) -> None:
    before = len(ce_topic.logged_events())
    events = [
        CloudEvent(
            source="/dropscore/jobs",
            type="DropScore.JobCompleted",
            subject="/blobServices/default/containers/incoming/blobs/a.csv",
            data={"jobId": "j1", "output": {"rows": 3, "url": "http://x/predictions/a.csv"}, "ünï": "çödé"},
        ),
        CloudEvent(source="/dropscore/jobs", type="DropScore.JobFailed", data=b"\x00\x01binary"),
    ]
    # The SDK serialises a list by the kind of its first item, so dicts go in their own send.
    dicts = [
        {
            "id": "dict-1",
            "source": "/dropscore/jobs",
            "type": "DropScore.InputRejected",
            "specversion": "1.0",
            "data": {"error": {"code": "EmptyFile", "message": "no rows"}},
            "comexampleext": "x",
        },
    ]
    sent = send_capturing(ce_topic.endpoint, AzureKeyCredential(TOPIC_KEY), events)
    sent += send_capturing(ce_topic.endpoint, AzureKeyCredential(TOPIC_KEY), dicts)
    logged = new_lines(ce_topic, before)
    assert [line["event"] for line in logged] == sent
    assert sent[1]["data_base64"] == base64.b64encode(b"\x00\x01binary").decode()
    for line in logged:
        assert set(line) == {"receivedAt", "event"}
        received = datetime.fromisoformat(line["receivedAt"].replace("Z", "+00:00"))
        assert abs((datetime.now(UTC) - received).total_seconds()) < 60


def test_eventgrid_events_with_key_are_logged_as_sent(eg_topic: Emulator) -> None:
    before = len(eg_topic.logged_events())
    events = [
        EventGridEvent(
            subject="jobs/j1", event_type="DropScore.JobSubmitted", data={"jobId": "j1"}, data_version="1.0"
        ),
        EventGridEvent(subject="jobs/j2", event_type="DropScore.JobFailed", data=[1, 2, "three"], data_version=""),
    ]
    sent = send_capturing(eg_topic.endpoint, AzureKeyCredential(TOPIC_KEY), events)
    assert [line["event"] for line in new_lines(eg_topic, before)] == sent


def test_sas_token_from_generate_sas_is_accepted(ce_topic: Emulator) -> None:
    before = len(ce_topic.logged_events())
    token = generate_sas(ce_topic.endpoint, TOPIC_KEY, datetime.now(UTC) + timedelta(minutes=10))
    sent = send_capturing(
        ce_topic.endpoint,
        AzureSasCredential(token),
        [CloudEvent(source="/sas", type="DropScore.JobSubmitted", data={"n": 1})],
    )
    assert [line["event"] for line in new_lines(ce_topic, before)] == sent


@pytest.mark.parametrize(
    "credential",
    [
        pytest.param(lambda endpoint: AzureKeyCredential("not-the-key"), id="wrong-key"),
        pytest.param(
            lambda endpoint: AzureSasCredential(
                generate_sas(endpoint, TOPIC_KEY, datetime.now(UTC) - timedelta(minutes=1))
            ),
            id="expired-sas",
        ),
        pytest.param(
            lambda endpoint: AzureSasCredential(
                generate_sas(
                    endpoint,
                    base64.b64encode(b"another key").decode(),
                    datetime.now(UTC) + timedelta(hours=1),
                )
            ),
            id="sas-signed-with-other-key",
        ),
        pytest.param(
            lambda endpoint: AzureSasCredential(
                generate_sas(
                    endpoint.replace("/api/events", "/other"),
                    TOPIC_KEY,
                    datetime.now(UTC) + timedelta(hours=1),
                )
            ),
            id="sas-for-other-resource",
        ),
    ],
)
def test_bad_credentials_raise_client_authentication_error(ce_topic: Emulator, credential: Any) -> None:
    before = ce_topic.events_log.read_bytes()
    client = EventGridPublisherClient(ce_topic.endpoint, credential(ce_topic.endpoint))
    with pytest.raises(ClientAuthenticationError) as info:
        client.send([CloudEvent(source="/x", type="DropScore.JobSubmitted", data={})])
    assert info.value.status_code == 401
    assert ce_topic.events_log.read_bytes() == before


def test_wrong_schema_for_the_topic_is_a_400_from_the_sdk(ce_topic: Emulator, eg_topic: Emulator) -> None:
    ce_before, eg_before = ce_topic.events_log.read_bytes(), eg_topic.events_log.read_bytes()
    eg_event = EventGridEvent(subject="s", event_type="T", data={}, data_version="1")
    with pytest.raises(HttpResponseError) as ce_error:
        EventGridPublisherClient(ce_topic.endpoint, AzureKeyCredential(TOPIC_KEY)).send([eg_event])
    assert ce_error.value.status_code == 400
    assert "CloudEventV10" in str(ce_error.value)
    with pytest.raises(HttpResponseError) as eg_error:
        EventGridPublisherClient(eg_topic.endpoint, AzureKeyCredential(TOPIC_KEY)).send(
            [CloudEvent(source="/x", type="T", data={})]
        )
    assert eg_error.value.status_code == 400
    assert "'EventGridEvent' schema" in str(eg_error.value)
    assert ce_topic.events_log.read_bytes() == ce_before
    assert eg_topic.events_log.read_bytes() == eg_before


def ce(**overrides: Any) -> dict[str, Any]:
    event = {"id": "1", "source": "/x", "type": "DropScore.JobSubmitted", "specversion": "1.0", "data": {}}
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


def eg(**overrides: Any) -> dict[str, Any]:
    event = {
        "id": "1",
        "subject": "s",
        "eventType": "T",
        "eventTime": "2026-01-01T00:00:00Z",
        "data": {},
        "dataVersion": "1",
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


def body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


# A string of this many characters makes an event (or a batch) just over 1 MB.
OVER_1MB = 1024 * 1024 + 10
THIRD_MB = 400 * 1024

BAD_REQUESTS = [
    # (id, topic, headers, body, status, error code, text in the message)
    ("malformed-json", "ce", {"Content-Type": CE_BATCH}, b'[{"id": "1",', 400, "BadRequest", "parsing"),
    ("not-utf8", "ce", {"Content-Type": CE_BATCH}, b"[\xff\xfe]", 400, "BadRequest", "UTF-8"),
    ("text-plain", "ce", {"Content-Type": "text/plain"}, body([ce()]), 400, "BadRequest", "text/plain"),
    ("no-content-type", "eg", {}, body([eg()]), 400, "BadRequest", "(none)"),
    (
        "json-array-to-ce-topic",
        "ce",
        {"Content-Type": JSON},
        body([eg()]),
        400,
        "BadRequest",
        "CloudEventV10",
    ),
    ("ce-to-eg-topic", "eg", {"Content-Type": CE_BATCH}, body([ce()]), 400, "BadRequest", "EventGridEvent"),
    (
        "ce-props-as-json",
        "eg",
        {"Content-Type": JSON},
        body([ce()]),
        400,
        "BadRequest",
        "unexpected property",
    ),
    ("eg-object-not-array", "eg", {"Content-Type": JSON}, body(eg()), 400, "BadRequest", "StartArray"),
    ("batch-not-array", "ce", {"Content-Type": CE_BATCH}, body(ce()), 400, "BadRequest", "JSON array"),
    ("empty-batch", "ce", {"Content-Type": CE_BATCH}, body([]), 400, "BadRequest", "no events"),
    (
        "ce-missing-source",
        "ce",
        {"Content-Type": CE_BATCH},
        body([ce(source=None)]),
        400,
        "BadRequest",
        "'source'",
    ),
    ("ce-missing-id", "ce", {"Content-Type": CE_BATCH}, body([ce(id=None)]), 400, "BadRequest", "'id'"),
    ("ce-missing-type", "ce", {"Content-Type": CE_BATCH}, body([ce(type=None)]), 400, "BadRequest", "'type'"),
    (
        "ce-spec-0.3",
        "ce",
        {"Content-Type": CE_BATCH},
        body([ce(specversion="0.3")]),
        400,
        "BadRequest",
        "0.3",
    ),
    (
        "ce-bad-time",
        "ce",
        {"Content-Type": CE_BATCH},
        body([ce(time="yesterday")]),
        400,
        "BadRequest",
        "'time'",
    ),
    (
        "ce-second-bad",
        "ce",
        {"Content-Type": CE_BATCH},
        body([ce(), ce(type=None)]),
        400,
        "BadRequest",
        "index 1",
    ),
    ("eg-missing-data", "eg", {"Content-Type": JSON}, body([eg(data=None)]), 400, "BadRequest", "'data'"),
    (
        "eg-missing-time",
        "eg",
        {"Content-Type": JSON},
        body([eg(eventTime=None)]),
        400,
        "BadRequest",
        "'eventTime'",
    ),
    (
        "event-over-1mb",
        "ce",
        {"Content-Type": CE_BATCH},
        body([ce(data="x" * OVER_1MB)]),
        413,
        "RequestEntityTooLarge",
        "maximum size of an event",
    ),
    (
        "batch-over-1mb",
        "ce",
        {"Content-Type": CE_BATCH},
        body([ce(id=str(i), data="x" * THIRD_MB) for i in range(3)]),
        413,
        "RequestEntityTooLarge",
        "publish request",
    ),
    (
        "no-key",
        "ce",
        {"Content-Type": CE_BATCH, "aeg-sas-key": None},
        body([ce()]),
        401,
        "Unauthorized",
        "aeg-sas-key",
    ),
    (
        "bad-sas",
        "ce",
        {"Content-Type": CE_BATCH, "aeg-sas-key": None, "aeg-sas-token": "r=x&e=y&s=z"},
        body([ce()]),
        401,
        "Unauthorized",
        "SAS",
    ),
]


@pytest.mark.parametrize(
    ("topic_name", "headers", "payload", "status", "code", "text"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_REQUESTS],
)
def test_bad_requests_get_event_grid_errors_and_log_nothing(
    ce_topic: Emulator,
    eg_topic: Emulator,
    topic_name: str,
    headers: dict[str, str | None],
    payload: bytes,
    status: int,
    code: str,
    text: str,
) -> None:
    topic = ce_topic if topic_name == "ce" else eg_topic
    sent_headers = {"aeg-sas-key": TOPIC_KEY, **headers}
    before = topic.events_log.read_bytes() if topic.events_log.exists() else b""
    response = requests.post(
        topic.endpoint + API,
        data=payload,
        headers={k: v for k, v in sent_headers.items() if v is not None},
        timeout=10,
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert text in error["message"]
    assert "to our forums for assistance" in error["message"]
    if status != 401:
        assert error["details"][0]["message"] == error["message"]
    assert (topic.events_log.read_bytes() if topic.events_log.exists() else b"") == before


def test_missing_api_version_is_400(ce_topic: Emulator) -> None:
    before = ce_topic.events_log.read_bytes()
    response = requests.post(
        ce_topic.endpoint,
        data=body([ce()]),
        headers={"Content-Type": CE_BATCH, "aeg-sas-key": TOPIC_KEY},
        timeout=10,
    )
    assert response.status_code == 400
    assert "api-version" in response.json()["error"]["message"]
    assert ce_topic.events_log.read_bytes() == before


def test_single_structured_cloudevent_and_batch_just_under_the_limit_are_accepted(ce_topic: Emulator) -> None:
    before = len(ce_topic.logged_events())
    single = ce(id="single", data={"k": "v"})
    response = requests.post(
        ce_topic.endpoint + API,
        data=body(single),
        headers={"Content-Type": "application/cloudevents+json", "aeg-sas-key": TOPIC_KEY},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    near_limit = [ce(id=str(i), data="x" * (300 * 1024)) for i in range(3)]
    response = requests.post(
        ce_topic.endpoint + API,
        data=body(near_limit),
        headers={"Content-Type": CE_BATCH, "aeg-sas-key": TOPIC_KEY},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert [line["event"] for line in new_lines(ce_topic, before)] == [single, *near_limit]


def test_tail_prints_logged_events_filtered_by_type(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    records = [
        {"receivedAt": "2026-01-01T00:00:00.000000Z", "event": ce(id="a", type="DropScore.JobCompleted")},
        {"receivedAt": "2026-01-01T00:00:01.000000Z", "event": eg(id="b", eventType="DropScore.JobFailed")},
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    tail = [sys.executable, "-m", "localdev.eventgrid", "tail", "--log", str(log)]
    everything = subprocess.run(tail, capture_output=True, text=True, cwd=REPO_ROOT, check=True, timeout=30).stdout
    assert "DropScore.JobCompleted  id=a" in everything
    assert "DropScore.JobFailed  id=b" in everything
    only_failed = subprocess.run(
        [*tail, "--type", "dropscore.jobfailed", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=True,
        timeout=30,
    ).stdout
    assert [json.loads(line) for line in only_failed.splitlines()] == [records[1]]


def test_tail_follow_prints_events_published_later(ce_topic: Emulator) -> None:
    argv = [sys.executable, "-m", "localdev.eventgrid", "tail", "--log", str(ce_topic.events_log)]
    process = subprocess.Popen(
        [*argv, "--follow", "--type", "DropScore.FollowMe", "--json"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        client = EventGridPublisherClient(ce_topic.endpoint, AzureKeyCredential(TOPIC_KEY))
        client.send([CloudEvent(source="/x", type="DropScore.FollowMe", data={"n": 7}, id="follow-1")])
        assert process.stdout is not None
        line = json.loads(process.stdout.readline())
        assert line["event"]["id"] == "follow-1"
    finally:
        process.terminate()
        process.wait(timeout=10)
