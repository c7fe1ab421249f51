"""Parsers for single setting values: each returns the parsed value or raises Invalid naming what is wrong.

config.py applies them and decides whether the value may be shown in the message (`shown_value`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

_CONTAINER_RE = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
_TABLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_QUEUE_RE = _CONTAINER_RE
_LOOPBACK_HOSTS = {"localhost", "::1", "[::1]"}


class Invalid(ValueError):
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


def container(value: str) -> str:
    if not _CONTAINER_RE.match(value):
        raise Invalid(value, "{value} is not a valid container name (3-63 lowercase letters, digits, dashes)")
    return value


def queue(value: str) -> str:
    if not _QUEUE_RE.match(value):
        raise Invalid(value, "{value} is not a valid queue name (3-63 lowercase letters, digits, dashes)")
    return value


def table(value: str) -> str:
    if not _TABLE_RE.match(value):
        raise Invalid(value, "{value} is not a valid table name (3-63 letters or digits, starting with a letter)")
    return value


def datastore(value: str) -> str:
    if not re.match(r"^[A-Za-z0-9_]{1,255}$", value):
        raise Invalid(value, "{value} is not a valid datastore name (letters, digits, underscores)")
    return value


def blob_path(value: str) -> str:
    """`container/path/to/blob` in the app's storage account: "" (off), or a valid container and a blob name."""
    if not value:
        return ""
    container_name, _, name = value.strip("/").partition("/")
    if not _CONTAINER_RE.match(container_name) or not name or any(part in {"", ".", ".."} for part in name.split("/")):
        raise Invalid(value, "{value} is not container/path/to/blob (a container name, then the blob's path)")
    return f"{container_name}/{name}"


def path_prefix(value: str) -> str:
    value = value.strip("/")
    if not value or any(part in {"", ".", ".."} for part in value.split("/")):
        raise Invalid(value, "{value} is not a valid path prefix")
    return value


def http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise Invalid(value, "{value} is not an http(s) URL")
    if parts.scheme == "http" and not is_loopback_url(value):
        raise Invalid(value, "{value}: plain http is only allowed on loopback")
    return value.rstrip("/")


def scoring_uri(value: str) -> str:
    url = http_url(value)
    return url if url.endswith("/jobs") else url + "/jobs"


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    return bounded(int, "an integer", low, high)


def bounded_float(low: float, high: float) -> Callable[[str], float]:
    return bounded(float, "a number", low, high)


N = TypeVar("N", int, float)


def bounded(kind: Callable[[str], N], what: str, low: N, high: N) -> Callable[[str], N]:
    def parse(value: str) -> N:
        try:
            number = kind(value)
        except ValueError:
            raise Invalid(value, f"{{value}} is not {what}") from None
        if not low <= number <= high:
            raise Invalid(value, f"{{value}} is outside {low}..{high}")
        return number

    return parse


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value.lower() not in allowed:
            raise Invalid(value, f"{{value}} is not one of {', '.join(allowed)}")
        return value.lower()

    return parse


def is_auto(value: str) -> bool:
    """REQUIRED_COLUMNS=auto: discover the columns from the model instead of listing them."""
    return value.strip().lower() == "auto"


def column_list(value: str) -> tuple[str, ...]:
    if is_auto(value):
        return ()
    columns = tuple(part.strip() for part in value.split(",") if part.strip())
    if len(set(columns)) != len(columns):
        raise ValueError("lists a column twice")
    return columns


def delimiter(value: str) -> str:
    if value in {"\\t", "tab"}:
        return "\t"
    if len(value) != 1 or value in {'"', "\n", "\r"}:
        raise Invalid(value, "{value} is not a single-character delimiter")
    return value
