"""The job list's HTTP shapes: its query string, its continuation token, its replies (`GET /api/jobs` and
`GET /api/summary`). Pure: no I/O, no azure.functions.

The continuation token is opaque to callers: base64url of `{"s": <state filter>, "r": <list row key>}`. It
names a position in one partition of the list, so it is refused (400) with another state filter.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.core import listing
from shared.events import iso
from shared.httpapi import Reply, job_view
from shared.models import JobPage, JobState

MAX_LIST_LIMIT = 200
DEFAULT_LIST_LIMIT = 50
MAX_PREFIX_LENGTH = 1024


@dataclass(frozen=True)
class ListQuery:
    state: JobState | None
    prefix: str
    limit: int
    #: The list row key the page starts after ("" for the newest).
    after: str


def parse_list_query(values: Mapping[str, str]) -> ListQuery:
    """`?state=<state>&prefix=<input name prefix>&limit=<1..200>&continuation=<token>`; ValueError saying
    what is wrong."""
    state = _state(values.get("state") or "")
    prefix = values.get("prefix") or ""
    if len(prefix) > MAX_PREFIX_LENGTH:
        raise ValueError(f"prefix is longer than {MAX_PREFIX_LENGTH} characters")
    limit_text = values.get("limit") or str(DEFAULT_LIST_LIMIT)
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIST_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}")
    after = _position(values.get("continuation") or "", state)
    return ListQuery(state, prefix, int(limit_text), after)


def jobs_reply(page: JobPage, *, state: JobState | None) -> Reply:
    body: dict[str, Any] = {
        "jobs": [job_view(job) for job in page.jobs],
        "count": len(page.jobs),
        "continuation": None if page.continuation is None else continuation_token(page.continuation, state),
        "scanned": page.scanned,
    }
    return Reply(200, body)


def summary_reply(summary: listing.Summary) -> Reply:
    body = {
        "windowHours": listing.SUMMARY_HOURS,
        "since": iso(summary.since),
        "byState": summary.by_state,
        "hourly": [
            {"hour": iso(hour.hour), "completed": hour.completed, "failed": hour.failed} for hour in summary.hourly
        ],
        "scanned": summary.scanned,
        "truncated": summary.truncated,
    }
    return Reply(200, body)


def continuation_token(after: str, state: JobState | None) -> str:
    raw = json.dumps({"s": state.value if state else "", "r": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _position(token: str, state: JobState | None) -> str:
    if not token:
        return ""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        decoded = json.loads(raw)
    except (binascii.Error, ValueError):
        raise ValueError("continuation is not a token this API returned") from None
    if not isinstance(decoded, dict) or listing.parse_row_key(str(decoded.get("r", ""))) is None:
        raise ValueError("continuation is not a token this API returned")
    if decoded.get("s", "") != (state.value if state else ""):
        raise ValueError("continuation belongs to a list with another state filter: start again without it")
    return str(decoded["r"])


def _state(text: str) -> JobState | None:
    if not text:
        return None
    for state in JobState:
        if state.value.lower() == text.lower():
            return state
    raise ValueError(f"state must be one of {', '.join(s.value for s in JobState)}")
