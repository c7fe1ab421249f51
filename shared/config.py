"""App settings: read once, lazily, from a mapping (os.environ in the app).

`Settings.from_env` checks every setting and raises ONE ConfigError naming all the missing
or invalid keys, so a misconfigured app says everything wrong on its first invocation.
Nothing here runs at import time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from shared.errors import ConfigError
from shared.redaction import shown_value

T = TypeVar("T")

STORAGE = "AzureWebJobsStorage"
_CONTAINER_RE = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
_TABLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_QUEUE_RE = _CONTAINER_RE
_LOOPBACK_HOSTS = {"localhost", "::1", "[::1]"}


class _Invalid(ValueError):
    """A parser's complaint that names the value: the reader fills `template`'s `{value}` slot, because
    only it knows the setting's name and so whether the value may be shown at all (`shown_value`)."""

    def __init__(self, value: str, template: str) -> None:
        super().__init__(template)
        self.value = value
        self.template = template


def is_loopback_url(url: str) -> bool:
    """True for http(s) URLs whose host is this machine (where local keys and tokens are allowed)."""
    host = (urlsplit(url).hostname or "").lower()
    return host in _LOOPBACK_HOSTS or host.startswith("127.")


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
    outbox_grace_seconds: int
    required_columns: tuple[str, ...]
    max_input_bytes: int
    csv_delimiter: str
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

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        reader = _Reader(env)
        settings = cls(
            storage=_storage(reader),
            input_container=reader.get("INPUT_CONTAINER", "incoming", _container),
            output_container=reader.get("OUTPUT_CONTAINER", "predictions", _container),
            archive_container=reader.get("ARCHIVE_CONTAINER", "processed", _container),
            failed_container=reader.get("FAILED_CONTAINER", "failed", _container),
            rejected_container=reader.get("REJECTED_CONTAINER", "rejected", _container),
            jobs_table=reader.get("JOBS_TABLE", "jobs", _table),
            active_table=reader.get("ACTIVE_JOBS_TABLE", "activejobs", _table),
            completions_queue=reader.get("COMPLETIONS_QUEUE", "job-completions", _queue),
            batch_endpoint_uri=reader.require("BATCH_ENDPOINT_URI", _scoring_uri),
            batch_deployment=reader.optional("BATCH_DEPLOYMENT"),
            aml_token_scope=reader.get("AML_TOKEN_SCOPE", "https://ml.azure.com/.default", str),
            aml_local_token=reader.optional("AML_LOCAL_TOKEN"),
            aml_input_datastore=reader.optional("AML_INPUT_DATASTORE"),
            aml_output_datastore=reader.get("AML_OUTPUT_DATASTORE", "dropscore_outputs", _datastore),
            aml_output_container=reader.get("AML_OUTPUT_CONTAINER", "aml-outputs", _container),
            aml_output_prefix=reader.get("AML_OUTPUT_PREFIX", "dropscore", _path_prefix),
            aml_workspace_id=reader.optional("AML_WORKSPACE_ID"),
            batch_endpoint_name=reader.optional("BATCH_ENDPOINT_NAME") or _endpoint_name(env),
            aml_management_endpoint=reader.get("AML_MANAGEMENT_ENDPOINT", "https://management.azure.com", _http_url),
            aml_http_timeout=reader.get("AML_HTTP_TIMEOUT_SECONDS", "30", _bounded_float(1, 600)),
            aml_max_retries=reader.get("AML_MAX_RETRIES", "4", _bounded_int(0, 10)),
            poll_concurrency=reader.get("POLL_CONCURRENCY", "8", _bounded_int(1, 64)),
            queued_limit_minutes=reader.get("QUEUED_LIMIT_MINUTES", "360", _bounded_int(1, 30240)),
            running_limit_minutes=reader.get("RUNNING_LIMIT_MINUTES", "720", _bounded_int(1, 30240)),
            submit_lease_seconds=reader.get("SUBMIT_LEASE_SECONDS", "300", _bounded_int(1, 86400)),
            submit_max_attempts=reader.get("SUBMIT_MAX_ATTEMPTS", "5", _bounded_int(1, 100)),
            completion_redelivery_seconds=reader.get("COMPLETION_REDELIVERY_SECONDS", "600", _bounded_int(1, 86400)),
            completion_max_attempts=reader.get("COMPLETION_MAX_ATTEMPTS", "5", _bounded_int(1, 100)),
            outbox_grace_seconds=reader.get("OUTBOX_GRACE_SECONDS", "60", _bounded_int(1, 3600)),
            required_columns=reader.get("REQUIRED_COLUMNS", "", _column_list),
            max_input_bytes=reader.get("MAX_INPUT_BYTES", str(1024**3), _bounded_int(1, 5 * 1024**4)),
            csv_delimiter=reader.get("CSV_DELIMITER", ",", _delimiter),
            eventgrid_topic_endpoint=reader.require("EVENTGRID_TOPIC_ENDPOINT", _http_url),
            eventgrid_topic_key=reader.optional("EVENTGRID_TOPIC_KEY"),
            event_schema=reader.get("EVENT_SCHEMA", "cloudevents", _choice("cloudevents", "eventgrid")),
            event_source=reader.get("EVENT_SOURCE", "/dropscore", str),
            client_id=reader.optional("AZURE_CLIENT_ID"),
            blob_trigger_source=reader.get(
                "BLOB_TRIGGER_SOURCE", "EventGrid", _choice("eventgrid", "logsandcontainerscan")
            ),
            blob_event_subscription_id=reader.optional("BLOB_EVENT_SUBSCRIPTION_ID"),
            appinsights_connection_string=reader.optional("APPLICATIONINSIGHTS_CONNECTION_STRING"),
        )
        _check_local_secrets(reader, settings)
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
    if isinstance(exc, _Invalid):
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


