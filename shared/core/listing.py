"""The time-ordered job list: its index keys, which index rows still tell the truth, and the 24-hour summary.

Pure: no I/O. The index (adapters/joblist.py) keeps, per job, one row in partition `all` and one in the
partition of its current state (`state-<State>`), both with the RowKey `row_key(created_at, job_id)`: Table
storage returns a partition in RowKey order, and the key inverts the time, so a partition reads newest first
and a page is one range read (`RowKey gt <the last key read>`), however long the ledger grows.

The ledger row is the truth; an index row is a pointer that may be stale (written before the ledger write it
announces, left behind by a crash, or by a state the job has since left). Readers check each row against
its ledger row (`listed_truly`) and drop the ones that disagree; `removable` says when a reader may delete one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.models import TERMINAL, Job, JobState, ListedJob

ALL_PARTITION = "all"
STATE_PARTITION_PREFIX = "state-"
#: 13 digits of milliseconds count down from this moment (the year 2286), so newer rows sort first.
_INVERSION_MS = 10**13 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ROW_KEY = re.compile(r"^(\d{13})-([0-9a-f]{40})$")
#: An index row written this long ago whose ledger row disagrees is not a write still in flight: it is stale.
#: Longer than any ledger write can take to land: the function timeout (host.json, 10 minutes) ends the
#: invocation, SDK retries and all.
STALE_AFTER = timedelta(hours=1)
SUMMARY_HOURS = 24


def state_partition(state: JobState) -> str:
    return STATE_PARTITION_PREFIX + state.value


def partition_for(state: JobState | None) -> str:
    """The one partition a list reads: every job, or the jobs now in `state`."""
    return ALL_PARTITION if state is None else state_partition(state)


def row_key(created_at: datetime, job_id: str) -> str:
    """`<inverted milliseconds>-<job id>`: newest first, and unique per job."""
    return f"{_INVERSION_MS - _epoch_ms(created_at):013d}-{job_id}"


def parse_row_key(text: str) -> tuple[datetime, str] | None:
    """(created_at to the millisecond, job id), or None when `text` is not a row key."""
    match = _ROW_KEY.match(text)
    if match is None:
        return None
    millis = _INVERSION_MS - int(match.group(1))
    return datetime.fromtimestamp(millis / 1000, tz=UTC), match.group(2)


def newer_than(moment: datetime) -> str:
    """The RowKey bound below which every row was created after `moment` (`RowKey lt <this>`)."""
    return f"{_INVERSION_MS - _epoch_ms(moment):013d}"


def listed_truly(job: Job | None, *, key: str, state: JobState | None) -> bool:
    """Does the ledger row back the index row `key` of a list of `state` (None: every job)? It must exist, have
    been created at the key's moment (a duplicate trigger's row has another), and be in that state now."""
    if job is None or row_key(job.created_at, job.job_id) != key:
        return False
    return state is None or job.state == state


def removable(*, written_at: datetime | None, now: datetime) -> bool:
    """A row that disagrees with its ledger row is deleted only once no write it announced can still land."""
    return written_at is not None and now - written_at > STALE_AFTER


def moved_states(before: JobState | None, after: JobState) -> bool:
    """Does a ledger write move the job's index rows (a new state partition)?"""
    return before != after


@dataclass(frozen=True)
class HourCount:
    hour: datetime
    completed: int
    failed: int


@dataclass(frozen=True)
class Summary:
    since: datetime
    by_state: dict[str, int]
    hourly: tuple[HourCount, ...]
    scanned: int
    truncated: bool


def summarize(jobs: Iterable[ListedJob], *, now: datetime, scanned: int, truncated: bool) -> Summary:
    """Jobs received in the last SUMMARY_HOURS by state, and their completions and failures (every other
    terminal state) by the hour they ended (a job listed twice, by a stale row, counts once)."""
    since = now - timedelta(hours=SUMMARY_HOURS)
    first_hour = _hour(now) - timedelta(hours=SUMMARY_HOURS - 1)
    by_state: dict[str, int] = {}
    completed = [0] * SUMMARY_HOURS
    failed = [0] * SUMMARY_HOURS
    # A job's true row is its first: a duplicate trigger's leftover is younger (and says Received).
    first_rows: dict[str, ListedJob] = {}
    for job in jobs:
        if job.job_id not in first_rows or job.created_at < first_rows[job.job_id].created_at:
            first_rows[job.job_id] = job
    for job in first_rows.values():
        if job.created_at < since:
            continue
        by_state[job.state.value] = by_state.get(job.state.value, 0) + 1
        if job.finished_at is None or job.state not in TERMINAL or job.finished_at < first_hour:
            continue
        slot = int((_hour(job.finished_at) - first_hour) / timedelta(hours=1))
        if 0 <= slot < SUMMARY_HOURS:
            (completed if job.state == JobState.COMPLETED else failed)[slot] += 1
    hourly = tuple(HourCount(first_hour + timedelta(hours=i), completed[i], failed[i]) for i in range(SUMMARY_HOURS))
    return Summary(since, dict(sorted(by_state.items())), hourly, scanned, truncated)


def _hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _epoch_ms(moment: datetime) -> int:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - _EPOCH) // timedelta(milliseconds=1)  # integers: a float would round some milliseconds
