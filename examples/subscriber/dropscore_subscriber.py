"""What the example subscriber does with DropScore events; kept apart from function_app.py so it
can be tested without the Functions host."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("dropscore.subscriber")

# Locally: a storage connection string (Azurite). In Azure leave it unset: DefaultAzureCredential
# (the Function App's managed identity with Storage Blob Data Reader) reads the blob URL instead.
CONNECTION_SETTING = "PREDICTIONS_STORAGE_CONNECTION"
# The predictions column; by default the first of PREDICTION_COLUMNS present, else the last column.
COLUMN_SETTING = "PREDICTION_COLUMN"
PREDICTION_COLUMNS = ("prediction", "predictions", "score", "predicted")

# Where to start a retraining pipeline when a scored file drifted (DropScore.DriftDetected): a URL that takes a
# JSON POST, e.g. an Azure ML pipeline endpoint behind a Logic App, a GitHub repository_dispatch relay or any
# webhook of yours. Unset: the subscriber only logs what drifted.
RETRAIN_SETTING = "RETRAIN_WEBHOOK_URL"
RETRAIN_TIMEOUT_SECONDS = 10  # Event Grid waits 30 s for an answer

ReadBlob = Callable[[Mapping[str, Any]], str]
# (url, JSON body, headers) -> the HTTP status; raises when the request fails.
PostJson = Callable[[str, Mapping[str, Any], Mapping[str, str]], int]


@dataclass(frozen=True)
class PredictionSummary:
    rows: int
    column: str | None
    numeric: bool
    minimum: float | None = None
    mean: float | None = None
    maximum: float | None = None
    distinct: int = 0

    def describe(self) -> str:
        if self.column is None:
            return f"{self.rows} rows, no prediction column"
        if self.numeric and self.minimum is not None:
            return (
                f"{self.rows} rows, prediction '{self.column}' min={self.minimum:g} "
                f"mean={self.mean:g} max={self.maximum:g}"
            )
        return f"{self.rows} rows, prediction '{self.column}' non-numeric ({self.distinct} distinct values)"


def _prediction_column(header: list[str], wanted: str | None) -> str | None:
    if wanted:
        return wanted if wanted in header else None
    by_lower = {name.lower(): name for name in header}
    for candidate in PREDICTION_COLUMNS:
        if candidate in by_lower:
            return by_lower[candidate]
    return header[-1] if header else None


def _as_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def summarize_predictions(csv_text: str, column: str | None = None) -> PredictionSummary:
    """Row count and min/mean/max of the prediction column (numeric only; blanks ignored)."""
    reader = csv.DictReader(io.StringIO(csv_text))
    rows = list(reader)
    name = _prediction_column(list(reader.fieldnames or []), column)
    if name is None:
        return PredictionSummary(rows=len(rows), column=None, numeric=False)
    values = [row.get(name) or "" for row in rows]
    present = [value for value in values if value.strip()]
    numbers = [number for number in map(_as_float, present) if number is not None]
    if present and len(numbers) == len(present):
        return PredictionSummary(
            rows=len(rows),
            column=name,
            numeric=True,
            minimum=min(numbers),
            mean=sum(numbers) / len(numbers),
            maximum=max(numbers),
            distinct=len(set(numbers)),
        )
    return PredictionSummary(rows=len(rows), column=name, numeric=False, distinct=len(set(present)))


def read_predictions(output: Mapping[str, Any]) -> str:
    """Download the predictions blob named in the event's `output`."""
    from azure.storage.blob import BlobClient, BlobServiceClient

    connection = os.environ.get(CONNECTION_SETTING)
    if connection:
        service = BlobServiceClient.from_connection_string(connection)
        client = service.get_blob_client(output["container"], output["name"])
    else:
        from azure.identity import DefaultAzureCredential

        client = BlobClient.from_blob_url(output["url"], credential=DefaultAzureCredential())
    return client.download_blob(encoding="utf-8-sig").readall()


