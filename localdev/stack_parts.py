"""The local stack's pieces: where its files go (StackPaths), what `up` is asked for (StackOptions), what it
records of each running part (Part), and how each part is started. `localdev/stack.py` puts them together
(`up`, `down`, `status`, one part at a time); `localdev/stack_amlevents.py` is the Azure ML run events topic.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from localdev.procs import REPO_ROOT, Service, ServiceStartError, free_port
from localdev.stack_procs import is_running, start_time

DEFAULT_DIR = Path(".localdev")
SAMPLE_SETTINGS = REPO_ROOT / "local.settings.sample.json"
DEPLOYMENT = "diamonds"
OUTPUT_DATASTORE = "dropscore_outputs"
HOST_ID = "dropscore-local"
#: Where `up` puts the demo model's drift reference (localdev/demo/model.py builds it with the model); the
#: sample settings' DRIFT_REFERENCE names it.
DEMO_REFERENCE = "references/diamonds.json"
# The containers the app reads or writes; created up front so a first upload has somewhere to go.
CONTAINER_SETTINGS = (
    "INPUT_CONTAINER",
    "OUTPUT_CONTAINER",
    "ARCHIVE_CONTAINER",
    "FAILED_CONTAINER",
    "REJECTED_CONTAINER",
    "AML_OUTPUT_CONTAINER",
)


class StackError(RuntimeError):
    """The stack could not do what was asked; the message says what and where to look."""


class StackRunning(StackError):
    """`up` was asked for while a stack from the same directory is still running."""


@dataclass(frozen=True)
class StackPaths:
    root: Path

    @classmethod
    def at(cls, directory: Path) -> StackPaths:
        return cls(directory.resolve())

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def state_file(self) -> Path:
        return self.root / "stack.json"

    @property
    def env_file(self) -> Path:
        return self.root / "stack.env"

    @property
    def lock_file(self) -> Path:
        return self.root / "stack.lock"

    @property
    def events_log(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def aml_events_log(self) -> Path:
        """Every Azure ML run event the workspace's (emulated) system topic accepted."""
        return self.root / "aml-events.jsonl"

    @property
    def local_settings(self) -> Path:
        return self.root / "local.settings.json"

    @property
    def keys_file(self) -> Path:
        return self.root / "functions-host-keys.json"

    def log(self, part: str) -> Path:
        return self.logs / f"{part}.log"


@dataclass
class Part:
    """One running piece of the stack as stack.json records it."""

    name: str
    pid: int
    started: int | None
    log: str
    url: str

    @property
    def running(self) -> bool:
        return is_running(self.pid, self.started)


@dataclass
class StackOptions:
    directory: Path = DEFAULT_DIR
    models_dir: Path | None = None  # default <directory>/models
    model_dir: Path | None = None  # a deployment folder to serve instead of the demo model
    functions_host: bool = True  # False: Core Tools (`func start`) runs the app instead
    faults: str | None = None
    job_seconds: float = 2.0
    blob_scan_interval: float = 1.0
    app_settings: dict[str, str] = field(default_factory=dict)
    timeout: float = 90.0
    # The workspace's run events topic (aml-events) feeding `aml_run_events`, and AML_RUN_EVENTS=on.
    aml_events: bool = True
    # The batch endpoint emulator's scoring pool (default: its own) and fixed cost per row (benchmarks).
    workers: int | None = None
    row_cost_us: float = 0.0
    # The emulator answers 429 to an invoke while this many jobs are active (0: never), as a busy endpoint does.
    max_active_jobs: int = 0


