"""The local stack: `python -m localdev up | down | status` (and `demo`, in localdev/stack_demo.py).

`up` starts Azurite, the Azure ML run events topic (aml-events), the Azure ML batch endpoint emulator, the
Event Grid emulator and the Functions dev host on free loopback ports, each detached in its own session so it
outlives the command, and records them in `<dir>/stack.json` (pids, start times, logs) and `<dir>/stack.env`
(what a client needs). Secrets (Azurite's connection string, the per-stack token and keys) go only into
stack.env (mode 0600), never to the terminal or a log; the one exception is the dev host's function key in the
operator page's address, which `up` prints so it can be opened. How each part starts: localdev/stack_parts.py and
localdev/stack_amlevents.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from localdev.batch_endpoint.config import WORKSPACE_ID as EMULATED_WORKSPACE_ID
from localdev.stack_amlevents import (
    AML_EVENTS,
    ENDPOINT_ENV,
    KEY_ENV,
    LOG_ENV,
    await_subscription,
    host_webhook_code,
    restart_aml_events,
    start_aml_events_part,
)
from localdev.stack_parts import (
    DEFAULT_DIR,
    DEPLOYMENT,
    OUTPUT_DATASTORE,
    EventsTopic,
    Part,
    Stack,
    StackError,
    StackOptions,
    StackPaths,
    StackRunning,
    create_storage,
    free_ports,
    random_key,
    sample_settings,
    start_azurite_part,
    start_batch_endpoint_part,
    start_eventgrid_part,
    start_functions_host_part,
    upload_demo_reference,
    write_private,
)
from localdev.stack_procs import processes_mentioning, stop_group

__all__ = [
    "DEFAULT_DIR",
    "PART_ORDER",
    "RESTARTABLE",
    "Part",
    "Stack",
    "StackError",
    "StackOptions",
    "StackPaths",
    "StackRunning",
    "down",
    "function_key",
    "interrupt_on_sigterm",
    "job_counts",
    "load_stack",
    "master_key",
    "quiet_signals",
    "read_env",
    "read_parts",
    "start_part",
    "status",
    "stop_part",
    "summary",
    "up",
]

EMULATED_ENDPOINT = "local-endpoint"  # the batch endpoint emulator's default --endpoint-name
DEFAULT_POLL_SCHEDULE = "*/2 * * * * *"
PART_ORDER = ("azurite", AML_EVENTS, "batch-endpoint", "eventgrid", "functions-host")
# The app settings stack.env passes on to clients (container, table and queue names).
CLIENT_SETTINGS = (
    "INPUT_CONTAINER",
    "OUTPUT_CONTAINER",
    "ARCHIVE_CONTAINER",
    "FAILED_CONTAINER",
    "REJECTED_CONTAINER",
    "AML_OUTPUT_CONTAINER",
    "JOBS_TABLE",
    "ACTIVE_JOBS_TABLE",
    "JOB_LIST_TABLE",
    "COMPLETIONS_QUEUE",
)
CORE_TOOLS_URL = "http://localhost:7071"  # where `func start` listens when it replaces the dev host


# ---------------------------------------------------------------- locking and state files


@contextlib.contextmanager
def stack_lock(paths: StackPaths) -> Iterator[None]:
    """One `up`/`down` at a time per directory (two `make up` in parallel must not both start)."""
    paths.root.mkdir(parents=True, exist_ok=True)
    with paths.lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_parts(paths: StackPaths) -> list[Part]:
    if not paths.state_file.is_file():
        return []
    doc = json.loads(paths.state_file.read_text(encoding="utf-8"))
    return [Part(**part) for part in doc.get("parts", [])]


def read_env(paths: StackPaths) -> dict[str, str]:
    """stack.env as a dict (KEY=VALUE lines)."""
    values: dict[str, str] = {}
    if paths.env_file.is_file():
        for line in paths.env_file.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep and not line.startswith("#"):
                values[key.strip()] = value
    return values


def _write_state(paths: StackPaths, parts: list[Part]) -> None:
    doc = {
        "dir": str(paths.root),
        "startedAt": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "parts": [asdict(p) for p in parts],
    }
    write_private(paths.state_file, json.dumps(doc, indent=2) + "\n")


# ---------------------------------------------------------------- up


def up(options: StackOptions, on_progress: Callable[[str], None] = print) -> Stack:
    """Start every part (or raise StackError after stopping what did start)."""
    paths = StackPaths.at(options.directory)
    with stack_lock(paths):
        _refuse_if_running(paths)
        paths.logs.mkdir(parents=True, exist_ok=True)
        started: list[Part] = []
        try:
            stack = _start_parts(paths, options, started, on_progress)
        except BaseException:
            # Also on Ctrl-C: a half-started stack must not linger.
            with quiet_signals():
                _stop_parts(started)
                _sweep(paths)
                paths.state_file.unlink(missing_ok=True)
            raise
        return stack


def _refuse_if_running(paths: StackPaths) -> None:
    parts = read_parts(paths)
    alive = [p.name for p in parts if p.running]
    if alive:
        raise StackRunning(
            f"a stack is already running from {paths.root} ({', '.join(alive)}); "
            f"stop it first with `python -m localdev down --dir {paths.root}` (or `make down`)"
        )
    # Left over from a stack that died (reboot, kill -9): nothing of it runs, so start afresh.
    paths.state_file.unlink(missing_ok=True)
    paths.env_file.unlink(missing_ok=True)


def _start_parts(paths: StackPaths, options: StackOptions, started: list[Part], say: Callable[[str], None]) -> Stack:
    def track(part: Part) -> None:
        started.append(part)
        # Written after every part so `down` can stop a stack whose `up` was killed midway.
        _write_state(paths, started)

    say("starting azurite ...")
    connection = start_azurite_part(paths, options, track)
    settings = {**sample_settings(), **options.app_settings}
    create_storage(connection, settings)
    # Picked together, so no two parts get the same one; the host's is known before it starts (aml-events
    # delivers to it).
    aml_port, batch_port, eventgrid_port, host_port = free_ports(4)
    functions_url = f"http://127.0.0.1:{host_port}" if options.functions_host else CORE_TOOLS_URL

    aml_events: EventsTopic | None = None
    if options.aml_events:
        say("starting the Azure ML run events topic (aml-events) ...")
        code = host_webhook_code(paths) if options.functions_host else None
        aml_key = random_key()
        aml_endpoint = start_aml_events_part(
            paths, options, key=aml_key, functions_url=functions_url, code=code, track=track, port=aml_port
        )
        aml_events = EventsTopic(aml_endpoint, aml_key)
    token = secrets.token_urlsafe(32)
    say("starting the batch endpoint emulator ...")
    scoring_uri = start_batch_endpoint_part(
        paths,
        options,
        settings=settings,
        connection=connection,
        token=token,
        track=track,
        events=aml_events,
        port=batch_port,
    )
    reference = upload_demo_reference(paths, options, connection)
    eventgrid_key = random_key()
    say("starting the Event Grid emulator ...")
    topic_endpoint = start_eventgrid_part(paths, options, eventgrid_key, track, port=eventgrid_port)

    app_env = _app_settings(
        options, settings, connection=connection, scoring_uri=scoring_uri, token=token, reference=reference
    )
    app_env |= {"EVENTGRID_TOPIC_ENDPOINT": topic_endpoint, "EVENTGRID_TOPIC_KEY": eventgrid_key}
    # Core Tools users run `func start` with this file instead of the dev host.
    write_private(paths.local_settings, json.dumps({"IsEncrypted": False, "Values": app_env}, indent=2) + "\n")
    if options.functions_host:
        say("starting the Functions dev host ...")
        functions_url = start_functions_host_part(paths, options, app_env, track, port=host_port)
        if aml_events is not None:
            await_subscription(aml_events.endpoint, str(paths.log(AML_EVENTS)), options.timeout)

    env = {
        "AZURE_STORAGE_CONNECTION_STRING": connection,
        **{key: settings[key] for key in CLIENT_SETTINGS},
        "BATCH_ENDPOINT_URI": scoring_uri,
        "BATCH_ENDPOINT_TOKEN": token,
        "EVENTGRID_TOPIC_ENDPOINT": topic_endpoint,
        "EVENTGRID_TOPIC_KEY": eventgrid_key,
        "EVENTS_LOG": str(paths.events_log),
        "FUNCTIONS_URL": functions_url,
        "FUNCTIONS_KEYS_FILE": str(paths.keys_file),
        "LOGS_DIR": str(paths.logs),
        "DRIFT_REFERENCE": app_env.get("DRIFT_REFERENCE", ""),
    }
    if aml_events is not None:
        env |= {ENDPOINT_ENV: aml_events.endpoint, KEY_ENV: aml_events.key, LOG_ENV: str(paths.aml_events_log)}
    write_private(paths.env_file, "".join(f"{key}={value}\n" for key, value in env.items()))
    return Stack(paths, list(started), env, app_env)


def _app_settings(
    options: StackOptions,
    settings: dict[str, str],
    *,
    connection: str,
    scoring_uri: str,
    token: str,
    reference: str | None,
) -> dict[str, str]:
    """The app's settings on this stack: local.settings.sample.json, `--set`, and the stack's own endpoints."""
    app_env = {
        **settings,
        "AzureWebJobsStorage": connection,
        "BLOB_TRIGGER_SOURCE": "LogsAndContainerScan",
        "BATCH_ENDPOINT_URI": scoring_uri,
        # The emulator answers the ARM reads and cancel too, so the health check and cancel work as in Azure.
        "BATCH_ENDPOINT_NAME": EMULATED_ENDPOINT,
        "BATCH_DEPLOYMENT": settings.get("BATCH_DEPLOYMENT") or DEPLOYMENT,
        "AML_WORKSPACE_ID": EMULATED_WORKSPACE_ID,
        "AML_MANAGEMENT_ENDPOINT": scoring_uri.removesuffix("/jobs"),
        "AML_LOCAL_TOKEN": token,
        "AML_OUTPUT_DATASTORE": OUTPUT_DATASTORE,
        # The emulator serves the deployment's model through ARM as Azure does, so inputs are checked against
        # the model's own signature before any job (`--set REQUIRED_COLUMNS=` turns the check off).
        "REQUIRED_COLUMNS": options.app_settings.get("REQUIRED_COLUMNS", "auto"),
        "POLL_SCHEDULE": options.app_settings.get("POLL_SCHEDULE", DEFAULT_POLL_SCHEDULE),
    }
    if reference is None and "DRIFT_REFERENCE" not in options.app_settings:
        # Another model than the demo's (`--model-dir`): the demo's reference does not describe it, so no drift
        # work unless `--set DRIFT_REFERENCE=container/path` names one.
        app_env["DRIFT_REFERENCE"] = ""
    if options.aml_events:
        # Run events end jobs (aml_run_events); the poller asks Azure ML only every AML_EVENTS_BACKSTOP_SECONDS.
        app_env["AML_RUN_EVENTS"] = options.app_settings.get("AML_RUN_EVENTS", "on")
    if "ROUTES" in app_env:  # a route may name the emulator's scoring URI, known only now
        app_env["ROUTES"] = app_env["ROUTES"].replace("{BATCH_ENDPOINT_URI}", scoring_uri)
    return app_env


def summary(stack: Stack) -> str:
    env, paths = stack.env, stack.paths
    rel = _short(paths.root)
    lines = ["dropscore local stack is up:"]
    for part in stack.parts:
        lines.append(f"  {part.name:<15} {part.url:<40} pid {part.pid:<7} log {_short(Path(part.log))}")
    lines += [
        f"settings for clients (connection string, token, keys): {_short(paths.env_file)}",
        "",
        f"drop a file:   .venv/bin/python docs/examples/drop_file.py my.csv --stack-dir {rel}",
        f"watch events:  .venv/bin/python -m localdev.eventgrid tail --log {_short(paths.events_log)} --follow",
        *(
            [f"run events:    .venv/bin/python -m localdev.eventgrid tail --log {_short(paths.aml_events_log)} -f"]
            if LOG_ENV in env
            else []
        ),
        f"jobs:          GET {env['FUNCTIONS_URL']}/api/jobs"
        + (f" (function key in {_short(paths.keys_file)})" if _has_host(stack) else " (once `func start` runs)"),
        # The one key `up` prints: the operator page is opened with it (a key of this stack's dev host only; the
        # page takes it out of the address bar at once). Core Tools makes its own keys.
        "operator page: "
        + (
            f"{env['FUNCTIONS_URL']}/api/dashboard?code={function_key(paths)}"
            if _has_host(stack)
            else f"{env['FUNCTIONS_URL']}/api/dashboard?code=<function key> (once `func start` runs)"
        ),
        "drift:         "
        + (
            f"scored files compared with {env['DRIFT_REFERENCE']} (DRIFT_REFERENCE): <input>.drift.json beside"
            " the predictions"
            if env.get("DRIFT_REFERENCE")
            else "off (DRIFT_REFERENCE is empty: no reference for this model)"
        ),
        f"func start:    cp {_short(paths.local_settings)} . (the app's settings for Azure Functions Core Tools)",
        f"health check:  .venv/bin/python -m shared.doctor --settings {_short(paths.local_settings)}",
        f"status / stop: python -m localdev status --dir {rel} / python -m localdev down --dir {rel}",
    ]
    return "\n".join(lines)


def _has_host(stack: Stack) -> bool:
    return any(part.name == "functions-host" for part in stack.parts)


def _short(path: Path) -> str:
    """Paths relative to the working directory when inside it (shorter, copy-pasteable)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- down


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def interrupt_on_sigterm() -> None:
    """SIGTERM (a CI timeout, `kill`) takes the Ctrl-C path, so what was started gets stopped."""
    signal.signal(signal.SIGTERM, _raise_interrupt)