def _check_local_secrets(reader: _Reader, settings: Settings) -> None:
    """Keys and static tokens are for the local stack only: refuse them against anything but loopback."""
    if settings.aml_local_token and not is_loopback_url(settings.batch_endpoint_uri):
        reader.problems.append(
            "AML_LOCAL_TOKEN: only allowed with a loopback BATCH_ENDPOINT_URI; Azure uses a managed identity"
        )
    if settings.eventgrid_topic_key and not is_loopback_url(settings.eventgrid_topic_endpoint):
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


def _connection_is_loopback(connection: str) -> bool:
    parts = dict(part.split("=", 1) for part in connection.split(";") if "=" in part and not part.startswith("="))
    endpoints = [value for key, value in parts.items() if key.lower().endswith("endpoint")]
    return bool(endpoints) and all(is_loopback_url(url) for url in endpoints)


def _container(value: str) -> str:
    if not _CONTAINER_RE.match(value):
        raise _Invalid(value, "{value} is not a valid container name (3-63 lowercase letters, digits, dashes)")
    return value


def _queue(value: str) -> str:
    if not _QUEUE_RE.match(value):
        raise _Invalid(value, "{value} is not a valid queue name (3-63 lowercase letters, digits, dashes)")
    return value


def _table(value: str) -> str:
    if not _TABLE_RE.match(value):
        raise _Invalid(value, "{value} is not a valid table name (3-63 letters or digits, starting with a letter)")
    return value


def _datastore(value: str) -> str:
    if not re.match(r"^[A-Za-z0-9_]{1,255}$", value):
        raise _Invalid(value, "{value} is not a valid datastore name (letters, digits, underscores)")
    return value


def _path_prefix(value: str) -> str:
    value = value.strip("/")
    if not value or any(part in {"", ".", ".."} for part in value.split("/")):
        raise _Invalid(value, "{value} is not a valid path prefix")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise _Invalid(value, "{value} is not an http(s) URL")
    if parts.scheme == "http" and not is_loopback_url(value):
        raise _Invalid(value, "{value}: plain http is only allowed on loopback")
    return value.rstrip("/")


def _scoring_uri(value: str) -> str:
    url = _http_url(value)
    return url if url.endswith("/jobs") else url + "/jobs"


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    return _bounded(int, "an integer", low, high)


def _bounded_float(low: float, high: float) -> Callable[[str], float]:
    return _bounded(float, "a number", low, high)


N = TypeVar("N", int, float)


def _bounded(kind: Callable[[str], N], what: str, low: N, high: N) -> Callable[[str], N]:
    def parse(value: str) -> N:
        try:
            number = kind(value)
        except ValueError:
            raise _Invalid(value, f"{{value}} is not {what}") from None
        if not low <= number <= high:
            raise _Invalid(value, f"{{value}} is outside {low}..{high}")
        return number

    return parse


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value.lower() not in allowed:
            raise _Invalid(value, f"{{value}} is not one of {', '.join(allowed)}")
        return value.lower()

    return parse


def _column_list(value: str) -> tuple[str, ...]:
    columns = tuple(part.strip() for part in value.split(",") if part.strip())
    if len(set(columns)) != len(columns):
        raise ValueError("lists a column twice")
    return columns


def _delimiter(value: str) -> str:
    if value in {"\\t", "tab"}:
        return "\t"
    if len(value) != 1 or value in {'"', "\n", "\r"}:
        raise _Invalid(value, "{value} is not a single-character delimiter")
    return value
