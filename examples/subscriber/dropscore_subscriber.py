"""What the example subscriber does with DropScore events; kept apart from function_app.py so it
can be tested without the Functions host."""

from __future__ import annotations

import csv
import io
import logging
import math
import os
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

ReadBlob = Callable[[Mapping[str, Any]], str]


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


def handle(event_type: str, data: Any, read_blob: ReadBlob = read_predictions) -> str | None:
    """React to one DropScore event; other types are ignored (subscriptions may be broader)."""
    if not isinstance(data, Mapping):
        log.warning("ignored %s: its data is not a JSON object", event_type)
        return None
    if event_type == "DropScore.JobCompleted":
        return on_job_completed(data, read_blob)
    if event_type == "DropScore.JobFailed":
        return on_job_failed(data)
    if event_type == "DropScore.InputRejected":
        return on_input_rejected(data)
    log.debug("ignored event type %s", event_type)
    return None
