"""App settings: read once, lazily, from a mapping (os.environ in the app).

`Settings.from_env` checks every setting and raises ONE ConfigError naming all the missing
or invalid keys, so a misconfigured app says everything wrong on its first invocation.
Nothing here runs at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from shared import settingvalues as values
from shared.errors import ConfigError
from shared.redaction import shown_value
from shared.routing import DEFAULT_NAME, Route, Routes, parse_routes

T = TypeVar("T")

STORAGE = "AzureWebJobsStorage"


@dataclass(frozen=True)
class StorageSettings:
    """Either a connection string (local, Azurite) or service URLs used with a managed identity."""

    connection_string: str | None = field(repr=False)
    blob_url: str | None
    queue_url: str | None
    table_url: str | None
    #: `AzureWebJobsStorage__clientId`: the user-assigned identity the host (and so the app) uses for storage.
    client_id: str | None = None


@dataclass(frozen=True)
class Settings:
    storage: StorageSettings
    input_container: str
    output_container: str
    archive_container: str
    failed_container: str
    rejected_container: str
    jobs_table: str
    active_table: str
    job_list_table: str
    completions_queue: str
    batch_endpoint_uri: str
    batch_deployment: str | None
    aml_token_scope: str
    aml_local_token: str | None = field(repr=False)
    aml_input_datastore: str | None
    aml_output_datastore: str
    aml_output_container: str
    aml_output_prefix: str
    aml_workspace_id: str | None
    batch_endpoint_name: str | None
    aml_management_endpoint: str
    aml_http_timeout: float
    aml_max_retries: int
    poll_concurrency: int
    queued_limit_minutes: int
    running_limit_minutes: int
    submit_lease_seconds: int
    submit_max_attempts: int
    completion_redelivery_seconds: int
    completion_max_attempts: int
    #: JOIN_MEMORY_MB: what the join's transfers (input, predictions, output) may hold at once.
    join_memory_mb: int
    #: JOIN_CONCURRENCY: ranged reads, or block uploads, of one blob in flight at once.
    join_concurrency: int
    outbox_grace_seconds: int
    #: MAX_JOBS_IN_FLIGHT: Azure ML jobs submitted and not finished, at most, per endpoint (0: no cap).
    max_jobs_in_flight: int
    #: SHARD_THRESHOLD_MB (0: never) and SHARD_PART_MB: inputs above the threshold are split into parts.
    shard_threshold_mb: int
    shard_part_mb: int
    #: AML_RUN_EVENTS=on: the workspace's run events reach `aml_run_events`, so the poller only backstops.
    aml_run_events: bool
    aml_events_backstop_seconds: int
    #: ARM id of the run-events subscription; lets the health check confirm Azure ML's events reach the app.
    aml_event_subscription_id: str | None
    required_columns: tuple[str, ...]
    #: REQUIRED_COLUMNS=auto: the columns come from the deployed model's MLflow signature (shared/usecases/schema.py).
    discover_required_columns: bool
    required_columns_refresh_seconds: int
    max_input_bytes: int
    csv_delimiter: str
    #: DRIFT_REFERENCE: `container/path` of the model's reference profile ("" = no drift work); routes may override.
    drift_reference: str
    #: DRIFT_PSI_THRESHOLD / DRIFT_SHARE_THRESHOLD: a feature drifts at this PSI; a file when this share of them do.
    drift_psi_threshold: float
    drift_share_threshold: float
    #: DRIFT_SAMPLE_MB: files up to this size are profiled whole, bigger ones on an even sample of blocks this big.
    drift_sample_mb: int
    eventgrid_topic_endpoint: str
    eventgrid_topic_key: str | None = field(repr=False)
    event_schema: str
    event_source: str
    #: The user-assigned managed identity's client id (AZURE_CLIENT_ID): every SDK client uses it.
    client_id: str | None
    #: "eventgrid" (Azure) or "logsandcontainerscan" (local polling); function_app reads it at indexing too.
    blob_trigger_source: str
    #: ARM id of the BlobCreated subscription; lets the health check confirm uploads reach the app.
    blob_event_subscription_id: str | None
    appinsights_connection_string: str | None = field(repr=False)
    #: ROUTES (shared/routing.py): input folders scored by their own batch endpoints; `routes.default` is the
    #: settings above. Set once by from_env, from the other settings (so not an __init__ argument).
    routes: Routes = field(init=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        reader = _Reader(env)
        settings = cls(
            storage=_storage(reader),
            input_container=reader.get("INPUT_CONTAINER", "incoming", values.container),
            output_container=reader.get("OUTPUT_CONTAINER", "predictions", values.container),
            archive_container=reader.get("ARCHIVE_CONTAINER", "processed", values.container),
            failed_container=reader.get("FAILED_CONTAINER", "failed", values.container),
            rejected_container=reader.get("REJECTED_CONTAINER", "rejected", values.container),
            jobs_table=reader.get("JOBS_TABLE", "jobs", values.table),
            active_table=reader.get("ACTIVE_JOBS_TABLE", "activejobs", values.table),
            job_list_table=reader.get("JOB_LIST_TABLE", "joblist", values.table),
            completions_queue=reader.get("COMPLETIONS_QUEUE", "job-completions", values.queue),
            batch_endpoint_uri=reader.require("BATCH_ENDPOINT_URI", values.scoring_uri),
            batch_deployment=reader.optional("BATCH_DEPLOYMENT"),
            aml_token_scope=reader.get("AML_TOKEN_SCOPE", "https://ml.azure.com/.default", str),
            aml_local_token=reader.optional("AML_LOCAL_TOKEN"),
            aml_input_datastore=reader.optional("AML_INPUT_DATASTORE"),
            aml_output_datastore=reader.get("AML_OUTPUT_DATASTORE", "dropscore_outputs", values.datastore),
            aml_output_container=reader.get("AML_OUTPUT_CONTAINER", "aml-outputs", values.container),
            aml_output_prefix=reader.get("AML_OUTPUT_PREFIX", "dropscore", values.path_prefix),
            aml_workspace_id=reader.optional("AML_WORKSPACE_ID"),
            batch_endpoint_name=reader.optional("BATCH_ENDPOINT_NAME") or _endpoint_name(env),
            aml_management_endpoint=reader.get(
                "AML_MANAGEMENT_ENDPOINT", "https://management.azure.com", values.http_url
            ),
            aml_http_timeout=reader.get("AML_HTTP_TIMEOUT_SECONDS", "30", values.bounded_float(1, 600)),
            aml_max_retries=reader.get("AML_MAX_RETRIES", "4", values.bounded_int(0, 10)),
            # 32 status calls in flight: at Azure's ~50 ms a call, 1,000 active jobs take ~1.6 s a tick.
            poll_concurrency=reader.get("POLL_CONCURRENCY", "32", values.bounded_int(1, 64)),
            queued_limit_minutes=reader.get("QUEUED_LIMIT_MINUTES", "360", values.bounded_int(1, 30240)),
            running_limit_minutes=reader.get("RUNNING_LIMIT_MINUTES", "720", values.bounded_int(1, 30240)),
            submit_lease_seconds=reader.get("SUBMIT_LEASE_SECONDS", "300", values.bounded_int(1, 86400)),
            submit_max_attempts=reader.get("SUBMIT_MAX_ATTEMPTS", "5", values.bounded_int(1, 100)),
            completion_redelivery_seconds=reader.get(
                "COMPLETION_REDELIVERY_SECONDS", "600", values.bounded_int(1, 86400)
            ),
            completion_max_attempts=reader.get("COMPLETION_MAX_ATTEMPTS", "5", values.bounded_int(1, 100)),
            join_memory_mb=reader.get("JOIN_MEMORY_MB", "56", values.bounded_int(4, 1024)),
            join_concurrency=reader.get("JOIN_CONCURRENCY", "2", values.bounded_int(1, 16)),
            outbox_grace_seconds=reader.get("OUTBOX_GRACE_SECONDS", "60", values.bounded_int(1, 3600)),
            max_jobs_in_flight=reader.get("MAX_JOBS_IN_FLIGHT", "100", values.bounded_int(0, 10000)),
            shard_threshold_mb=reader.get("SHARD_THRESHOLD_MB", "256", values.bounded_int(0, 5 * 1024 * 1024)),
            shard_part_mb=reader.get("SHARD_PART_MB", "32", values.bounded_int(1, 4096)),
            aml_run_events=reader.get("AML_RUN_EVENTS", "off", values.choice("on", "off")) == "on",
            aml_events_backstop_seconds=reader.get("AML_EVENTS_BACKSTOP_SECONDS", "300", values.bounded_int(10, 86400)),
            aml_event_subscription_id=reader.optional("AML_EVENT_SUBSCRIPTION_ID"),
            required_columns=reader.get("REQUIRED_COLUMNS", "", values.column_list),
            discover_required_columns=values.is_auto(env.get("REQUIRED_COLUMNS", "")),
            required_columns_refresh_seconds=reader.get(
                "REQUIRED_COLUMNS_REFRESH_SECONDS", "600", values.bounded_int(10, 86400)
            ),
            max_input_bytes=reader.get("MAX_INPUT_BYTES", str(1024**3), values.bounded_int(1, 5 * 1024**4)),
            csv_delimiter=reader.get("CSV_DELIMITER", ",", values.delimiter),
            drift_reference=reader.get("DRIFT_REFERENCE", "", values.blob_path),
            drift_psi_threshold=reader.get("DRIFT_PSI_THRESHOLD", "0.2", values.bounded_float(0.001, 100)),
            drift_share_threshold=reader.get("DRIFT_SHARE_THRESHOLD", "0.5", values.bounded_float(0.01, 1)),
            drift_sample_mb=reader.get("DRIFT_SAMPLE_MB", "8", values.bounded_int(1, 1024)),
            eventgrid_topic_endpoint=reader.require("EVENTGRID_TOPIC_ENDPOINT", values.http_url),
            eventgrid_topic_key=reader.optional("EVENTGRID_TOPIC_KEY"),
            event_schema=reader.get("EVENT_SCHEMA", "cloudevents", values.choice("cloudevents", "eventgrid")),
            event_source=reader.get("EVENT_SOURCE", "/dropscore", str),
            client_id=reader.optional("AZURE_CLIENT_ID"),
            blob_trigger_source=reader.get(
                "BLOB_TRIGGER_SOURCE", "EventGrid", values.choice("eventgrid", "logsandcontainerscan")
            ),
            blob_event_subscription_id=reader.optional("BLOB_EVENT_SUBSCRIPTION_ID"),
            appinsights_connection_string=reader.optional("APPLICATIONINSIGHTS_CONNECTION_STRING"),
        )
        routes, route_problems = parse_routes(reader.optional("ROUTES"), default=_default_route(settings))
        object.__setattr__(settings, "routes", routes)  # frozen: derived from the settings above, set only here
        reader.problems.extend(route_problems)
        _check_local_secrets(reader, settings)
        _check_discovery(reader, settings)
        reader.raise_if_problems()
        return settings


class _Reader:
    """Collects every problem instead of stopping at the first one."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def optional(self, key: str) -> str | None:
        value = self.env.get(key, "").strip()
        return value or None

    def get(self, key: str, default: str, parse: Callable[[str], T]) -> T:
        raw = self.optional(key)
        try:
            return parse(raw if raw is not None else default)
        except ValueError as exc:
            self.problems.append(_problem(key, raw, exc))
            return parse(default)

    def require(self, key: str, parse: Callable[[str], str]) -> str:
        raw = self.optional(key)
        if raw is None:
            self.problems.append(f"{key}: missing (required)")
            return ""
        try:
            return parse(raw)
        except ValueError as exc:
            self.problems.append(_problem(key, raw, exc))
            return raw

    def raise_if_problems(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)