@contextlib.contextmanager
def quiet_signals() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while stopping the stack: a second Ctrl-C must not leave half of it running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _sweep(paths: StackPaths) -> list[int]:
    """Stop anything still running with the stack dir on its command line: a part whose launcher was
    interrupted before it could be recorded (every part gets a path under the dir in its argv)."""
    leftovers = processes_mentioning(f"{paths.root}/")
    for pid in leftovers:
        stop_group(pid)
    return leftovers


def _stop_parts(parts: list[Part]) -> list[str]:
    """Stop parts newest first (the host before what it calls); returns one line per part."""
    lines = []
    for part in reversed(parts):
        if not part.running:
            lines.append(f"{part.name}: already stopped")
            continue
        stopped = stop_group(part.pid)
        lines.append(f"{part.name}: stopped (pid {part.pid})" if stopped else f"{part.name}: could not stop {part.pid}")
    return lines


def down(directory: Path) -> list[str]:
    paths = StackPaths.at(directory)
    if not paths.state_file.is_file():
        return [f"no stack recorded in {paths.root} (nothing to stop)"]
    with stack_lock(paths), quiet_signals():
        lines = _stop_parts(read_parts(paths))
        lines += [f"stopped unrecorded process {pid}" for pid in _sweep(paths)]
        paths.state_file.unlink(missing_ok=True)
        # Its addresses and keys are dead now; a client must not find and use them.
        paths.env_file.unlink(missing_ok=True)
        paths.local_settings.unlink(missing_ok=True)
    return lines