@dataclass
class Stack:
    """What `up` started; `env` is the content of stack.env."""

    paths: StackPaths
    parts: list[Part]
    env: dict[str, str]
    app_settings: dict[str, str]

    def part(self, name: str) -> Part:
        return next(p for p in self.parts if p.name == name)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (stack.env holds the stack's token and keys)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    tmp.replace(path)


def sample_settings() -> dict[str, str]:
    """The app settings of local.settings.sample.json (container, table and queue names, limits...)."""
    doc = json.loads(SAMPLE_SETTINGS.read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in doc["Values"].items()}


def random_key() -> str:
    # Event Grid access keys are base64 of 32 random bytes; the emulator also accepts them in SAS tokens.
    return base64.b64encode(secrets.token_bytes(32)).decode()


def free_ports(count: int) -> list[int]:
    """`count` different free ports: a port picked before its part starts is not free to the next pick."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def record(service: Service, url: str) -> Part:
    return Part(service.name, service.pid, start_time(service.pid), str(service.log_path), url)


def part_failed(name: str, log: Path, exc: BaseException) -> StackError:
    return StackError(f"{name} failed to start (log: {log}):\n{exc}")


def start_azurite_part(
    paths: StackPaths,
    options: StackOptions,
    track: Callable[[Part], None],
    *,
    ports: tuple[int, int, int] | None = None,
) -> str:
    """Azurite, persisted in <dir>/azurite; returns its connection string."""
    from localdev.azurite import start_azurite

    log = paths.log("azurite")
    try:
        azurite = start_azurite(log, data_dir=paths.root / "azurite", timeout=options.timeout, ports=ports)
    except ServiceStartError as exc:
        raise part_failed("azurite", log, exc) from None
    track(record(azurite.service, f"http://127.0.0.1:{azurite.blob_port}"))
    return azurite.connection_string


def create_storage(connection: str, settings: dict[str, str]) -> None:
    """Every container, table and queue the settings name, as infra/ creates them in Azure: uploads,
    `status` and the health check work before the first job."""
    from azure.core.exceptions import ResourceExistsError
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueServiceClient

    blobs = BlobServiceClient.from_connection_string(connection)
    # The drift reference's container too (the app only reads it; `up` uploads the demo model's reference).
    reference_containers = {path.split("/", 1)[0] for path in (settings.get("DRIFT_REFERENCE", ""), DEMO_REFERENCE)}
    for name in [*(settings[key] for key in CONTAINER_SETTINGS), *sorted(reference_containers - {""})]:
        with contextlib.suppress(ResourceExistsError):
            blobs.create_container(name)
    tables = TableServiceClient.from_connection_string(connection)
    for key in ("JOBS_TABLE", "ACTIVE_JOBS_TABLE", "JOB_LIST_TABLE"):
        tables.create_table_if_not_exists(settings[key])
    with contextlib.suppress(ResourceExistsError):
        QueueServiceClient.from_connection_string(connection).create_queue(settings["COMPLETIONS_QUEUE"])


def _models_dir(paths: StackPaths, options: StackOptions) -> Path:
    return options.models_dir or paths.root / "models"


def _deployment_dir(paths: StackPaths, options: StackOptions) -> Path:
    if options.model_dir is not None:
        return options.model_dir
    from localdev.demo.model import build

    # MLflow warns about cloudpickle on every save; localdev/demo/model.py documents that choice.
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    mlflow_dir, _ = build(_models_dir(paths, options))
    return mlflow_dir


def upload_demo_reference(paths: StackPaths, options: StackOptions, connection: str) -> str | None:
    """The demo model's drift reference (built with the model, from its training data) uploaded to
    DEMO_REFERENCE; None when the stack serves another model (`--model-dir`), which it does not describe."""
    if options.model_dir is not None:
        return None
    from azure.storage.blob import BlobServiceClient

    from localdev.demo.model import REFERENCE_FILE, build

    models = _models_dir(paths, options)
    build(models)  # a no-op when the emulator's start built it (it always has by now)
    container, name = DEMO_REFERENCE.split("/", 1)
    blob = BlobServiceClient.from_connection_string(connection).get_blob_client(container, name)
    blob.upload_blob((models / REFERENCE_FILE).read_bytes(), overwrite=True)
    return DEMO_REFERENCE


@dataclass(frozen=True)
class EventsTopic:
    """Where the batch endpoint emulator publishes Azure ML run events (the aml-events part)."""

    endpoint: str
    key: str


def start_batch_endpoint_part(
    paths: StackPaths,
    options: StackOptions,
    *,
    settings: dict[str, str],
    connection: str,
    token: str,
    track: Callable[[Part], None],
    events: EventsTopic | None = None,
    port: int | None = None,
) -> str:
    from localdev.batch_endpoint.launcher import start_batch_endpoint

    log = paths.log("batch-endpoint")
    try:
        model = _deployment_dir(paths, options)
        service, scoring_uri = start_batch_endpoint(
            connection_string=connection,
            datastores={OUTPUT_DATASTORE: settings["AML_OUTPUT_CONTAINER"]},
            deployments={DEPLOYMENT: model},
            token=token,
            log_path=log,
            state_dir=paths.root / "batch-endpoint",
            job_seconds=options.job_seconds,
            faults=options.faults,
            port=port,
            workers=options.workers,
            row_cost_us=options.row_cost_us,
            max_active_jobs=options.max_active_jobs,
            events_topic=events.endpoint if events else None,
            events_key=events.key if events else None,
            timeout=options.timeout,
        )
    except (ServiceStartError, OSError, ValueError) as exc:
        raise part_failed("batch-endpoint", log, exc) from None
    track(record(service, scoring_uri))
    return scoring_uri


def start_eventgrid_part(
    paths: StackPaths, options: StackOptions, key: str, track: Callable[[Part], None], *, port: int | None = None
) -> str:
    """The app's own topic (EVENTGRID_TOPIC_ENDPOINT): the DropScore.* events, no subscriptions."""
    from localdev.eventgrid.launcher import start_eventgrid

    log = paths.log("eventgrid")
    try:
        service, topic_endpoint = start_eventgrid(
            key=key,
            log_path=log,
            events_log=paths.events_log,
            dead_letter_dir=paths.root / "eventgrid" / "dead-letter",
            state_dir=paths.root / "eventgrid" / "state",
            port=port,
            timeout=options.timeout,
        )
    except ServiceStartError as exc:
        raise part_failed("eventgrid", log, exc) from None
    track(record(service, topic_endpoint))
    return topic_endpoint


def start_functions_host_part(
    paths: StackPaths,
    options: StackOptions,
    app_env: dict[str, str],
    track: Callable[[Part], None],
    *,
    port: int | None = None,
) -> str:
    from localdev.functions_host.launcher import start_functions_host

    log = paths.log("functions-host")
    try:
        service, base_url = start_functions_host(
            app_dir=REPO_ROOT,
            env=app_env,
            log_path=log,
            keys_file=paths.keys_file,
            blob_scan_interval=options.blob_scan_interval,
            host_id=HOST_ID,
            port=port,
            timeout=options.timeout,
        )
    except ServiceStartError as exc:
        raise part_failed("functions-host", log, exc) from None
    track(record(service, base_url))
    return base_url