def on_job_completed(data: Mapping[str, Any], read_blob: ReadBlob = read_predictions) -> str:
    output = data["output"]
    summary = summarize_predictions(read_blob(output), os.environ.get(COLUMN_SETTING) or None)
    message = f"job {data['jobId']} completed: {output['container']}/{output['name']}: {summary.describe()}"
    drift = data.get("drift")
    if isinstance(drift, Mapping):  # null when the route has no drift reference
        message += f"; drift verdict {drift.get('verdict')}"
    log.info(message)
    if isinstance(output.get("rows"), int) and output["rows"] != summary.rows:
        log.warning("job %s: the event says %d rows, the file has %d", data["jobId"], output["rows"], summary.rows)
    return message


def on_job_failed(data: Mapping[str, Any]) -> str:
    error = data.get("error") or {}
    message = (
        f"job {data.get('jobId')} {str(data.get('state', 'Failed')).lower()}: "
        f"{error.get('code', '?')}: {error.get('message', '')}"
    )
    log.error(message)
    return message


def on_input_rejected(data: Mapping[str, Any]) -> str:
    source = data.get("input") or {}
    error = data.get("error") or {}
    message = (
        f"input {source.get('container', '?')}/{source.get('name', '?')} rejected: "
        f"{error.get('code', '?')}: {error.get('message', '')}"
    )
    log.warning(message)
    return message


def post_json(url: str, body: Mapping[str, Any], headers: Mapping[str, str]) -> int:
    """POST `body` as JSON; raises on a network error or an answer that is not 2xx (Event Grid then retries)."""
    if urllib.parse.urlsplit(url).scheme not in {"http", "https"}:
        raise ValueError(f"{RETRAIN_SETTING} must be an http(s) URL")
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=RETRAIN_TIMEOUT_SECONDS) as response:
        return int(response.status)


def retraining_request(data: Mapping[str, Any]) -> dict[str, Any]:
    """What the retraining webhook gets: which job and route drifted, the drift summary (the report's blob
    is named in `drift.report`), the scored file and its predictions."""
    source = data.get("input") or {}
    return {
        "reason": "DropScore.DriftDetected",
        "jobId": data.get("jobId"),
        "route": data.get("route"),
        "drift": data.get("drift"),
        "input": {key: source.get(key) for key in ("container", "name", "etag", "rows")},
        "output": data.get("output"),
    }


def on_drift_detected(data: Mapping[str, Any], post: PostJson = post_json) -> str:
    """Log what drifted; with RETRAIN_WEBHOOK_URL set, ask for a retraining run. The POST carries an
    `Idempotency-Key` (the event's id: job, attempt, type), since Event Grid may deliver the event twice."""
    drift = data.get("drift") or {}
    features = ", ".join(drift.get("driftedFeatures") or []) or "none listed"
    top = ", ".join(f"{item.get('feature')} psi={item.get('psi')}" for item in drift.get("top") or [])
    report = drift.get("report") or {}
    message = (
        f"job {data.get('jobId')} (route {data.get('route')}) drifted: {features} "
        f"(share {drift.get('driftedShare')}; top {top or '-'}); report {report.get('container')}/{report.get('name')}"
    )
    log.warning(message)
    url = os.environ.get(RETRAIN_SETTING, "").strip()
    if not url:
        log.info("%s is not set: no retraining requested for job %s", RETRAIN_SETTING, data.get("jobId"))
        return message
    key = f"{data.get('jobId')}-{data.get('attempt')}-DriftDetected"
    status = post(url, retraining_request(data), {"Idempotency-Key": key})
    log.info("retraining requested for job %s: HTTP %d", data.get("jobId"), status)
    return f"{message}; retraining requested (HTTP {status})"


def handle(
    event_type: str, data: Any, read_blob: ReadBlob = read_predictions, post: PostJson = post_json
) -> str | None:
    """React to one DropScore event; other types are ignored (subscriptions may be broader)."""
    if not isinstance(data, Mapping):
        log.warning("ignored %s: its data is not a JSON object", event_type)
        return None
    if event_type == "DropScore.JobCompleted":
        return on_job_completed(data, read_blob)
    if event_type == "DropScore.DriftDetected":
        return on_drift_detected(data, post)
    if event_type == "DropScore.JobFailed":
        return on_job_failed(data)
    if event_type == "DropScore.InputRejected":
        return on_input_rejected(data)
    log.debug("ignored event type %s", event_type)
    return None
