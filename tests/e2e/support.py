"""Helpers for the end-to-end tests: drive a running stack the way a user does (CLI, blobs, HTTP, events)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests
from azure.storage.blob import BlobServiceClient

from localdev.eventgrid.eventlog import read_records
from localdev.procs import REPO_ROOT
from localdev.stack import StackPaths, load_stack, master_key, read_env

T = TypeVar("T")
DEMO_CSV = REPO_ROOT / "localdev" / "demo" / "diamonds.csv"
# Jobs whose input name holds this fail in the emulator (set with --faults on the e2e stack).
FAIL_MATCH = "must-fail"
FAIL_MESSAGE = "Scoring failed on purpose (e2e fault)"
# Jobs whose input name holds this stay Running in the emulator until canceled (the cancel tests).
HANG_MATCH = "must-hang"
STACK_FAULTS = f"fail_match={FAIL_MATCH},fail_message={FAIL_MESSAGE},stuck_match={HANG_MATCH}"


def run_cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """`python -m localdev ...` as a user runs it (a separate process, so `up` really detaches)."""
    return subprocess.run(
        [sys.executable, "-m", "localdev", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 30.0, interval: float = 0.2) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def unique_name(label: str) -> str:
    return f"e2e/{label}-{uuid.uuid4().hex[:10]}.csv"


def demo_rows(count: int, skip: int = 0) -> bytes:
    """The header and `count` rows of the demo CSV (starting after `skip` rows)."""
    lines = DEMO_CSV.read_text(encoding="utf-8").splitlines()
    return ("\n".join([lines[0], *lines[1 + skip : 1 + skip + count]]) + "\n").encode()


@dataclass
class StackClient:
    """A running stack seen from outside: its stack.env, blobs, events log and HTTP endpoints."""

    paths: StackPaths
    env: dict[str, str]

    @classmethod
    def load(cls, directory: Path) -> StackClient:
        load_stack(directory)  # fails clearly when nothing is recorded there
        paths = StackPaths.at(directory)
        return cls(paths, read_env(paths))

    @property
    def blobs(self) -> BlobServiceClient:
        return BlobServiceClient.from_connection_string(self.env["AZURE_STORAGE_CONNECTION_STRING"])

    def upload(self, name: str, data: bytes) -> str:
        """Upload to the input container; returns the new ETag (unquoted, as the app records it)."""
        result = self.blobs.get_blob_client(self.env["INPUT_CONTAINER"], name).upload_blob(data, overwrite=True)
        return str(result["etag"]).strip('"')

    def read_blob(self, container: str, name: str) -> bytes | None:
        client = self.blobs.get_blob_client(container, name)
        return client.download_blob().readall() if client.exists() else None

    def events(self, event_type: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        """Accepted events (oldest first), optionally one type and one input blob name.

        Like a subscriber, keeps the first event of each id: delivery is at-least-once and ids are
        deterministic, so a repeated id is a duplicate to drop (and the first one must be right)."""
        found: dict[str, dict[str, Any]] = {}
        for record in read_records(Path(self.env["EVENTS_LOG"])):
            event = record["event"]
            if event_type and event["type"] != event_type:
                continue
            if name and event["data"]["input"]["name"] != name:
                continue
            found.setdefault(event["id"], event)
        return list(found.values())

    def wait_event(self, event_type: str, name: str, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        return wait_for(
            lambda: events if len(events := self.events(event_type, name)) >= count else None,
            f"{count} x {event_type} for {name} in {self.env['EVENTS_LOG']}",
            timeout,
        )

    def emulator_jobs(self, name: str) -> list[dict[str, Any]]:
        """Azure ML jobs (from the emulator's GET /jobs) whose input mentions blob `name`."""
        response = requests.get(
            self.env["BATCH_ENDPOINT_URI"],
            headers={"Authorization": f"Bearer {self.env['BATCH_ENDPOINT_TOKEN']}"},
            timeout=10,
        )
        response.raise_for_status()
        jobs = response.json()["value"]
        return [job for job in jobs if name in json.dumps(job["properties"].get("inputData"))]

    def run_function(self, function: str, payload: dict[str, Any]) -> None:
        """Run a function by hand through the dev host's admin route (master key)."""
        response = requests.post(
            f"{self.env['FUNCTIONS_URL']}/admin/functions/{function}",
            json=payload,
            headers={"x-functions-key": master_key(self.paths)},
            timeout=10,
        )
        assert response.status_code == 202, response.text

    def host_log(self) -> str:
        return (self.paths.logs / "functions-host.log").read_text(errors="replace")
