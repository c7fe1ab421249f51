"""Timer schedules: 6-field NCRONTAB through croniter, or a TimeSpan interval like the host accepts."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import croniter

from localdev.functions_host.settings import SettingsError, parse_timespan


@dataclass(frozen=True)
class Schedule:
    """`{second} {minute} {hour} {day} {month} {day-of-week}` (UTC), or a fixed `hh:mm:ss` interval."""

    expression: str
    interval: timedelta | None = None

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        text = expression.strip()
        if ":" in text and " " not in text:
            interval = parse_timespan(text)
            if interval <= timedelta(0):
                raise SettingsError(f"timer interval must be positive: {expression!r}")
            return cls(text, interval)
        if len(text.split()) != 6:
            raise SettingsError(
                f"timer schedule {expression!r} must have 6 NCRONTAB fields "
                "({second} {minute} {hour} {day} {month} {day-of-week})"
            )
        if not croniter.is_valid(text, second_at_beginning=True):
            raise SettingsError(f"timer schedule {expression!r} is not a valid NCRONTAB expression")
        return cls(text)

    def next_after(self, moment: datetime) -> datetime:
        """First occurrence strictly after `moment` (an aware datetime), in UTC."""
        moment = moment.astimezone(UTC)
        if self.interval is not None:
            return moment + self.interval
        return croniter(self.expression, moment, second_at_beginning=True).get_next(datetime).astimezone(UTC)

    def occurrences(self, start: datetime, count: int) -> list[datetime]:
        found: list[datetime] = []
        moment = start
        for _ in range(count):
            moment = self.next_after(moment)
            found.append(moment)
        return found

    def shortest_interval(self, start: datetime | None = None, samples: int = 6) -> timedelta:
        """Smallest gap between the next few occurrences: decides the `use_monitor` default."""
        if self.interval is not None:
            return self.interval
        times = self.occurrences(start or datetime.now(UTC), samples)
        return min(later - earlier for earlier, later in itertools.pairwise(times))
