"""Helpers for the Event Grid emulator tests: a real threaded webhook and emulator processes."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from localdev.eventgrid.launcher import start_eventgrid
from localdev.procs import Service

# Topic keys are base64 in Azure; generate_sas base64-decodes the key it signs with.
TOPIC_KEY = base64.b64encode(b"dropscore-local-topic-key-000001").decode()
FAST = 0.01  # --retry-scale for the tests: 10 s -> 0.1 s, 30 s -> 0.3 s


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event_type_header(self) -> str:
        return self.headers.get("aeg-event-type", "")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Webhook:
    """A subscriber endpoint on 127.0.0.1 that records every request.

    `script` is consumed by notification POSTs: an int is the status to answer, "timeout" answers
    after `hang_seconds`, "close" drops the connection without an answer; afterwards it answers 200.
    `handshake` False makes it ignore validation requests (405 to OPTIONS, 200 without the code)."""

    script: list[int | str] = field(default_factory=list)
    handshake: bool = True
    hang_seconds: float = 2.5
    received: list[Received] = field(default_factory=list)
    default_status: int | str = 200

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def notifications(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [
                r
                for r in self.received
                if r.method == "POST" and r.event_type_header == "Notification" and (path is None or r.path == path)
            ]

    def handshakes(self) -> list[Received]:
        with self._lock:
            return [
                r for r in self.received if r.method == "OPTIONS" or r.event_type_header == "SubscriptionValidation"
            ]

    def _next_action(self) -> int | str:
        with self._lock:
            return self.script.pop(0) if self.script else self.default_status

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _record(self) -> Received:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                item = Received(self.command, self.path, headers, body, time.monotonic())
                with hook._lock:
                    hook.received.append(item)
                return item

            def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_OPTIONS(self) -> None:
                item = self._record()
                if not hook.handshake:
                    self._answer(405)
                    return
                origin = item.headers.get("webhook-request-origin", "")
                self._answer(200, headers={"WebHook-Allowed-Origin": origin, "Allow": "POST"})

            def do_POST(self) -> None:
                item = self._record()
                if item.event_type_header == "SubscriptionValidation":
                    code = item.json()[0]["data"]["validationCode"] if hook.handshake else "nope"
                    body = json.dumps({"validationResponse": code}).encode()
                    self._answer(200, body, {"Content-Type": "application/json"})
                    return
                action = hook._next_action()
                if action == "close":
                    self.close_connection = True
                    return
                if action == "timeout":
                    time.sleep(hook.hang_seconds)
                    action = 200
                self._answer(int(action))

        return Handler


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Emulator:
    service: Service
    endpoint: str
    events_log: Path
    state_dir: Path
    dead_letter_dir: Path
    output: Path

    @property
    def base(self) -> str:
        return self.endpoint.removesuffix("/api/events")

    def deliveries(self) -> dict[str, Any]:
        return requests.get(f"{self.base}/_emulator/deliveries", timeout=5).json()

    def health(self) -> dict[str, Any]:
        return requests.get(f"{self.base}/_emulator/health", timeout=5).json()

    def finished(self, state: str | None = None) -> list[dict[str, Any]]:
        return [d for d in self.deliveries()["finished"] if state is None or d["state"] == state]

    def dead_letters(self) -> list[dict[str, Any]]:
        files = sorted(self.dead_letter_dir.rglob("*.json"))
        return [record for path in files for record in json.loads(path.read_text())]

    def logged_events(self) -> list[dict[str, Any]]:
        if not self.events_log.exists():
            return []
        return [json.loads(line) for line in self.events_log.read_text().splitlines() if line.strip()]


class EmulatorRunner:
    """Starts emulators under one directory and stops every one of them at the end of a test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[Service] = []

    def start(
        self,
        subscriptions: Iterable[str] = (),
        *,
        name: str = "eg",
        input_schema: str = "cloudevents",
        retry_scale: float = FAST,
        dead_letter: bool = True,
        extra_args: Iterable[str] = (),
    ) -> Emulator:
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        output = directory / "emulator.out"
        service, endpoint = start_eventgrid(
            key=TOPIC_KEY,
            log_path=output,
            events_log=directory / "events.jsonl",
            subscriptions=list(subscriptions),
            dead_letter_dir=directory / "deadletter" if dead_letter else None,
            retry_scale=retry_scale,
            input_schema=input_schema,
            state_dir=directory / "state",
            extra_args=list(extra_args),
        )
        self.started.append(service)
        return Emulator(
            service,
            endpoint,
            directory / "events.jsonl",
            directory / "state",
            directory / "deadletter",
            output,
        )

    def stop_all(self) -> None:
        for service in self.started:
            service.stop()
