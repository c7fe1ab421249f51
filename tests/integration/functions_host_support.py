"""Helpers for the functions-host tests: copy a toy app to a tmp dir, run the host on it, read what it recorded."""

from __future__ import annotations

import base64
import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localdev.azurite import Azurite
from localdev.functions_host.launcher import start_functions_host
from localdev.procs import Service

HOSTAPPS = Path(__file__).parent / "hostapps"
MASTER_KEY = "test-master-key"
FUNCTION_KEY = "test-function-key"
EVENTGRID_SYSTEM_KEY = "test-eventgrid-extension-key"
BLOBS_SYSTEM_KEY = "test-blobs-extension-key"


def unique(prefix: str) -> str:
    """A container/queue name no other test uses on the shared Azurite."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class ToyApp:
    app_dir: Path
    record_file: Path
    keys_file: Path
    env: dict[str, str]

    def records(self, fn: str | None = None) -> list[dict[str, Any]]:
        if not self.record_file.exists():
            return []
        rows = [json.loads(line) for line in self.record_file.read_text().splitlines() if line.strip()]
        return [r for r in rows if fn is None or r["fn"] == fn]


def make_app(
    tmp_path: Path, name: str, azurite: Azurite, settings: dict[str, str] | None = None, **files: str
) -> ToyApp:
    """Copy hostapps/<name> (+ record.py) to tmp and write local.settings.json and a keys file."""
    app_dir = tmp_path / name
    shutil.copytree(HOSTAPPS / name, app_dir)
    shutil.copy(HOSTAPPS / "record.py", app_dir / "record.py")
    for file_name, text in files.items():
        (app_dir / file_name.replace("__", ".")).write_text(text)
    values = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "AzureWebJobsStorage": azurite.connection_string,
        **(settings or {}),
    }
    (app_dir / "local.settings.json").write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    keys_file = tmp_path / f"{name}-keys.json"
    keys = {
        "masterKey": MASTER_KEY,
        "functionKeys": {"default": FUNCTION_KEY},
        "systemKeys": {"eventgrid_extension": EVENTGRID_SYSTEM_KEY, "blobs_extension": BLOBS_SYSTEM_KEY},
    }
    keys_file.write_text(json.dumps(keys))
    record_file = tmp_path / f"{name}-records.jsonl"
    return ToyApp(app_dir, record_file, keys_file, {"RECORD_FILE": str(record_file)})


@contextmanager
def running_host(
    app: ToyApp, log_path: Path, *, host_id: str, blob_scan_interval: float = 0.3, extra_args: Sequence[str] = ()
) -> Iterator[tuple[Service, str]]:
    service, base_url = start_functions_host(
        app_dir=app.app_dir,
        env=app.env,
        log_path=log_path,
        keys_file=app.keys_file,
        blob_scan_interval=blob_scan_interval,
        host_id=host_id,
        extra_args=extra_args,
    )
    try:
        yield service, base_url
    finally:
        service.stop()


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(text: str) -> str:
    return base64.b64decode(text).decode()
