"""The example subscriber, called with real azure.functions events decoded from our event payloads."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any

import azure.functions as func
import dropscore_subscriber
import jsonschema
import pytest
from azure.functions import meta
from azure.storage.blob import BlobServiceClient

from localdev.azurite import Azurite
from localdev.procs import REPO_ROOT

EVENTS_DIR = REPO_ROOT / "docs" / "events"


def contract_event(event_type: str, variant: str = "") -> dict[str, Any]:
    """The contract's example payload for `event_type` (docs/events/examples; `<type>.<variant>.json` for a
    variant), checked against its schema."""
    event = json.loads((EVENTS_DIR / "examples" / f"{event_type}{'.' + variant if variant else ''}.json").read_text())
    jsonschema.validate(event, json.loads((EVENTS_DIR / f"{event_type}.schema.json").read_text()))
    return event


def as_eventgrid_schema(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": event["id"],
        "subject": event["subject"],
        "eventType": event["type"],
        "eventTime": event["time"],
        "data": event["data"],
        "dataVersion": "1.0",
    }


def decode(payload: dict[str, Any]) -> Any:
    """The object the Functions worker hands to the function, via the real trigger converter."""
    converter = meta.get_binding_registry().get("eventGridTrigger")
    return converter.decode(meta.Datum(json.dumps(payload), "json"), trigger_metadata={})


PREDICTIONS = "id,age,prediction\n1,34,0.25\n2,51,0.75\n3,29,\n4,62,0.5\n"


@pytest.fixture
def predictions_blob(subscriber_azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A predictions CSV in Azurite and the event's `output` pointing at it."""
    service = BlobServiceClient.from_connection_string(subscriber_azurite.connection_string)
    container = service.get_container_client("predictions")
    if not container.exists():
        container.create_container()
    container.upload_blob("batch-7.predictions.csv", PREDICTIONS.encode(), overwrite=True)
    monkeypatch.setenv(dropscore_subscriber.CONNECTION_SETTING, subscriber_azurite.connection_string)
    return {
        "url": f"{subscriber_azurite.blob_endpoint}/predictions/batch-7.predictions.csv",
        "container": "predictions",
        "name": "batch-7.predictions.csv",
        "rows": 4,
    }


def test_app_indexes_one_event_grid_trigger(subscriber_app: ModuleType) -> None:
    [function] = subscriber_app.app.get_functions()
    assert function.get_function_name() == "OnDropScoreEvent"
    assert function.get_trigger().get_binding_name() == "eventGridTrigger"


@pytest.mark.integration
@pytest.mark.parametrize("schema", ["cloudevents", "eventgrid"])
def test_job_completed_reads_predictions_and_logs_summary(
    subscriber_app: ModuleType,
    predictions_blob: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    schema: str,
) -> None:
    event = contract_event("DropScore.JobCompleted")
    event["data"]["output"].update(predictions_blob)
    payload = event if schema == "cloudevents" else as_eventgrid_schema(event)
    decoded = decode(payload)
    assert isinstance(decoded, func.CloudEvent if schema == "cloudevents" else func.EventGridEvent)
    with caplog.at_level(logging.INFO, logger="dropscore.subscriber"):
        subscriber_app.on_dropscore_event(decoded)
    [record] = [r for r in caplog.records if r.name == "dropscore.subscriber"]
    assert record.levelno == logging.INFO
    assert f"job {event['data']['jobId']} completed" in record.getMessage()
    assert "4 rows, prediction 'prediction' min=0.25 mean=0.5 max=0.75" in record.getMessage()


