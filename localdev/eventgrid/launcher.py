"""Start the emulator as a child process for the local stack and the tests."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from localdev.eventgrid.cli import KEY_ENV, SUBSCRIPTIONS_ENV
from localdev.procs import Service, free_port, start_service


def start_eventgrid(
    *,
    key: str,
    log_path: Path,
    events_log: Path,
    subscriptions: Sequence[str] = (),
    dead_letter_dir: Path | None = None,
    retry_scale: float = 1.0,
    input_schema: str = "cloudevents",
    state_dir: Path | None = None,
    port: int | None = None,
    topic_name: str | None = None,
    topic_id: str | None = None,
    name: str = "eventgrid",
    extra_args: Sequence[str] = (),
    timeout: float = 30.0,
) -> tuple[Service, str]:
    """Run `python -m localdev.eventgrid serve` on a free port (or `port`), wait until it answers,
    and return the service and its topic endpoint `http://127.0.0.1:<port>/api/events`.

    `log_path` receives the emulator's own output; `events_log` is the accepted-events JSONL. `topic_name`
    and `topic_id` are `--topic-name` and `--topic-id`; `name` names the service in errors."""
    port = port or free_port()
    argv = [sys.executable, "-m", "localdev.eventgrid", "serve", "--port", str(port)]
    argv += ["--log", str(events_log), "--retry-scale", str(retry_scale), "--input-schema", input_schema]
    if dead_letter_dir is not None:
        argv += ["--dead-letter", str(dead_letter_dir)]
    if state_dir is not None:
        argv += ["--state-dir", str(state_dir)]
    if topic_name is not None:
        argv += ["--topic-name", topic_name]
    if topic_id is not None:
        argv += ["--topic-id", topic_id]
    argv += list(extra_args)
    # The key, and subscription URLs that may carry keys, go through the environment: argv is in `ps`.
    secrets = {KEY_ENV: key, SUBSCRIPTIONS_ENV: "\n".join(subscriptions)}
    service = start_service(name, argv, log_path, env=secrets)
    base = f"http://127.0.0.1:{port}"
    service.wait_ready(f"{base}/_emulator/health", timeout)
    return service, f"{base}/api/events"
