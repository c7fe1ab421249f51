"""Tracebacks in the stack's logs, and which of them the chaos explains.

A traceback is explained only by an entry of ALLOWED: the part whose log holds it, what it says, and the
outage it must fall in (give or take SLACK_SECONDS). Anything else fails the run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from localdev.chaos.journal import Window

TRACEBACK = "Traceback (most recent call last):"
_CHAINED = ("During handling of the above exception", "The above exception was the direct cause")
# The asctime every part's Python logging starts a line with (local time).
_STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),(\d{3}) ")
#: Retries and reconnects take a moment after a part comes back: a traceback this long after still counts.
SLACK_SECONDS = 15.0


@dataclass(frozen=True)
class Traceback:
    part: str  # whose log holds it
    at: float | None  # when the log line that introduced it was written (None: no timestamped line before it)
    heading: str  # that log line
    error: str  # the last exception line of the chain

    def describe(self) -> str:
        return f"{self.part}: {self.heading[:160]} / {self.error[:200]}"


@dataclass(frozen=True)
class Explained:
    """An allow-list entry: tracebacks in `part`'s log matching `pattern` (searched in the heading and the
    exception line) while `during` was down; `during` None: at any time."""

    part: str
    pattern: str
    during: str | None
    why: str

    def covers(self, traceback: Traceback, windows: Iterable[Window]) -> bool:
        if traceback.part != self.part or not re.search(self.pattern, f"{traceback.heading}\n{traceback.error}"):
            return False
        if self.during is None:
            return True
        return traceback.at is not None and any(
            window.part == self.during
            and window.start - 1.0 <= traceback.at <= (window.end or traceback.at) + SLACK_SECONDS
            for window in windows
        )


#: A `kill -9` leaves no traceback (the host just stops), the calls made while Azurite restarts are retried by
#: the storage SDK until it is back, and the topic outage only delays events (a warning, not a traceback). An
#: entry added here must name the outage that causes it, so the same traceback outside that outage still fails
#: the run; one not tied to an outage says why it is the designed outcome.
ALLOWED: tuple[Explained, ...] = (
    Explained(
        part="functions-host",
        pattern=r"EventTooEarly",
        during=None,
        why="a run event for a job whose POST answer is not recorded yet (the faults drop or fail invoke answers "
        "after creating the job) fails its delivery on purpose, so Event Grid delivers it again later",
    ),
)


def _stamp(line: str) -> float | None:
    match = _STAMP.match(line)
    if match is None:
        return None
    return datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S").timestamp() + int(match[2]) / 1000


def find_tracebacks(text: str, part: str) -> list[Traceback]:
    """Every traceback in a log; a chain of chained exceptions counts once, with its last exception."""
    found: list[Traceback] = []
    heading, at = "", None
    inside = awaiting_error = False
    previous = ""
    for line in text.splitlines():
        stamp = _stamp(line)
        if stamp is not None:  # a new log record ends any traceback
            heading, at = line, stamp
            inside = awaiting_error = False
        elif line.strip() == TRACEBACK:
            if not (inside and previous.startswith(_CHAINED)):
                found.append(Traceback(part, at, heading, ""))
            inside = awaiting_error = True
        elif awaiting_error and line.strip() and not line.startswith(" "):
            found[-1] = replace(found[-1], error=line.strip())  # the exception line ends the frames
            awaiting_error = False
        if line.strip():
            previous = line
    return found


def unexplained(logs: Path, windows: list[Window]) -> tuple[list[str], int]:
    """What no ALLOWED entry explains, and how many tracebacks were explained."""
    problems, explained = [], 0
    for log in sorted(logs.glob("*.log")):
        for traceback in find_tracebacks(log.read_text(errors="replace"), log.stem):
            if any(entry.covers(traceback, windows) for entry in ALLOWED):
                explained += 1
            else:
                problems.append(traceback.describe())
    return problems, explained
