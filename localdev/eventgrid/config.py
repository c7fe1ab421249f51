"""Emulator settings and the `--subscription NAME=URL[;key=value...]` syntax."""

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


class ConfigError(ValueError):
    """A command-line setting the emulator cannot run with; the message says which."""


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

    @property
    def topic_id(self) -> str:
        """The ARM id Event Grid puts in `topic` (EG schema) of delivered events."""
        return (
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local/"
            f"providers/Microsoft.EventGrid/topics/{self.topic_name}"
        )


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def parse_subscription(
    spec: str,
    *,
    input_schema: str,
    max_delivery_attempts: int = DEFAULT_MAX_DELIVERY_ATTEMPTS,
    event_ttl_minutes: float = DEFAULT_EVENT_TTL_MINUTES,
) -> Subscription:
    """Parse `NAME=URL[;types=A,B][;subject-begins=..][;subject-ends=..][;schema=..]
    [;max-attempts=N][;ttl=MINUTES]`; the schema defaults to the topic's input schema."""
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
    for part in filter(None, (p.strip() for p in rest.split(";"))):
        key, eq, value = part.partition("=")
        if not eq:
            raise ConfigError(f"subscription {name!r}: option {key!r} needs a value (key=value)")
        options[key.strip().lower()] = value.strip()
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
    )


def check_unique(subscriptions: tuple[Subscription, ...]) -> None:
    seen: set[str] = set()
    for sub in subscriptions:
        if sub.name.lower() in seen:
            raise ConfigError(f"subscription {sub.name!r} is defined twice")
        seen.add(sub.name.lower())
