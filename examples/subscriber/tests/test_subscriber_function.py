"""The example subscriber, called with real azure.functions events decoded from our event payloads."""

from __future__ import annotations

import json
import logging
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


def contract_event(event_type: str) -> dict[str, Any]:
    """The contract's example payload for `event_type` (docs/events/examples), checked against its schema."""
    event = json.loads((EVENTS_DIR / "examples" / f"{event_type}.json").read_text())
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
