"""What an error message may show of a setting's value: never a credential, never a SAS or user info.

Pure: ConfigError messages (which are logged) pass every echoed value through `shown_value`.
"""

from __future__ import annotations

import re

#: What a ConfigError says instead of a value that may be a credential (its message is logged).
HIDDEN = "(value hidden)"
# Settings whose values may be credentials, by name: connection strings, keys, tokens, SAS, passwords.
_CREDENTIAL_SETTING_RE = re.compile(
    r"(^AzureWebJobsStorage$|CONNECTION_?STRING$|AUTHENTICATION_?STRING$|_KEY$|_TOKEN$|_SAS$|_SECRET$|_PASSWORD$)",
    re.IGNORECASE,
)
# Credentials inside a value: connection-string keys and the signature of a SAS.
_CREDENTIAL_MARKERS = ("accountkey=", "sharedaccesskey=", "sharedaccesssignature=", "sig=", "password=")
# Account keys, topic keys and random tokens are long runs of base64(url) characters mixing cases and
# digits; container names, GUIDs, ARM ids and paths are lowercase, or broken up by dots.
_KEY_LIKE_RE = re.compile(r"[A-Za-z0-9+/_-]{32,}={0,2}")
_URL_USER_INFO_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def shown_value(key: str, value: str) -> str:
    """`value` as an error message about setting `key` may show it: a URL without its query string,
    fragment or user info (where a SAS or a password travels), and nothing at all for a setting that
    may hold a credential or a value that looks like one."""
    if _CREDENTIAL_SETTING_RE.search(key):
        return HIDDEN
    visible, hidden_parts = _url_without_credentials(value)
    if _looks_like_credential(visible):
        return HIDDEN
    return repr(visible) + (f" ({' and '.join(hidden_parts)} hidden)" if hidden_parts else "")


def _url_without_credentials(value: str) -> tuple[str, list[str]]:
    if "://" not in value:
        return value, []
    hidden_parts = []
    without_user, found = _URL_USER_INFO_RE.subn(r"\1", value)
    if found:
        hidden_parts.append("user info")
    without_query = re.split(r"[?#]", without_user, maxsplit=1)[0]
    if without_query != without_user:
        hidden_parts.append("query string")
    return without_query, hidden_parts


def _looks_like_credential(value: str) -> bool:
    lowered = value.lower()
    if any(marker in lowered for marker in _CREDENTIAL_MARKERS):
        return True
    return any(
        any(c.isupper() for c in run) and any(c.islower() for c in run) and any(c.isdigit() for c in run)
        for run in _KEY_LIKE_RE.findall(value)
    )
