"""The topic's access keys: `aeg-sas-key` and Event Grid SAS tokens (`aeg-sas-token`)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlsplit

from localdev.eventgrid.errors import PublishError, unauthorized

KEY_HEADER = "aeg-sas-key"
TOKEN_HEADER = "aeg-sas-token"  # noqa: S105 - a header name, not a secret


def _parse_expiry(text: str) -> datetime | None:
    """The `e=` of a token: azure-eventgrid writes `str(datetime)`; other SDKs use .NET's format."""
    candidates = [text.replace("Z", "+00:00")]
    for value in candidates:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            continue
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    for fmt in ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _signature(key: str, unsigned: str) -> bytes | None:
    """HMAC-SHA256 over `r=..&e=..` with the base64-decoded key, as `generate_sas` signs it."""
    try:
        secret = base64.b64decode(key)
    except (binascii.Error, ValueError):
        return None
    return base64.b64encode(hmac.new(secret, unsigned.encode("ascii"), hashlib.sha256).digest())


def verify_token(token: str, keys: tuple[str, ...], events_path: str) -> None:
    """Accept a SAS token signed with one of `keys`, not expired, for this topic's events path."""
    unsigned, sep, raw_signature = token.rpartition("&s=")
    fields = parse_qs(unsigned, keep_blank_values=True)
    if not sep or "r" not in fields or "e" not in fields:
        raise unauthorized("The SAS token is malformed: expected 'r=<resource>&e=<expiry>&s=<signature>'.")
    resource = fields["r"][0]
    if urlsplit(resource).path.rstrip("/").lower() != events_path.rstrip("/").lower():
        raise unauthorized("The SAS token was issued for a different resource than this topic.")
    expiry = _parse_expiry(fields["e"][0])
    if expiry is None:
        raise unauthorized("The SAS token's expiry ('e') cannot be read.")
    if expiry <= datetime.now(UTC):
        raise unauthorized("The SAS token has expired.")
    presented = unquote(raw_signature).encode("ascii", errors="replace")
    for key in keys:
        expected = _signature(key, unsigned)
        if expected is not None and hmac.compare_digest(expected, presented):
            return
    raise unauthorized("The SAS token's signature does not match any access key of this topic.")


def authenticate(headers: dict[str, str], keys: tuple[str, ...], events_path: str) -> None:
    """Raise Event Grid's 401 unless the request carries a valid key or SAS token."""
    key = headers.get(KEY_HEADER)
    if key is not None:
        if any(hmac.compare_digest(key.encode(), candidate.encode()) for candidate in keys):
            return
        raise unauthorized("The request authorization key is not authorized for this topic.")
    token = headers.get(TOKEN_HEADER)
    if token is not None:
        verify_token(token, keys, events_path)
        return
    if headers.get("authorization"):
        raise unauthorized("Bearer tokens are not accepted by the local emulator; use the topic key or SAS.")
    raise unauthorized(
        f"The request did not contain the '{KEY_HEADER}' or '{TOKEN_HEADER}' header with the topic's key."
    )


__all__ = ["KEY_HEADER", "TOKEN_HEADER", "PublishError", "authenticate", "verify_token"]