def _problem(key: str, raw: str | None, exc: ValueError) -> str:
    """`KEY: what is wrong`, with the value only as `shown_value` allows."""
    if isinstance(exc, values.Invalid):
        return f"{key}: {exc.template.format(value=shown_value(key, exc.value))}"
    message = str(exc)
    if raw:  # a parser that quoted the value itself
        message = message.replace(repr(raw), shown_value(key, raw))
    return f"{key}: {message}"


def _storage(reader: _Reader) -> StorageSettings:
    connection = reader.optional(STORAGE)
    if connection is not None:
        return StorageSettings(connection, None, None, None)
    credential = reader.optional(f"{STORAGE}__credential")
    if credential is not None and credential.lower() != "managedidentity":
        shown = shown_value(f"{STORAGE}__credential", credential)
        reader.problems.append(f"{STORAGE}__credential: {shown} is not managedidentity (the only kind supported)")
    client_id = reader.optional(f"{STORAGE}__clientId")
    account = reader.optional(f"{STORAGE}__accountName")
    blob = reader.optional(f"{STORAGE}__blobServiceUri") or _account_url(account, "blob")
    queue = reader.optional(f"{STORAGE}__queueServiceUri") or _account_url(account, "queue")
    table = reader.optional(f"{STORAGE}__tableServiceUri") or _account_url(account, "table")
    if not (blob and queue and table):
        reader.problems.append(
            f"{STORAGE}: missing; set a connection string (local) or {STORAGE}__accountName "
            f"(or __blobServiceUri, __queueServiceUri and __tableServiceUri) for a managed identity"
        )
    return StorageSettings(None, blob, queue, table, client_id)