# ---------------------------------------------------------------- one part at a time (the chaos test)

#: The parts `stop_part` and `start_part` can take down and bring back on their own.
RESTARTABLE = ("azurite", AML_EVENTS, "eventgrid", "functions-host")


def _recorded_part(paths: StackPaths, name: str) -> tuple[list[Part], Part]:
    if name not in RESTARTABLE:
        raise StackError(f"{name} cannot be stopped and started on its own (only {', '.join(RESTARTABLE)})")
    parts = read_parts(paths)
    part = next((p for p in parts if p.name == name), None)
    if part is None:
        raise StackError(f"no {name} recorded in {paths.state_file}")
    return parts, part


def stop_part(directory: Path, name: str, *, crash: bool = False) -> Part:
    """Stop one part of a running stack, keeping its record so `start_part` can bring it back where it
    was. `crash=True` is `kill -9` of its process group: nothing gets to flush or clean up."""
    paths = StackPaths.at(directory)
    with stack_lock(paths):
        _, part = _recorded_part(paths, name)
        if part.running and not stop_group(part.pid, crash=crash):
            raise StackError(f"{name} (pid {part.pid}) could not be stopped")
    return part


def start_part(options: StackOptions, name: str) -> Part:
    """Start one stopped part of the stack in `options.directory` again, on the port(s) its clients
    already use, with the data, settings and keys `up` gave it; stack.json records the new process.
    `options` must be the ones `up` was given (the dev host's scan interval, the timeout)."""
    paths = StackPaths.at(options.directory)
    with stack_lock(paths):
        parts, old = _recorded_part(paths, name)
        if old.running:
            raise StackError(f"{name} is still running (pid {old.pid}); stop it first")
        env = read_env(paths)
        port = urlsplit(old.url).port
        restarted: list[Part] = []
        if name == "azurite":
            start_azurite_part(paths, options, restarted.append, ports=_azurite_ports(env))
        elif name == AML_EVENTS:
            restart_aml_events(paths, options, env, parts, track=restarted.append, port=port)
        elif name == "eventgrid":
            start_eventgrid_part(paths, options, env["EVENTGRID_TOPIC_KEY"], restarted.append, port=port)
        else:
            app_env = json.loads(paths.local_settings.read_text(encoding="utf-8"))["Values"]
            start_functions_host_part(paths, options, app_env, restarted.append, port=port)
        [new] = restarted
        _write_state(paths, [new if p.name == name else p for p in parts])
    return new