@pytest.mark.integration
def test_job_completed_row_mismatch_is_warned(
    subscriber_app: ModuleType, predictions_blob: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    event = contract_event("DropScore.JobCompleted")
    event["data"]["output"].update({**predictions_blob, "rows": 9})
    with caplog.at_level(logging.INFO, logger="dropscore.subscriber"):
        subscriber_app.on_dropscore_event(decode(event))
    assert any(r.levelno == logging.WARNING and "says 9 rows, the file has 4" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("event_type", "level"),
    [("DropScore.JobFailed", logging.ERROR), ("DropScore.InputRejected", logging.WARNING)],
)
def test_failures_log_the_reason(
    subscriber_app: ModuleType, caplog: pytest.LogCaptureFixture, event_type: str, level: int
) -> None:
    event = contract_event(event_type)
    error = event["data"]["error"]
    with caplog.at_level(logging.INFO, logger="dropscore.subscriber"):
        subscriber_app.on_dropscore_event(decode(event))
    [record] = [r for r in caplog.records if r.name == "dropscore.subscriber"]
    assert record.levelno == level
    assert f"{error['code']}: {error['message']}" in record.getMessage()
    if event_type == "DropScore.InputRejected":
        assert f"{event['data']['input']['container']}/{event['data']['input']['name']} rejected" in record.getMessage()


def test_other_event_types_are_ignored(subscriber_app: ModuleType, caplog: pytest.LogCaptureFixture) -> None:
    event = contract_event("DropScore.JobFailed")
    event["type"] = "DropScore.JobSubmitted"
    with caplog.at_level(logging.DEBUG, logger="dropscore.subscriber"):
        subscriber_app.on_dropscore_event(decode(event))
    assert all(r.levelno < logging.INFO for r in caplog.records if r.name == "dropscore.subscriber")


@pytest.mark.parametrize(
    ("csv_text", "column", "expected"),
    [
        ("a,score\n1,2\n2,4\n", None, "2 rows, prediction 'score' min=2 mean=3 max=4"),
        ("a,label\n1,cat\n2,dog\n3,cat\n", None, "3 rows, prediction 'label' non-numeric (2 distinct values)"),
        ("a,p\n1,1e3\n2,-1\n", "p", "2 rows, prediction 'p' min=-1 mean=499.5 max=1000"),
        ("a,b\n", None, "0 rows, prediction 'b' non-numeric (0 distinct values)"),
        ("a,b\n1,2\n", "missing", "1 rows, no prediction column"),
    ],
)
def test_summaries(csv_text: str, column: str | None, expected: str) -> None:
    assert dropscore_subscriber.summarize_predictions(csv_text, column).describe() == expected


# ---- DropScore.DriftDetected: where a retraining pipeline starts


class Webhook:
    """A local HTTP endpoint standing in for the retraining pipeline's webhook: records each POST."""

    def __init__(self, status: int = 202) -> None:
        self.status = status
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.received.append((dict(self.headers.items()), body))
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/retrain"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def test_drift_detected_without_a_webhook_logs_what_drifted(
    subscriber_app: ModuleType, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(dropscore_subscriber.RETRAIN_SETTING, raising=False)
    event = contract_event("DropScore.DriftDetected")
    with caplog.at_level(logging.INFO, logger="dropscore.subscriber"):
        subscriber_app.on_dropscore_event(decode(event))
    records = [r for r in caplog.records if r.name == "dropscore.subscriber"]
    [warning] = [r for r in records if r.levelno == logging.WARNING]
    drift = event["data"]["drift"]
    assert f"job {event['data']['jobId']} (route default) drifted: {', '.join(drift['driftedFeatures'])}" in (
        warning.getMessage()
    )
    assert f"top {drift['top'][0]['feature']} psi={drift['top'][0]['psi']}" in warning.getMessage()
    assert drift["report"]["name"] in warning.getMessage()
    assert any("RETRAIN_WEBHOOK_URL is not set" in r.getMessage() for r in records)


@pytest.mark.parametrize("schema", ["cloudevents", "eventgrid"])
def test_drift_detected_posts_the_summary_to_the_retraining_webhook(
    subscriber_app: ModuleType, webhook: Webhook, monkeypatch: pytest.MonkeyPatch, schema: str
) -> None:
    monkeypatch.setenv(dropscore_subscriber.RETRAIN_SETTING, webhook.url)
    event = contract_event("DropScore.DriftDetected")
    subscriber_app.on_dropscore_event(decode(event if schema == "cloudevents" else as_eventgrid_schema(event)))
    [(headers, body)] = webhook.received
    assert headers["Idempotency-Key"] == event["id"]
    assert headers["Content-Type"] == "application/json"
    data = event["data"]
    assert body == {
        "reason": "DropScore.DriftDetected",
        "jobId": data["jobId"],
        "route": data["route"],
        "drift": data["drift"],
        "input": {key: data["input"][key] for key in ("container", "name", "etag", "rows")},
        "output": data["output"],
    }


def test_a_webhook_that_fails_fails_the_function_so_event_grid_retries(
    subscriber_app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = Webhook(status=503)
    try:
        monkeypatch.setenv(dropscore_subscriber.RETRAIN_SETTING, hook.url)
        with pytest.raises(OSError, match="503"):
            subscriber_app.on_dropscore_event(decode(contract_event("DropScore.DriftDetected")))
        assert len(hook.received) == 1
    finally:
        hook.close()


def test_only_http_webhooks_are_called(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dropscore_subscriber.RETRAIN_SETTING, "file:///etc/passwd")
    with pytest.raises(ValueError, match="http"):
        dropscore_subscriber.handle("DropScore.DriftDetected", contract_event("DropScore.DriftDetected")["data"])


@pytest.mark.parametrize(("variant", "verdict"), [("", "no_drift"), ("drift", "drift")])
def test_job_completed_says_the_drift_verdict(variant: str, verdict: str) -> None:
    event = contract_event("DropScore.JobCompleted", variant)
    message = dropscore_subscriber.handle(event["type"], event["data"], read_blob=lambda _output: PREDICTIONS)
    assert message is not None
    assert message.endswith(f"; drift verdict {verdict}")


def test_job_completed_without_a_reference_says_nothing_of_drift() -> None:
    event = contract_event("DropScore.JobCompleted")
    event["data"]["drift"] = None
    message = dropscore_subscriber.handle(event["type"], event["data"], read_blob=lambda _output: PREDICTIONS)
    assert message is not None
    assert "drift" not in message
