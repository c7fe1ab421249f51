"""Webhook delivery from the Event Grid emulator to a real local HTTP endpoint: handshakes,
filters, retries, dead-lettering and surviving a crash."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.core.credentials import AzureKeyCredential
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient

# cloudevents 2.x keeps the 1.x API (`cloudevents.http`) under `cloudevents.v1`.
from cloudevents.v1.http import from_http

from tests.integration.eventgrid_support import TOPIC_KEY, Emulator, EmulatorRunner, Received, Webhook, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def runner(tmp_path: Any) -> Iterator[EmulatorRunner]:
    runner = EmulatorRunner(tmp_path)
    yield runner
    runner.stop_all()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def publish_ce(emulator: Emulator, *events: CloudEvent) -> None:
    EventGridPublisherClient(emulator.endpoint, AzureKeyCredential(TOPIC_KEY)).send(list(events))


def job_event(
    kind: str = "DropScore.JobCompleted",
    subject: str = "/blobServices/default/containers/incoming/blobs/a.csv",
    **data: Any,
) -> CloudEvent:
    return CloudEvent(source="/dropscore", type=kind, subject=subject, data={"jobId": "j1", **data})


def parse_cloudevent(received: Received) -> Any:
    """The CloudEvents SDK must accept every CloudEvents-mode delivery."""
    return from_http(received.headers, received.body)


def test_cloudevents_subscriber_gets_options_handshake_then_event(runner: EmulatorRunner, webhook: Webhook) -> None:
    emulator = runner.start([f"jobs={webhook.url}/hook"])
    event = job_event(rows=3)
    publish_ce(emulator, event)
    [delivery] = wait_for(webhook.notifications, what="delivery")
    first = webhook.received[0]
    assert first.method == "OPTIONS"
    assert first.headers["webhook-request-origin"] == "eventgrid.azure.net"
    assert webhook.received.index(delivery) > 0
    assert delivery.headers["aeg-event-type"] == "Notification"
    assert delivery.headers["aeg-subscription-name"] == "JOBS"
    assert delivery.headers["aeg-delivery-count"] == "0"
    assert delivery.headers["content-type"].startswith("application/cloudevents+json")
    parsed = parse_cloudevent(delivery)
    assert parsed["id"] == event.id
    assert parsed["type"] == "DropScore.JobCompleted"
    assert parsed["subject"] == event.subject
    assert parsed.data == {"jobId": "j1", "rows": 3}
    assert emulator.logged_events()[0]["event"] == delivery.json()
    wait_for(lambda: emulator.finished("Delivered"), what="delivered state")
    assert emulator.deliveries()["pending"] == []


def test_eventgrid_schema_subscriber_gets_validation_then_events_and_cloudevents_conversion(
    runner: EmulatorRunner, webhook: Webhook
) -> None:
    emulator = runner.start(
        [f"egsub={webhook.url}/eg", f"cesub={webhook.url}/ce;schema=cloudevents"], input_schema="eventgrid"
    )
    event = EventGridEvent(
        subject="jobs/j1", event_type="DropScore.JobFailed", data={"error": {"code": "X"}}, data_version="1.0"
    )
    EventGridPublisherClient(emulator.endpoint, AzureKeyCredential(TOPIC_KEY)).send([event])
    [eg_delivery] = wait_for(lambda: webhook.notifications("/eg"), what="EG delivery")
    [ce_delivery] = wait_for(lambda: webhook.notifications("/ce"), what="CE delivery")

    validation = next(r for r in webhook.received if r.path == "/eg")
    assert validation.headers["aeg-event-type"] == "SubscriptionValidation"
    [validation_event] = validation.json()
    assert validation_event["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent"
    assert validation_event["data"]["validationCode"]
    assert validation_event["data"]["validationUrl"].startswith(emulator.base)
    assert validation.at < eg_delivery.at

    [delivered] = eg_delivery.json()
    assert eg_delivery.headers["aeg-subscription-name"] == "EGSUB"
    assert eg_delivery.headers["aeg-data-version"] == "1.0"
    assert delivered["id"] == str(event.id)
    assert delivered["data"] == {"error": {"code": "X"}}
    assert delivered["metadataVersion"] == "1"
    assert delivered["topic"].endswith("/providers/Microsoft.EventGrid/topics/local")

    converted = parse_cloudevent(ce_delivery)
    assert converted["id"] == str(event.id)
    assert converted["type"] == "DropScore.JobFailed"
    assert converted["source"] == delivered["topic"]
    assert converted["subject"] == "jobs/j1"
    assert converted.data == {"error": {"code": "X"}}
    assert any(r.method == "OPTIONS" and r.path == "/ce" for r in webhook.received)


def test_no_delivery_before_handshake_then_manual_validation_url(runner: EmulatorRunner) -> None:
    hook = Webhook(handshake=False)
    try:
        emulator = runner.start([f"late={hook.url}/x;schema=eventgrid"], input_schema="eventgrid")
        validation = wait_for(lambda: [r for r in hook.received if r.path == "/x"], what="validation request")
        code = validation[0].json()[0]["data"]["validationCode"]
        url = validation[0].json()[0]["data"]["validationUrl"]
        EventGridPublisherClient(emulator.endpoint, AzureKeyCredential(TOPIC_KEY)).send(
            [EventGridEvent(subject="s", event_type="T", data={}, data_version="1")]
        )
        time.sleep(0.5)
        assert hook.notifications() == []
        assert [d["state"] for d in emulator.deliveries()["pending"]] == ["AwaitingValidation"]
        assert requests.get(url.replace(code, "wrong"), timeout=5).status_code == 400
        assert requests.get(url, timeout=5).status_code == 200
        wait_for(hook.notifications, what="delivery after manual validation")
    finally:
        hook.close()


def test_filters_by_type_and_subject(runner: EmulatorRunner, webhook: Webhook) -> None:
    emulator = runner.start(
        [
            f"completed={webhook.url}/types;types=DropScore.JobCompleted,DropScore.JobFailed",
            f"incoming={webhook.url}/begins;subject-begins=/blobServices/default/containers/incoming/",
            f"csv={webhook.url}/ends;subject-ends=.CSV",
        ]
    )
    publish_ce(
        emulator,
        job_event("DropScore.JobCompleted", "/blobServices/default/containers/incoming/blobs/a.csv"),
        job_event("DropScore.JobSubmitted", "/blobServices/default/containers/other/blobs/b.csv"),
        job_event("dropscore.jobfailed", "/blobServices/default/containers/incoming/blobs/c.txt"),
        job_event("DropScore.InputRejected", "/blobServices/default/containers/other/blobs/d.json"),
    )
    wait_for(lambda: len(webhook.notifications()) == 6, what="six deliveries")
    time.sleep(0.3)

    def subjects(path: str) -> list[str]:
        return sorted(json.loads(r.body)["subject"].rsplit("/", 1)[1] for r in webhook.notifications(path))

    assert subjects("/types") == ["a.csv", "c.txt"]
    assert subjects("/begins") == ["a.csv", "c.txt"]
    assert subjects("/ends") == ["a.csv", "b.csv"]
    assert len(webhook.notifications()) == 6


def test_retries_5xx_and_dropped_connections_on_schedule_then_delivers(runner: EmulatorRunner) -> None:
    hook = Webhook(script=[500, "close", 502])
    try:
        emulator = runner.start([f"flaky={hook.url}/h"])
        publish_ce(emulator, job_event())
        attempts = wait_for(lambda: (n := hook.notifications()) and len(n) == 4 and n, what="4 attempts")
        assert [a.headers["aeg-delivery-count"] for a in attempts] == ["0", "1", "2", "3"]
        assert len({a.body for a in attempts}) == 1
        gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
        # 10 s, 30 s, 1 min at --retry-scale 0.01
        assert gaps[0] >= 0.09
        assert gaps[1] >= 0.28
        assert gaps[2] >= 0.58
        [done] = wait_for(lambda: emulator.finished("Delivered"), what="delivered")
        assert done["deliveryAttempts"] == 4
        for attempt in attempts:
            parse_cloudevent(attempt)
    finally:
        hook.close()


def test_400_is_dead_lettered_at_once(runner: EmulatorRunner) -> None:
    hook = Webhook(script=[400])
    try:
        emulator = runner.start([f"strict={hook.url}/h"])
        event = job_event()
        publish_ce(emulator, event)
        [record] = wait_for(emulator.dead_letters, what="dead letter")
        time.sleep(0.5)
        assert len(hook.notifications()) == 1
        assert record["id"] == event.id
        assert record["type"] == "DropScore.JobCompleted"
        assert record["deadletterreason"] == "UndeliverableDueToClientError"
        assert record["deliveryattempts"] == 1
        assert record["lastdeliveryoutcome"] == "BadRequest"
        assert record["publishtime"]
        assert record["lastdeliveryattempttime"]
        [path] = list(emulator.dead_letter_dir.rglob("*.json"))
        assert path.relative_to(emulator.dead_letter_dir).parts[:2] == ("local", "STRICT")
        assert emulator.deliveries()["pending"] == []
        assert list((emulator.state_dir / "pending").glob("*.json")) == []
    finally:
        hook.close()


def test_dead_lettered_after_max_attempts_in_eventgrid_layout(runner: EmulatorRunner) -> None:
    hook = Webhook(default_status=500)
    try:
        emulator = runner.start([f"down={hook.url}/h;max-attempts=3"], input_schema="eventgrid")
        EventGridPublisherClient(emulator.endpoint, AzureKeyCredential(TOPIC_KEY)).send(
            [EventGridEvent(subject="s", event_type="DropScore.JobCompleted", data={"n": 1}, data_version="1")]
        )
        [record] = wait_for(emulator.dead_letters, what="dead letter")
        assert len(hook.notifications()) == 3
        assert record["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
        assert record["deliveryAttempts"] == 3
        assert record["lastDeliveryOutcome"] == "GenericError"
        assert record["lastHttpStatusCode"] == 500
        assert record["data"] == {"n": 1}
        assert {"publishTime", "lastDeliveryAttemptTime", "eventType", "subject"} <= set(record)
        time.sleep(0.3)
        assert len(hook.notifications()) == 3
    finally:
        hook.close()


def test_webhook_that_times_out_is_retried_then_dead_lettered_while_emulator_keeps_serving(
    runner: EmulatorRunner,
) -> None:
    hook = Webhook(default_status="timeout", hang_seconds=1.5)
    try:
        emulator = runner.start([f"slow={hook.url}/h;max-attempts=2"])
        started = time.monotonic()
        publish_ce(emulator, job_event())
        wait_for(hook.notifications, what="first attempt")
        # The topic still accepts and answers while a delivery hangs.
        publish_ce(emulator, job_event("DropScore.JobSubmitted"))
        assert emulator.health()["status"] == "ok"
        records = wait_for(lambda: len(emulator.dead_letters()) == 2 and emulator.dead_letters(), 15, "dead letters")
        assert time.monotonic() - started >= 1.0  # the 1 s timeout floor was waited for
        assert {r["lastdeliveryoutcome"] for r in records} <= {"TimedOut"}
        assert {r["deliveryattempts"] for r in records} == {2}
    finally:
        hook.close()


def test_event_ttl_dead_letters_an_undeliverable_event(runner: EmulatorRunner) -> None:
    hook = Webhook(default_status=503)
    try:
        # ttl 1 minute at --retry-scale 0.01 = 0.6 s; 503 retries wait at least 30 s x 0.01
        emulator = runner.start([f"busy={hook.url}/h;ttl=1"])
        publish_ce(emulator, job_event())
        [record] = wait_for(emulator.dead_letters, what="dead letter")
        assert record["deadletterreason"] == "TimeToLiveExceeded"
        assert record["lastdeliveryoutcome"] == "Busy"
        assert 1 <= record["deliveryattempts"] <= 3
    finally:
        hook.close()


def test_without_dead_letter_dir_a_rejected_event_is_dropped_loudly(runner: EmulatorRunner) -> None:
    hook = Webhook(script=[403])
    try:
        emulator = runner.start([f"deny={hook.url}/h"], dead_letter=False)
        publish_ce(emulator, job_event())
        [dropped] = wait_for(lambda: emulator.finished("Dropped"), what="dropped record")
        assert dropped["lastDeliveryOutcome"] == "Forbidden"
        assert "DROPPED" in wait_for(lambda: "DROPPED" in emulator.output.read_text() and emulator.output.read_text())
        assert TOPIC_KEY not in emulator.output.read_text()
    finally:
        hook.close()


def test_crash_during_retries_loses_nothing(runner: EmulatorRunner) -> None:
    hook = Webhook(default_status=500)
    try:
        # --retry-scale 0.1: the first retry is 1 s after the first attempt, time enough to crash.
        first = runner.start([f"resilient={hook.url}/h"], name="crash", retry_scale=0.1)
        event = job_event(rows=42)
        publish_ce(first, event)
        pending_dir = first.state_dir / "pending"

        def first_attempt_recorded() -> bool:
            files = list(pending_dir.glob("*.json"))
            return len(files) == 1 and json.loads(files[0].read_text())["attempts"] == 1

        wait_for(first_attempt_recorded, what="first failed attempt on disk")
        os.killpg(first.service.pid, signal.SIGKILL)
        first.service.process.wait(timeout=10)
        assert len(hook.notifications()) == 1
        assert len(list(pending_dir.glob("*.json"))) == 1

        hook.default_status = 200
        second = runner.start([f"resilient={hook.url}/h"], name="crash", retry_scale=0.1)
        wait_for(lambda: second.finished("Delivered"), what="delivery after restart")
        attempts = hook.notifications()
        assert len(attempts) == 2
        assert attempts[1].headers["aeg-delivery-count"] == "1"
        assert parse_cloudevent(attempts[1])["id"] == event.id
        assert len([r for r in hook.received if r.method == "OPTIONS"]) == 2
        assert list((second.state_dir / "pending").glob("*.json")) == []
        assert [line["event"]["id"] for line in second.logged_events()] == [event.id]
    finally:
        hook.close()