def _azurite_ports(env: dict[str, str]) -> tuple[int, int, int]:
    """Blob, queue and table ports, from the connection string every client of the stack holds."""
    fields = dict(item.split("=", 1) for item in env["AZURE_STORAGE_CONNECTION_STRING"].split(";") if "=" in item)
    blob, queue, table = (urlsplit(fields[f"{service}Endpoint"]).port for service in ("Blob", "Queue", "Table"))
    if not (blob and queue and table):
        raise StackError("the connection string in stack.env does not name a port for every Azurite service")
    return blob, queue, table


# ---------------------------------------------------------------- status


def job_counts(connection: str, table: str) -> Counter[str]:
    """Jobs by state, read straight from the app's ledger table."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.data.tables import TableClient

    client = TableClient.from_connection_string(connection, table)
    counts: Counter[str] = Counter()
    with contextlib.suppress(ResourceNotFoundError):
        for entity in client.list_entities(select=["state"]):  # both key layouts; probe rows have no state
            if entity.get("state"):
                counts[str(entity["state"])] += 1
    return counts


def status(directory: Path) -> tuple[str, bool]:
    """A short report and whether every part runs."""
    paths = StackPaths.at(directory)
    parts = read_parts(paths)
    if not parts:
        return f"no stack recorded in {paths.root}; start one with `python -m localdev up`", False
    lines = [f"stack in {paths.root}:"]
    for part in parts:
        state = "running" if part.running else "stopped"
        lines.append(f"  {part.name:<15} {state:<8} {part.url:<40} log {_short(Path(part.log))}")
    all_running = all(p.running for p in parts)
    env = read_env(paths)
    azurite_up = any(p.name == "azurite" and p.running for p in parts)
    if azurite_up and "AZURE_STORAGE_CONNECTION_STRING" in env:
        counts = job_counts(env["AZURE_STORAGE_CONNECTION_STRING"], env["JOBS_TABLE"])
        total = sum(counts.values())
        detail = ", ".join(f"{state}={n}" for state, n in sorted(counts.items())) or "none yet"
        lines.append(f"jobs: {total} ({detail})")
    else:
        lines.append("jobs: unknown (Azurite is not running)")
    return "\n".join(lines), all_running


def load_stack(directory: Path) -> Stack:
    """The running stack recorded in `directory` (for the demo and tests)."""
    paths = StackPaths.at(directory)
    parts = read_parts(paths)
    if not parts:
        raise StackError(f"no stack recorded in {paths.root}")
    return Stack(paths, parts, read_env(paths), {})


def function_key(paths: StackPaths) -> str:
    doc: dict[str, Any] = json.loads(paths.keys_file.read_text(encoding="utf-8"))
    return str(doc["functionKeys"]["default"])


def master_key(paths: StackPaths) -> str:
    doc: dict[str, Any] = json.loads(paths.keys_file.read_text(encoding="utf-8"))
    return str(doc["masterKey"])
