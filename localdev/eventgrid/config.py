"""Emulator settings and the `--subscription NAME=URL[;key=value...]` syntax (advanced filters included)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

CLOUDEVENTS = "cloudevents"
EVENTGRID = "eventgrid"
SCHEMAS = (CLOUDEVENTS, EVENTGRID)

DEFAULT_MAX_DELIVERY_ATTEMPTS = 30
DEFAULT_EVENT_TTL_MINUTES = 1440
# Azure's subscription names: 3-64 characters, letters, digits and hyphens.
_NAME_RE = re.compile(r"^[A-Za-z0-9-]{3,64}$")
# An advanced filter's key: a top-level property, or a path into it (`data.runStatus`, `data.a.b`).
_KEY_RE = re.compile(r"^[A-Za-z0-9_$@-]+(\.[A-Za-z0-9_$@-]+)*$")
# An ARM resource id, as Event Grid puts it in `topic`.
_ARM_ID_RE = re.compile(r"^/subscriptions/[^/\s]+/resourceGroups/[^/\s]+/providers/[^\s]+$", re.IGNORECASE)

#: The advanced filter operators the emulator evaluates (Azure's names; given in any case on the command line).
STRING_OPERATORS = ("StringIn", "StringNotIn", "StringBeginsWith", "StringEndsWith", "StringContains")
# Azure's limits per subscription: 25 advanced filters, 25 values across all of them, 512 characters a value.
MAX_ADVANCED_FILTERS = 25
MAX_ADVANCED_FILTER_VALUES = 25
MAX_FILTER_VALUE_LENGTH = 512


class ConfigError(ValueError):
    """A command-line setting the emulator cannot run with; the message says which."""


@dataclass(frozen=True)
class AdvancedFilter:
    """One of a subscription's advanced filters (all of them must pass: AND; its values: OR, or for
    StringNotIn none may match). Keys and values compare without case, as in Azure."""

    key: str
    operator: str
    values: tuple[str, ...]

    def describe(self) -> dict[str, object]:
        return {"operatorType": self.operator, "key": self.key, "values": list(self.values)}


@dataclass(frozen=True)
class Subscription:
    """One webhook event subscription with its filter and retry policy, as on an Azure topic."""

    name: str
    url: str
    schema: str
    included_types: tuple[str, ...] = ()
    subject_begins_with: str = ""
    subject_ends_with: str = ""
    max_delivery_attempts: int = DEFAULT_MAX_DELIVERY_ATTEMPTS
    event_ttl_minutes: float = DEFAULT_EVENT_TTL_MINUTES
    advanced_filters: tuple[AdvancedFilter, ...] = ()

    @property
    def safe_url(self) -> str:
        """The URL without its query string: webhook URLs often carry a function key (`code=`)."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "url": self.safe_url,
            "schema": self.schema,
            "types": list(self.included_types),
            "subjectBeginsWith": self.subject_begins_with,
            "subjectEndsWith": self.subject_ends_with,
            "advancedFilters": [f.describe() for f in self.advanced_filters],
            "maxDeliveryAttempts": self.max_delivery_attempts,
            "eventTimeToLiveInMinutes": self.event_ttl_minutes,
        }


@dataclass(frozen=True)
class EmulatorConfig:
    keys: tuple[str, ...]
    events_log: Path
    state_dir: Path
    input_schema: str = CLOUDEVENTS
    subscriptions: tuple[Subscription, ...] = ()
    dead_letter_dir: Path | None = None
    retry_scale: float = 1.0
    delivery_timeout: float = 30.0
    topic_name: str = "local"
    host: str = "127.0.0.1"
    port: int = 0
    # `--topic-id`: the publisher's ARM id, as a system topic sends it (a workspace's, a storage account's).
    topic_resource_id: str = ""

    @property
    def topic_id(self) -> str:
        """The ARM id Event Grid puts in `topic` (EG schema) of delivered events: `--topic-id`, else a
        custom topic's id built from `--topic-name`."""
        if self.topic_resource_id:
            return self.topic_resource_id
        return (
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local/"
            f"providers/Microsoft.EventGrid/topics/{self.topic_name}"
        )