def _endpoint_name(env: Mapping[str, str]) -> str | None:
    """The endpoint's name is the first label of its scoring URI's host in Azure (`<name>.<region>.inference...`)."""
    host = (urlsplit(env.get("BATCH_ENDPOINT_URI", "").strip()).hostname or "").lower()
    return host.split(".", 1)[0] if host.endswith(".inference.ml.azure.com") else None


def _account_url(account: str | None, service: str) -> str | None:
    return f"https://{account}.{service}.core.windows.net" if account else None


def _default_route(settings: Settings) -> Route:
    """Today's settings: the route of every input under no ROUTES prefix (the only one without ROUTES)."""
    return Route(
        name=DEFAULT_NAME,
        prefix="",
        endpoint_uri=settings.batch_endpoint_uri,
        deployment=settings.batch_deployment,
        required_columns=settings.required_columns,
        discover_required_columns=settings.discover_required_columns,
        shard_threshold_mb=settings.shard_threshold_mb,
        shard_part_mb=settings.shard_part_mb,
        max_jobs_in_flight=settings.max_jobs_in_flight,
        endpoint_name=settings.batch_endpoint_name,
        drift_reference=settings.drift_reference,
    )


def _check_local_secrets(reader: _Reader, settings: Settings) -> None:
    """Keys and static tokens are for the local stack only: refuse them against anything but loopback."""
    if settings.aml_local_token and not values.is_loopback_url(settings.batch_endpoint_uri):
        reader.problems.append(
            "AML_LOCAL_TOKEN: only allowed with a loopback BATCH_ENDPOINT_URI; Azure uses a managed identity"
        )
    elif (
        settings.aml_local_token
        and settings.aml_workspace_id
        and not values.is_loopback_url(settings.aml_management_endpoint)
    ):  # cancel and the model reads send the same token to the management endpoint
        reader.problems.append(
            "AML_LOCAL_TOKEN: with AML_WORKSPACE_ID it is also sent to AML_MANAGEMENT_ENDPOINT, which must then be "
            "loopback (the emulator) too"
        )
    remote_routes = [route.name for route in settings.routes.others if not values.is_loopback_url(route.endpoint_uri)]
    if settings.aml_local_token and remote_routes:  # the token goes to every route's endpoint
        reader.problems.append(
            f"AML_LOCAL_TOKEN: every ROUTES endpoint must be loopback too (not: {', '.join(remote_routes)})"
        )
    if settings.eventgrid_topic_key and not values.is_loopback_url(settings.eventgrid_topic_endpoint):
        reader.problems.append(
            "EVENTGRID_TOPIC_KEY: only allowed with a loopback EVENTGRID_TOPIC_ENDPOINT; "
            "Azure uses a managed identity with the EventGrid Data Sender role"
        )
    connection = settings.storage.connection_string or ""
    has_secret = any(marker in connection.lower() for marker in ("accountkey=", "sharedaccesssignature="))
    if has_secret and not _connection_is_loopback(connection):
        reader.problems.append(
            f"{STORAGE}: account keys and SAS tokens are only allowed for local storage (Azurite); "
            f"use {STORAGE}__accountName with a managed identity"
        )


def _check_discovery(reader: _Reader, settings: Settings) -> None:
    if settings.discover_required_columns and not (settings.aml_workspace_id and settings.batch_endpoint_name):
        reader.problems.append(
            "REQUIRED_COLUMNS: auto reads the deployment's model through Azure ML's ARM API, so it needs "
            "AML_WORKSPACE_ID and BATCH_ENDPOINT_NAME (or an Azure scoring URI it can be read from)"
        )
    auto_routes = [route.name for route in settings.routes.others if route.discover_required_columns]
    if auto_routes and not settings.aml_workspace_id:
        reader.problems.append(
            f"ROUTES: requiredColumns auto (routes {', '.join(auto_routes)}) reads each deployment's model through "
            "Azure ML's ARM API, so it needs AML_WORKSPACE_ID"
        )


def _connection_is_loopback(connection: str) -> bool:
    parts = dict(part.split("=", 1) for part in connection.split(";") if "=" in part and not part.startswith("="))
    endpoints = [value for key, value in parts.items() if key.lower().endswith("endpoint")]
    return bool(endpoints) and all(values.is_loopback_url(url) for url in endpoints)
