"""Start the emulator as a child process on a free port and wait until it answers."""

from __future__ import annotations

import sys
from pathlib import Path

from localdev.batch_endpoint.__main__ import EVENTS_KEY_ENV, STORAGE_CONNECTION_STRING_ENV, TOKEN_ENV
from localdev.procs import Service, free_port, start_service


def start_batch_endpoint(
    *,
    connection_string: str,
    datastores: dict[str, str],
    deployments: dict[str, Path],
    token: str,
    log_path: Path,
    state_dir: Path | None = None,
    job_seconds: float = 2.0,
    faults: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    row_cost_us: float = 0.0,
    max_active_jobs: int = 0,
    events_topic: str | None = None,
    events_key: str | None = None,
    timeout: float = 60.0,
) -> tuple[Service, str]:
    """Return the running service and its scoring URI `http://127.0.0.1:<port>/jobs`.

    With `events_topic` (an Event Grid schema topic endpoint) and `events_key`, the emulator publishes
    Azure ML run events there. With `max_active_jobs` N > 0, an invoke while N jobs are active is answered 429."""
    port = port or free_port()
    argv = [sys.executable, "-m", "localdev.batch_endpoint", "serve", "--port", str(port)]
    argv += ["--job-seconds", str(job_seconds)]
    for name, container in datastores.items():
        argv += ["--datastore", f"{name}={container}"]
    for name, path in deployments.items():
        argv += ["--deployment", f"{name}={Path(path).resolve()}"]
    if state_dir is not None:
        argv += ["--state-dir", str(state_dir)]
    if faults:
        argv += ["--faults", faults]
    if workers:
        argv += ["--workers", str(workers)]
    if row_cost_us:
        argv += ["--row-cost-us", str(row_cost_us)]
    if max_active_jobs:
        argv += ["--max-active-jobs", str(max_active_jobs)]
    if events_topic:
        argv += ["--events-topic", events_topic]
    # The token, the connection string (it holds the account key) and the topic key go through the
    # environment, so they show up in neither `ps` nor the log.
    secrets = {TOKEN_ENV: token, STORAGE_CONNECTION_STRING_ENV: connection_string}
    if events_key:
        secrets[EVENTS_KEY_ENV] = events_key
    service = start_service("batch-endpoint", argv, log_path, env=secrets)
    service.wait_ready(f"http://127.0.0.1:{port}/_emulator/health", timeout)
    return service, f"http://127.0.0.1:{port}/jobs"
