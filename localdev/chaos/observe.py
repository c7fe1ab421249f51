"""What the stack holds during and after a chaos run: the ledger, the accepted events, Azure ML's jobs,
the blobs and the queues, read from outside the app as an operator would read them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from localdev.chaos.rules import Outcome
from localdev.eventgrid.eventlog import read_records

#: The metadata the app puts on an input it moved, naming the job that moved it (shared/core/completion.py).
MOVED_BY = "dropscorejob"
#: Where the app asks Azure ML to write a job's predictions: <prefix>/<job id>/<attempt>/predictions.csv.
_AML_OUTPUT = re.compile(r"(?:^|/)([0-9a-f]{40})/(\d+)/predictions\.csv$")
POISON_SUFFIX = "-poison"


def _number(value: Any) -> int | None:
    value = getattr(value, "value", value)  # Int64 columns come back as EntityProperty
    return None if value is None else int(value)


@dataclass(frozen=True)
class Record:
    """One ledger row, as the table holds it."""

    job_id: str
    name: str
    etag: str
    state: str
    stage: str
    attempt: int
    code: str = ""
    message: str = ""
    moved_to: str = ""
    not_moved: str = ""
    rows_in: int | None = None
    rows_out: int | None = None
    rows_missing: int | None = None
    events_pending: tuple[str, ...] = ()
    events_published: tuple[str, ...] = ()

    @classmethod
    def from_entity(cls, entity: Any) -> Record:
        return cls(
            job_id=str(entity["PartitionKey"]),
            name=str(entity.get("name", "")),
            etag=str(entity.get("blobEtag", "")),
            state=str(entity.get("state", "")),
            stage=str(entity.get("stage", "")),
            attempt=_number(entity.get("attempt")) or 0,
            code=str(entity.get("errorCode") or ""),
            message=str(entity.get("errorMessage") or ""),
            moved_to=str(entity.get("archiveContainer") or ""),
            not_moved=str(entity.get("inputNotMoved") or ""),
            rows_in=_number(entity.get("rowsIn")),
            rows_out=_number(entity.get("rowsOut")),
            rows_missing=_number(entity.get("rowsMissing")),
            events_pending=tuple(json.loads(entity.get("eventsPending") or "[]")),
            events_published=tuple(json.loads(entity.get("eventsPublished") or "[]")),
        )

    @property
    def done(self) -> bool:
        return self.stage == "Done"

    @property
    def outcome(self) -> Outcome:
        return Outcome(self.state, self.code, self.moved_to, self.not_moved, self.message)


@dataclass(frozen=True)
class AmlJob:
    """A job the batch endpoint emulator holds, tied to the ledger job and attempt its output path names."""

    name: str
    status: str
    job_id: str
    attempt: int
    output_path: str


@dataclass(frozen=True)
class StoredBlob:
    container: str
    name: str
    etag: str
    moved_by: str  # the job id in the app's move metadata, "" when there is none


@dataclass
class Snapshot:
    records: list[Record]
    events: list[dict[str, Any]]  # every accepted event, duplicates included, oldest first
    aml_jobs: list[AmlJob]
    unattributed_aml_jobs: list[str]  # emulator jobs whose output path names no ledger job
    blobs: dict[str, dict[str, StoredBlob]]  # container -> name -> blob
    poison: dict[str, int]  # poison queue -> messages in it
    active: int  # rows of the active index
    #: (partition, job id) of every row of the job list (JOB_LIST_TABLE): "all" and "state-<State>"
    listed: set[tuple[str, str]] = field(default_factory=set)
    received: dict[str, list[float]] = field(default_factory=dict)  # event id -> when each copy was accepted


class StackReader:
    """Reads a running stack through the settings in its stack.env."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        connection = env["AZURE_STORAGE_CONNECTION_STRING"]
        self._blobs = BlobServiceClient.from_connection_string(connection)
        self._queues = QueueServiceClient.from_connection_string(connection)
        self._jobs = TableClient.from_connection_string(connection, env["JOBS_TABLE"])
        self._active = TableClient.from_connection_string(connection, env["ACTIVE_JOBS_TABLE"])
        self._list = TableClient.from_connection_string(connection, env["JOB_LIST_TABLE"])

    def upload(self, name: str, data: bytes) -> str:
        """Upload to the input container (overwriting); returns the new version's ETag, unquoted."""
        client = self._blobs.get_blob_client(self.env["INPUT_CONTAINER"], name)
        return str(client.upload_blob(data, overwrite=True)["etag"]).strip('"')

    def records(self) -> list[Record]:
        # Every job row, in the current key layout (RowKey = job key) and the previous one (RowKey "job").
        return [Record.from_entity(entity) for entity in self._jobs.list_entities() if "state" in entity]

    def record_of(self, name: str, etag: str) -> Record | None:
        query = "name eq @name and blobEtag eq @etag"
        found = list(self._jobs.query_entities(query, parameters={"name": name, "etag": etag}))
        return Record.from_entity(found[0]) if found else None

    def active_count(self) -> int:
        # The index's partitions: "active-<hex digit>" (and "active", the previous layout's only one).
        partitions = self._active.list_entities(select=["PartitionKey"])
        return sum(1 for entity in partitions if entity["PartitionKey"].startswith("active"))

    def listed(self) -> set[tuple[str, str]]:
        """The job list's rows as (partition, job id): the RowKey ends with the job id."""
        rows = self._list.list_entities(select=["PartitionKey", "RowKey"])
        return {(str(row["PartitionKey"]), str(row["RowKey"]).rsplit("-", 1)[-1]) for row in rows}

    def poison_counts(self) -> dict[str, int]:
        counts = {}
        for queue in self._queues.list_queues():
            if queue.name.endswith(POISON_SUFFIX):
                properties = self._queues.get_queue_client(queue.name).get_queue_properties()
                counts[queue.name] = int(properties.approximate_message_count or 0)
        return counts

    def emulator_jobs(self) -> tuple[list[AmlJob], list[str]]:
        response = requests.get(
            self.env["BATCH_ENDPOINT_URI"],
            headers={"Authorization": f"Bearer {self.env['BATCH_ENDPOINT_TOKEN']}"},
            timeout=30,
        )
        response.raise_for_status()
        jobs, unattributed = [], []
        for job in response.json()["value"]:
            properties = job["properties"]
            path = str(properties.get("output", {}).get("path", ""))
            match = _AML_OUTPUT.search(path)
            if match is None:
                unattributed.append(str(job["name"]))
                continue
            jobs.append(AmlJob(job["name"], properties["status"], match[1], int(match[2]), path))
        return jobs, unattributed

    def fault_counters(self) -> dict[str, int]:
        base = self.env["BATCH_ENDPOINT_URI"].removesuffix("/jobs")
        response = requests.get(f"{base}/_emulator/faults", timeout=30)
        response.raise_for_status()
        return dict(response.json().get("injected", {}))

    def listing(self, container: str) -> dict[str, StoredBlob]:
        blobs = {}
        try:
            for blob in self._blobs.get_container_client(container).list_blobs(include=["metadata"]):
                moved_by = (blob.metadata or {}).get(MOVED_BY, "")
                blobs[blob.name] = StoredBlob(container, blob.name, str(blob.etag).strip('"'), moved_by)
        except ResourceNotFoundError:
            pass
        return blobs

    def read(self, container: str, name: str) -> bytes | None:
        try:
            return bytes(self._blobs.get_blob_client(container, name).download_blob().readall())
        except ResourceNotFoundError:
            return None

    def snapshot(self) -> Snapshot:
        env = self.env
        aml_jobs, unattributed = self.emulator_jobs()
        accepted = read_records(Path(env["EVENTS_LOG"]))
        received: dict[str, list[float]] = {}
        for record in accepted:
            moment = datetime.fromisoformat(record["receivedAt"].replace("Z", "+00:00")).timestamp()
            received.setdefault(str(record["event"]["id"]), []).append(moment)
        containers = ("INPUT", "OUTPUT", "ARCHIVE", "FAILED", "REJECTED")
        return Snapshot(
            records=self.records(),
            events=[record["event"] for record in accepted],
            aml_jobs=aml_jobs,
            unattributed_aml_jobs=unattributed,
            blobs={env[f"{key}_CONTAINER"]: self.listing(env[f"{key}_CONTAINER"]) for key in containers},
            poison=self.poison_counts(),
            active=self.active_count(),
            received=received,
            listed=self.listed(),
        )

    def aml_output(self, job: AmlJob) -> bytes | None:
        return self.read(self.env["AML_OUTPUT_CONTAINER"], job.output_path)
