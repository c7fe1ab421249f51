"""What the chaos run did, when: each upload with the version it made, and each time a part was down."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from localdev.chaos.plan import Upload


@dataclass(frozen=True)
class Uploaded:
    """One upload as it happened (times are `time.time()`, so they compare with log and ledger times)."""

    upload: Upload
    etag: str
    data: bytes
    started: float
    finished: float
    note: str = ""  # e.g. that the version it replaces was not seen in flight in time


@dataclass
class Window:
    """A part of the stack was down (or an outage began) from `start` to `end` (None: still down)."""

    part: str  # "functions-host", "eventgrid" or "azurite"
    start: float
    end: float | None = None
    crash: bool = False  # kill -9 rather than a clean stop


@dataclass
class Journal:
    uploads: list[Uploaded] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)

    def down(self, part: str, at: float, *, crash: bool = False) -> None:
        self.windows.append(Window(part, at, crash=crash))

    def up(self, part: str, at: float) -> None:
        open_window = next(w for w in reversed(self.windows) if w.part == part and w.end is None)
        open_window.end = at

    def count(self, part: str, *, crash: bool | None = None) -> int:
        return sum(1 for w in self.windows if w.part == part and (crash is None or w.crash == crash))

    def seconds_down(self, part: str) -> float:
        return sum((w.end or w.start) - w.start for w in self.windows if w.part == part)

    def latest(self) -> dict[str, Uploaded]:
        """The newest version of each name."""
        return {uploaded.upload.name: uploaded for uploaded in self.uploads}

    def successor(self, uploaded: Uploaded) -> Uploaded | None:
        """The next upload under the same name, if any."""
        later = [u for u in self.uploads if u.upload.name == uploaded.upload.name and u.started > uploaded.started]
        return min(later, key=lambda u: u.started, default=None)


def seconds_up(start: float, end: float, outages: Iterable[Window]) -> float:
    """How much of [start, end] no outage covers (overlapping outages count once)."""
    covered, cursor = 0.0, start
    for window in sorted(outages, key=lambda w: w.start):
        low, high = max(window.start, cursor), min(window.end if window.end is not None else end, end)
        if high > low:
            covered += high - low
            cursor = high
    return max(0.0, end - start - covered)
