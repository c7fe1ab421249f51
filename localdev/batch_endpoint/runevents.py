"""Azure ML run events on an Event Grid topic, as a workspace's system topic sends them.

For every status change of a batch job, `Microsoft.MachineLearningServices.RunStatusChanged`; when the
job reaches Completed, also `Microsoft.MachineLearningServices.RunCompleted`. Events are in the Event
Grid schema and are published by one background thread: a publish never blocks a job, and a failed one
never fails it (it is retried a few times, then logged and counted). The fault spec can drop events or
hold them back (`events_drop`, `events_delay_seconds`), so a poller's safety net can be tested.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import NAMESPACE_URL, uuid4, uuid5

from localdev.batch_endpoint.config import WORKSPACE_ID
from localdev.batch_endpoint.faults import Faults

RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
# A batch endpoint job is a pipeline job (its scoring runs in a child step), whose run type in Run
# History is azureml.PipelineRun. What Azure puts here for batch jobs is UNVERIFIED.
RUN_TYPE = "azureml.PipelineRun"
DATA_VERSION = "2"
API_VERSION = "2018-01-01"
KEY_HEADER = "aeg-sas-key"

_MAX_BATCH = 100  # events per publish request
_ATTEMPTS = 4  # per request: the first try and three retries
_BACKOFF_SECONDS = 0.5  # doubled after each failed attempt
_TIMEOUT_SECONDS = 10.0
_STOP_SECONDS = 5.0
_REMEMBERED = 2000  # events listed by GET /_emulator/events

log = logging.getLogger("batch_endpoint.events")


def experiment_id(experiment_name: str) -> str:
    """A stable GUID per experiment name, as a workspace gives each experiment one."""
    return str(uuid5(NAMESPACE_URL, f"{WORKSPACE_ID}/experiments/{experiment_name}"))


def run_events(
    *,
    run_id: str,
    status: str,
    event_time: str,
    experiment_name: str,
    tags: Mapping[str, Any],
    properties: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """The events one status change of a job raises, in the order they are published."""
    exp_id = experiment_id(experiment_name)
    data = {
        "experimentId": exp_id,
        "experimentName": experiment_name,
        "runId": run_id,
        "runType": RUN_TYPE,
        "runTags": dict(tags),
        "runProperties": dict(properties),
    }

    def event(event_type: str, event_data: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": str(uuid4()),
            "topic": WORKSPACE_ID,
            "subject": f"experiments/{exp_id}/runs/{run_id}",
            "eventType": event_type,
            "eventTime": event_time,
            "data": event_data,
            "dataVersion": DATA_VERSION,
        }

    events = [event(RUN_STATUS_CHANGED, {**data, "runStatus": status})]
    if status == "Completed":
        events.append(event(RUN_COMPLETED, data))
    return events


def publish_url(topic: str) -> str:
    """The topic endpoint with `api-version` (Event Grid refuses a publish without one)."""
    parts = urlsplit(topic)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(name == "api-version" for name, _ in query):
        query.append(("api-version", API_VERSION))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


@dataclass(order=True)
class _Pending:
    due: float
    seq: int
    event: dict[str, Any] = field(compare=False)


class RunEventPublisher:
    """Queues each job's run events and publishes them from one thread (no-op without a topic)."""

    def __init__(self, topic: str | None, key: str | None, faults: Faults, *, experiment_name: str) -> None:
        self.topic = publish_url(topic) if topic else None
        self._key = key or ""
        self._faults = faults
        self._experiment_name = experiment_name
        self._cond = threading.Condition()
        self._heap: list[_Pending] = []
        self._seq = itertools.count()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._counts = {"published": 0, "dropped": 0, "failed": 0}
        self._events: OrderedDict[str, dict[str, Any]] = OrderedDict()

    @property
    def safe_topic(self) -> str | None:
        if self.topic is None:
            return None
        parts = urlsplit(self.topic)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))

    def start(self) -> None:
        if self.topic is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="run-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Publish what is due now (one attempt each); events still held back are lost, and logged."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(_STOP_SECONDS)
        with self._cond:
            if self._heap:
                log.warning("%d run event(s) were not published before the emulator stopped", len(self._heap))

    def status_changed(
        self, run_id: str, status: str, event_time: str, tags: Mapping[str, Any], properties: Mapping[str, Any]
    ) -> None:
        """Queue the events of one status change; never blocks on the network."""
        if self.topic is None:
            return
        events = run_events(
            run_id=run_id,
            status=status,
            event_time=event_time,
            experiment_name=self._experiment_name,
            tags=tags,
            properties=properties,
        )
        with self._cond:
            for event in events:
                dropped, delay = self._faults.event_fault()
                self._remember(event, "dropped" if dropped else "pending")
                if dropped:
                    self._counts["dropped"] += 1
                    log.info("run event %s %s of %s dropped (fault)", event["eventType"], status, run_id)
                    continue
                heapq.heappush(self._heap, _Pending(time.monotonic() + delay, next(self._seq), event))
            self._cond.notify_all()

    def snapshot(self, run_id: str | None = None) -> dict[str, Any]:
        with self._cond:
            events = [e for e in self._events.values() if run_id is None or e["runId"] == run_id]
            return {"topic": self.safe_topic, "pending": len(self._heap), **self._counts, "events": events}

    # ---- the publishing thread -----------------------------------------------------------------------

    def _remember(self, event: dict[str, Any], outcome: str) -> None:
        self._events[event["id"]] = {
            "id": event["id"],
            "eventType": event["eventType"],
            "runId": event["data"]["runId"],
            "runStatus": event["data"].get("runStatus"),
            "eventTime": event["eventTime"],
            "outcome": outcome,
        }
        while len(self._events) > _REMEMBERED:
            self._events.popitem(last=False)

    def _next_batch(self) -> list[dict[str, Any]] | None:
        """The events due now (waiting until some are); None once stopping with nothing due."""
        with self._cond:
            while True:
                now = time.monotonic()
                if self._heap and self._heap[0].due <= now:
                    break
                if self._stopping.is_set():
                    return None
                self._cond.wait(self._heap[0].due - now if self._heap else None)
            batch: list[dict[str, Any]] = []
            while self._heap and self._heap[0].due <= now and len(batch) < _MAX_BATCH:
                batch.append(heapq.heappop(self._heap).event)
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            outcome = "published" if self._deliver(batch) else "failed"
            with self._cond:
                self._counts[outcome] += len(batch)
                for event in batch:
                    if event["id"] in self._events:
                        self._events[event["id"]]["outcome"] = outcome

    def _deliver(self, batch: list[dict[str, Any]]) -> bool:
        body = json.dumps(batch).encode()
        problem = ""
        attempts = 1 if self._stopping.is_set() else _ATTEMPTS
        for attempt in range(attempts):
            retryable = True
            try:
                self._post(body)
                return True
            except urllib.error.HTTPError as exc:
                detail = exc.read(300).decode(errors="replace")
                problem = f"HTTP {exc.code}: {detail}"
                retryable = exc.code in (408, 429) or exc.code >= 500
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if not retryable or attempt == attempts - 1 or self._stopping.wait(_BACKOFF_SECONDS * 2**attempt):
                break
        log.warning("could not publish %d run event(s) to %s: %s", len(batch), self.safe_topic, problem)
        return False

    def _post(self, body: bytes) -> None:
        if self.topic is None:
            return
        request = urllib.request.Request(
            self.topic,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", KEY_HEADER: self._key},
        )
        with urllib.request.urlopen(request, timeout=_TIMEOUT_SECONDS) as response:
            response.read()
