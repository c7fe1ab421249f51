"""Start the functions dev host as a child process and wait until `/admin/host/status` says Running."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from localdev.procs import REPO_ROOT, Service, ServiceStartError, free_port, start_service


def host_state(base_url: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{base_url}/admin/host/status", timeout=2) as response:
            return str(json.load(response).get("state"))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def start_functions_host(
    *,
    app_dir: Path,
    env: dict[str, str],
    log_path: Path,
    keys_file: Path | None = None,
    blob_scan_interval: float = 10.0,
    host_id: str | None = None,
    port: int | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 60.0,
) -> tuple[Service, str]:
    """Run `python -m localdev.functions_host` for `app_dir`; returns the service and `http://127.0.0.1:<port>`.

    `env` is added to this process's environment, so it wins over the app's local.settings.json.
    """
    port = port or free_port()
    argv = [sys.executable, "-m", "localdev.functions_host", "--app-dir", str(Path(app_dir).resolve())]
    argv += ["--port", str(port), "--blob-scan-interval", str(blob_scan_interval)]
    if keys_file is not None:
        argv += ["--keys", str(keys_file)]
    if host_id is not None:
        argv += ["--host-id", host_id]
    argv += list(extra_args)
    service = start_service("functions-host", argv, log_path, env=env, cwd=REPO_ROOT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        service.wait_ready(f"{base_url}/admin/host/status", timeout)
        deadline = time.monotonic() + timeout
        while host_state(base_url) != "Running":
            if time.monotonic() > deadline or service.process.poll() is not None:
                raise ServiceStartError(f"functions host never reported Running; see {log_path}\n{service.log_tail()}")
            time.sleep(0.1)
    except ServiceStartError:
        service.stop()
        raise
    return service, base_url
