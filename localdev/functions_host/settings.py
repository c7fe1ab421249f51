"""App settings (local.settings.json, env file, environment) and host.json, read the way Core Tools does."""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

_TIMESPAN = re.compile(r"^(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2}):(?P<s>\d{1,2}(?:\.\d+)?)$")
_SETTING_REF = re.compile(r"%([^%]+)%")


class SettingsError(ValueError):
    """A setting, connection or host.json value the host cannot use."""


def parse_timespan(text: str) -> timedelta:
    """Parse a .NET TimeSpan string `[d.]hh:mm:ss[.fff]` as host.json writes durations."""
    match = _TIMESPAN.match(text.strip())
    if not match:
        raise SettingsError(f"not a TimeSpan ([d.]hh:mm:ss): {text!r}")
    return timedelta(
        days=int(match["days"] or 0),
        hours=int(match["h"]),
        minutes=int(match["m"]),
        seconds=float(match["s"]),
    )


def read_local_settings(path: Path) -> dict[str, str]:
    """The `Values` of a local.settings.json; a missing file means no values (Core Tools warns, then runs)."""
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text(encoding="utf-8-sig"))
    if doc.get("IsEncrypted"):
        raise SettingsError(f"{path}: encrypted local.settings.json is not supported; decrypt it first")
    values = doc.get("Values") or {}
    return {str(k): "" if v is None else str(v) for k, v in values.items()}


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and `#` comments skipped, one level of matching quotes removed."""
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def apply_settings(local_values: dict[str, str], env_file_values: dict[str, str]) -> None:
    """Put the settings into os.environ with the precedence documented in docs/functions-dev-host.md.

    The env file is an explicit override, so it beats the inherited environment; local.settings.json
    `Values` only fill in what is not set yet, exactly like Core Tools does.
    """
    os.environ.update(env_file_values)
    for key, value in local_values.items():
        os.environ.setdefault(key, value)


def resolve_setting_refs(value: str, *, where: str) -> str:
    """Replace every `%Name%` with the app setting `Name`; an unknown setting is an indexing error."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise SettingsError(f"{where}: '%{name}%' does not resolve to a value (no app setting {name!r})")
        return os.environ[name]

    return _SETTING_REF.sub(lookup, value)


def resolve_binding_settings(binding: dict[str, Any], *, where: str) -> dict[str, Any]:
    return {
        key: resolve_setting_refs(value, where=f"{where}.{key}") if isinstance(value, str) else value
        for key, value in binding.items()
    }


def connection_setting_name(name: str | None) -> str:
    """The app setting that holds a binding's `connection`: `X` itself, then `AzureWebJobsX`; empty means
    `AzureWebJobsStorage`. This is what an SDK-type binding's model binding data names as `Connection`."""
    candidates = ["AzureWebJobsStorage"] if not name else [name, f"AzureWebJobs{name}"]
    return next((candidate for candidate in candidates if os.environ.get(candidate)), candidates[0])


def resolve_connection(name: str | None) -> str:
    """Connection string for a binding's `connection`, with the host's lookup order (connection_setting_name).

    Identity-based `X__serviceUri` connections need a token credential over https, which Azurite cannot
    serve, so they are refused.
    """
    value = os.environ.get(connection_setting_name(name))
    if value:
        return value
    candidates = ["AzureWebJobsStorage"] if not name else [name, f"AzureWebJobs{name}"]
    label = name or "AzureWebJobsStorage"
    if any(key.startswith(f"{label}__") for key in os.environ):
        raise SettingsError(
            f"connection {label!r}: identity-based (__serviceUri) connections are not supported locally"
        )
    raise SettingsError(f"connection {label!r}: no app setting {' or '.join(map(repr, candidates))}")


def default_host_id() -> str:
    """Like the host on a dev box: the machine name, lower case, [a-z0-9-] only, at most 32 characters."""
    # App setting names keep the host's casing; Linux environments are case-sensitive.
    names = ("AzureFunctionsWebHost__hostid", "AzureFunctionsWebHost__hostId")
    configured = next((os.environ[n] for n in names if os.environ.get(n)), None)
    raw = configured or socket.gethostname()
    cleaned = re.sub(r"[^a-z0-9-]", "", raw.lower()).strip("-")
    return (cleaned or "localhost")[:32].rstrip("-")


@dataclass(frozen=True)
class QueueOptions:
    max_polling_interval: timedelta = timedelta(minutes=1)
    visibility_timeout: timedelta = timedelta(0)
    batch_size: int = 16
    #: Fetch another batch once this few messages are still running; -1: the host's default, batchSize / 2.
    new_batch_threshold: int = -1
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @property
    def fetch_threshold(self) -> int:
        return self.batch_size // 2 if self.new_batch_threshold < 0 else self.new_batch_threshold


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json this host honours (see docs/functions-dev-host.md)."""

    function_timeout: timedelta | None = timedelta(minutes=30)
    functions: tuple[str, ...] | None = None
    route_prefix: str = "api"
    poison_blob_threshold: int = 5
    blob_parallelism: int = 8
    queues: QueueOptions = field(default_factory=QueueOptions)


def _queue_options(section: dict[str, Any]) -> QueueOptions:
    defaults = QueueOptions()
    encoding = str(section.get("messageEncoding", defaults.message_encoding)).lower()
    if encoding not in {"base64", "none"}:
        raise SettingsError(f"host.json extensions.queues.messageEncoding must be base64 or none, not {encoding!r}")
    return QueueOptions(
        max_polling_interval=parse_timespan(section["maxPollingInterval"])
        if "maxPollingInterval" in section
        else defaults.max_polling_interval,
        visibility_timeout=parse_timespan(section["visibilityTimeout"])
        if "visibilityTimeout" in section
        else defaults.visibility_timeout,
        batch_size=max(1, min(32, int(section.get("batchSize", defaults.batch_size)))),
        new_batch_threshold=max(-1, int(section.get("newBatchThreshold", defaults.new_batch_threshold))),
        max_dequeue_count=max(1, int(section.get("maxDequeueCount", defaults.max_dequeue_count))),
        message_encoding=encoding,
    )


def read_host_json(path: Path) -> HostConfig:
    if not path.is_file():
        return HostConfig()
    doc = json.loads(path.read_text(encoding="utf-8-sig"))
    extensions = doc.get("extensions") or {}
    blobs = extensions.get("blobs") or {}
    timeout_text = doc.get("functionTimeout")
    timeout = (
        None
        if timeout_text in {"-1", -1}
        else parse_timespan(timeout_text)
        if timeout_text
        else HostConfig().function_timeout
    )
    functions = doc.get("functions")
    return HostConfig(
        function_timeout=timeout,
        functions=tuple(functions) if functions is not None else None,
        route_prefix=str((extensions.get("http") or {}).get("routePrefix", "api")).strip("/"),
        # Extension 5.x clamps the threshold to at least 1.
        poison_blob_threshold=max(1, int(blobs.get("poisonBlobThreshold", 5))),
        blob_parallelism=max(1, int(blobs.get("maxDegreeOfParallelism", 8 * (os.cpu_count() or 1)))),
        queues=_queue_options(extensions.get("queues") or {}),
    )


def is_disabled(function_name: str) -> bool:
    value = os.environ.get(f"AzureWebJobs.{function_name}.Disabled", "")
    return value.strip().lower() in {"true", "1"}
