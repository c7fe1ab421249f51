"""Logs reach Application Insights through the real exporter, each with its job id (and Azure ML job name) as
a dimension, and a line about no job with neither.

The exporter posts to a loopback stand-in for the ingestion endpoint (the connection string's
IngestionEndpoint); the app runs in a child process because OpenTelemetry's providers are global.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import logging, sys
from opentelemetry._logs import get_logger_provider
from shared.adapters.telemetry import configure
from shared.config import Settings
from shared.logcontext import about_job, note_aml_job
from tests.fakes import BASE_SETTINGS

connection = "InstrumentationKey=00000000-0000-0000-0000-000000000001;IngestionEndpoint=" + sys.argv[1]
assert configure(Settings.from_env({**BASE_SETTINGS, "APPLICATIONINSIGHTS_CONNECTION_STRING": connection}))
log = logging.getLogger("dropscore")
log.setLevel(logging.INFO)
with about_job("f00d"):
    log.warning("job %s: inside", "f00d")
    note_aml_job("dropscore-f00d-1")
    log.warning("job %s: submitted", "f00d")
log.warning("outside any job")
get_logger_provider().force_flush()
"""


class Ingestion(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        Ingestion.received.extend(json.loads(body))
        reply = json.dumps({"itemsReceived": 1, "itemsAccepted": 1, "errors": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def ingestion() -> Iterator[str]:
    Ingestion.received = []
    server = HTTPServer(("127.0.0.1", 0), Ingestion)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


def test_each_log_line_carries_its_job_id_and_azure_ml_job_name_as_dimensions(ingestion: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, ingestion],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    messages = {
        item["data"]["baseData"]["message"]: item["data"]["baseData"]["properties"]  # type: ignore[index]
        for item in Ingestion.received
        if item.get("name") == "Microsoft.ApplicationInsights.Message"
    }
    assert messages["job f00d: inside"]["job_id"] == "f00d"
    assert "aml_job_name" not in messages["job f00d: inside"]  # not known yet: no empty dimension
    assert messages["job f00d: submitted"]["job_id"] == "f00d"
    assert messages["job f00d: submitted"]["aml_job_name"] == "dropscore-f00d-1"
    assert "job_id" not in messages["outside any job"]
    assert "aml_job_name" not in messages["outside any job"]