def check_topic_id(value: str) -> str:
    """`--topic-id`: an ARM resource id (`/subscriptions/<id>/resourceGroups/<rg>/providers/...`)."""
    value = value.strip()
    if not _ARM_ID_RE.match(value):
        raise ConfigError(
            f"--topic-id {value!r} is not an ARM resource id (/subscriptions/<id>/resourceGroups/<rg>/providers/...)"
        )
    return value


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def parse_filter(text: str, subscription: str) -> AdvancedFilter:
    """`KEY:OPERATOR:VALUE1|VALUE2...`, e.g. `data.runStatus:StringIn:Completed|Failed|Canceled`."""
    key, _, rest = text.partition(":")
    operator, sep, values_text = rest.partition(":")
    key, operator = key.strip(), operator.strip()
    where = f"subscription {subscription!r}: filter {text!r}"
    if not sep:
        raise ConfigError(f"{where}: expected KEY:OPERATOR:VALUE1|VALUE2...")
    if not _KEY_RE.match(key):
        raise ConfigError(f"{where}: the key must be a property or a dotted path such as data.runStatus")
    canonical = {op.lower(): op for op in STRING_OPERATORS}.get(operator.lower())
    if canonical is None:
        raise ConfigError(f"{where}: operator must be one of {', '.join(STRING_OPERATORS)}")
    values = tuple(value.strip() for value in values_text.split("|"))
    if not all(values):
        raise ConfigError(f"{where}: needs at least one value, and no empty one (VALUE1|VALUE2...)")
    if any(len(value) > MAX_FILTER_VALUE_LENGTH for value in values):
        raise ConfigError(f"{where}: a value is longer than {MAX_FILTER_VALUE_LENGTH} characters (Azure's limit)")
    return AdvancedFilter(key, canonical, values)


def _check_filter_limits(filters: tuple[AdvancedFilter, ...], subscription: str) -> None:
    if len(filters) > MAX_ADVANCED_FILTERS:
        raise ConfigError(f"subscription {subscription!r}: at most {MAX_ADVANCED_FILTERS} filters (as in Azure)")
    if sum(len(f.values) for f in filters) > MAX_ADVANCED_FILTER_VALUES:
        raise ConfigError(
            f"subscription {subscription!r}: at most {MAX_ADVANCED_FILTER_VALUES} values across all filters "
            "(as in Azure)"
        )


def parse_subscription(
    spec: str,
    *,
    input_schema: str,
    max_delivery_attempts: int = DEFAULT_MAX_DELIVERY_ATTEMPTS,
    event_ttl_minutes: float = DEFAULT_EVENT_TTL_MINUTES,
) -> Subscription:
    """Parse `NAME=URL[;types=A,B][;subject-begins=..][;subject-ends=..][;filter=KEY:OPERATOR:V1|V2]...
    [;schema=..][;max-attempts=N][;ttl=MINUTES]` (`filter` repeatable); the schema defaults to the topic's
    input schema."""
    head, _, rest = spec.partition(";")
    name, sep, url = head.partition("=")
    name, url = name.strip(), url.strip()
    if not sep or not url:
        raise ConfigError(f"subscription {name.strip()!r}: expected NAME=URL[;key=value...]")
    if not _NAME_RE.match(name):
        raise ConfigError(f"subscription {name!r}: names are 3-64 letters, digits or hyphens")
    if urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError(f"subscription {name!r}: the endpoint must be an http(s) URL")
    options: dict[str, str] = {}
    filters: list[AdvancedFilter] = []
    for part in filter(None, (p.strip() for p in rest.split(";"))):
        key, eq, value = part.partition("=")
        if not eq:
            raise ConfigError(f"subscription {name!r}: option {key!r} needs a value (key=value)")
        if key.strip().lower() == "filter":
            filters.append(parse_filter(value, name))
            continue
        options[key.strip().lower()] = value.strip()
    _check_filter_limits(tuple(filters), name)
    known = {"types", "subject-begins", "subject-ends", "schema", "max-attempts", "ttl"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"subscription {name!r}: unknown option(s) {', '.join(unknown)}")
    schema = options.get("schema", input_schema).lower()
    if schema not in SCHEMAS:
        raise ConfigError(f"subscription {name!r}: schema must be one of {', '.join(SCHEMAS)}")
    if input_schema == CLOUDEVENTS and schema == EVENTGRID:
        # Azure does not offer CloudEvents input with Event Grid schema delivery either.
        raise ConfigError(
            f"subscription {name!r}: a CloudEvents topic delivers CloudEvents only (schema=eventgrid "
            "needs --input-schema eventgrid)"
        )
    try:
        attempts = int(options.get("max-attempts", max_delivery_attempts))
        ttl = float(options.get("ttl", event_ttl_minutes))
    except ValueError as exc:
        raise ConfigError(f"subscription {name!r}: {exc}") from exc
    if not 1 <= attempts <= 30:
        raise ConfigError(f"subscription {name!r}: max-attempts must be 1-30 (as in Azure)")
    if not 0 < ttl <= 1440:
        raise ConfigError(f"subscription {name!r}: ttl must be in (0, 1440] minutes (as in Azure)")
    return Subscription(
        name=name,
        url=url,
        schema=schema,
        included_types=_split_list(options.get("types", "")),
        subject_begins_with=options.get("subject-begins", ""),
        subject_ends_with=options.get("subject-ends", ""),
        max_delivery_attempts=attempts,
        event_ttl_minutes=ttl,
        advanced_filters=tuple(filters),
    )


def check_unique(subscriptions: tuple[Subscription, ...]) -> None:
    seen: set[str] = set()
    for sub in subscriptions:
        if sub.name.lower() in seen:
            raise ConfigError(f"subscription {sub.name!r} is defined twice")
        seen.add(sub.name.lower())
