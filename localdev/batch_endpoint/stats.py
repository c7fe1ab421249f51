"""What the benchmarks read from `GET /_emulator/stats`: request counts per route, and the job counters
(invokes accepted, 429s answered, status calls per job, jobs active now and at most, jobs completed)."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from localdev.batch_endpoint.store import TERMINAL


class RouteStats:
    """Request counts per route template and status code."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def add(self, route: str, status: int) -> None:
        with self._lock:
            self._counts[route]["count"] += 1
            self._counts[route][str(status)] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {route: dict(counts) for route, counts in self._counts.items()}

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


class JobCounters:
    """Counts kept exactly as things happen, each under one lock: a job is active from its creation until
    its status is terminal, so `max_active` is the true peak of jobs in flight, never a sampled one.

    The job manager reports every status change (`status_changed`, called under its store lock, which also
    covers the capacity check and the add: no invoke can slip past the limit between the two)."""

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit  # 0: no limit
        self._lock = threading.Lock()
        self._invokes = 0
        self._throttled = 0
        self._capacity_refusals = 0
        self._status_calls: Counter[str] = Counter()
        self._active = 0
        self._max_active = 0
        self._completed = 0

    def loaded(self, statuses: Iterable[str]) -> None:
        """Jobs read back from the state directory at start-up: those not finished are active."""
        with self._lock:
            self._active += sum(1 for status in statuses if status not in TERMINAL)
            self._max_active = max(self._max_active, self._active)

    def full(self) -> bool:
        """True when a new job would exceed the limit; counts the refusal (its 429 is counted as throttled)."""
        with self._lock:
            if self.limit <= 0 or self._active < self.limit:
                return False
            self._capacity_refusals += 1
            return True

    def job_added(self) -> None:
        with self._lock:
            self._invokes += 1
            self._active += 1
            self._max_active = max(self._max_active, self._active)

    def status_changed(self, previous: str, status: str) -> None:
        was_active, is_active = previous not in TERMINAL, status not in TERMINAL
        with self._lock:
            self._active += int(is_active) - int(was_active)
            self._max_active = max(self._max_active, self._active)
            if status == "Completed" and previous != "Completed":
                self._completed += 1

    def throttled(self) -> None:
        """A 429 was answered, whatever the cause (the capacity limit, an injected fault)."""
        with self._lock:
            self._throttled += 1

    def status_call(self, name: str) -> None:
        with self._lock:
            self._status_calls[name] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "invokes": self._invokes,
                "throttled": self._throttled,
                "capacityRefusals": self._capacity_refusals,
                "statusCalls": sum(self._status_calls.values()),
                "statusCallsByJob": dict(self._status_calls),
                "activeJobs": self._active,
                "maxActiveJobs": self._max_active,
                "activeJobsLimit": self.limit,
                "completedJobs": self._completed,
            }

    def reset(self) -> None:
        """Start counting afresh; the jobs active now stay active (and are the new peak)."""
        with self._lock:
            self._invokes = self._throttled = self._capacity_refusals = self._completed = 0
            self._status_calls.clear()
            self._max_active = self._active
