"""Fault injection for tests: throttled, failing or lost invokes, throttled status reads, failing or
stuck jobs, slow status reads, lost or late run events.

Spec syntax: comma-separated `key=value` pairs, e.g. `invoke_429_first=2,fail_match=bad-model`.
    invoke_429=F / invoke_500=F          fraction (0..1) of invokes answered 429 / 500, nothing created
    invoke_500_after_create=F            fraction of invokes that create the job, then answer 500
    invoke_drop_after_create=F           fraction of invokes that create the job, then close the
                                         connection without answering
    invoke_429_first=N / invoke_500_first=N / invoke_500_after_create_first=N /
    invoke_drop_after_create_first=N     the first N invokes get the first kind, the next N the
                                         second, ... (in this order)
    status_429=F / status_503=F          fraction of `GET /jobs/{name}` answered 429 / 503
    status_429_first=N / status_503_first=N   the first N status reads get 429, the next N 503
    retry_after=S                        Retry-After seconds on every injected 429 and 503 (default 1)
    fail_jobs=F / fail_jobs_first=N      fraction / first N of accepted jobs end Failed
    fail_match=TEXT                      jobs whose input URI contains TEXT end Failed
    fail_message=TEXT                    error message of injected failures
    stuck_jobs=F / stuck_jobs_first=N / stuck_match=TEXT   jobs that stay Running until canceled
    slow_status=S                        every GET /jobs/{name} waits S seconds first: latency, e.g. 0.05
                                         for a round trip to Azure (concurrent reads wait side by side)
    events_drop=F                        fraction (0..1) of Azure ML run events never published (1 = all)
    events_delay_seconds=S               every run event is published S seconds after its status change
    seed=N                               seed of the random draws behind fractions (default 0)
Fractions draw from seeded RNGs, one for invokes and jobs, one for status reads and one for run
events (so neither the poller's reads nor the events shift which invokes and jobs fail): a given
sequence of requests always meets the same faults.
"""

from __future__ import annotations

import enum
import random
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

DEFAULT_FAIL_MESSAGE = "Injected failure (emulator fault)."

K = TypeVar("K")
# Float faults that are seconds, not fractions.
_DURATIONS = frozenset({"slow_status", "events_delay_seconds"})


class InvokeFault(enum.Enum):
    """What an injected fault does to one invoke."""

    THROTTLED = "429"  # answered 429 with Retry-After; nothing created
    FAILED = "500"  # answered 500; nothing created
    FAILED_AFTER_CREATE = "500 after create"  # the job exists, the answer says 500
    DROPPED_AFTER_CREATE = "dropped after create"  # the job exists, the connection closes unanswered


@dataclass
class FaultSpec:
    invoke_429: float = 0.0
    invoke_500: float = 0.0
    invoke_500_after_create: float = 0.0
    invoke_drop_after_create: float = 0.0
    invoke_429_first: int = 0
    invoke_500_first: int = 0
    invoke_500_after_create_first: int = 0
    invoke_drop_after_create_first: int = 0
    status_429: float = 0.0
    status_503: float = 0.0
    status_429_first: int = 0
    status_503_first: int = 0
    retry_after: int = 1
    fail_jobs: float = 0.0
    fail_jobs_first: int = 0
    fail_match: str = ""
    fail_message: str = DEFAULT_FAIL_MESSAGE
    stuck_jobs: float = 0.0
    stuck_jobs_first: int = 0
    stuck_match: str = ""
    slow_status: float = 0.0
    events_drop: float = 0.0
    events_delay_seconds: float = 0.0
    seed: int = 0

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> FaultSpec:
        kinds = {f.name: f.type for f in fields(cls)}
        spec = cls()
        for key, raw in values.items():
            if key not in kinds:
                raise ValueError(f"unknown fault '{key}'; known: {sorted(kinds)}")
            kind = kinds[key]
            try:
                value: Any = int(raw) if kind == "int" else float(raw) if kind == "float" else str(raw)
            except (TypeError, ValueError):
                raise ValueError(f"fault '{key}' needs a {kind}, got {raw!r}") from None
            if kind == "float" and key not in _DURATIONS and not 0.0 <= value <= 1.0:
                raise ValueError(f"fault '{key}' is a fraction between 0 and 1")
            if kind in {"int", "float"} and key != "seed" and value < 0:
                raise ValueError(f"fault '{key}' cannot be negative")
            setattr(spec, key, value)
        spec._check_fraction_sums()
        return spec

    def _check_fraction_sums(self) -> None:
        # One draw per request picks at most one fault, so a group's fractions share the range 0..1.
        groups = {
            "invoke": [self.invoke_429, self.invoke_500, self.invoke_500_after_create, self.invoke_drop_after_create],
            "status": [self.status_429, self.status_503],
        }
        for group, fractions in groups.items():
            if sum(fractions) > 1.0 + 1e-9:
                raise ValueError(f"the {group}_* fractions add up to more than 1")

    @classmethod
    def parse(cls, text: str | None) -> FaultSpec:
        values: dict[str, str] = {}
        for part in (text or "").split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"fault '{part}' must look like key=value")
            values[key.strip()] = value.strip()
        return cls.from_mapping(values)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def invoke_kinds(self) -> list[tuple[InvokeFault, int, float]]:
        return [
            (InvokeFault.THROTTLED, self.invoke_429_first, self.invoke_429),
            (InvokeFault.FAILED, self.invoke_500_first, self.invoke_500),
            (InvokeFault.FAILED_AFTER_CREATE, self.invoke_500_after_create_first, self.invoke_500_after_create),
            (InvokeFault.DROPPED_AFTER_CREATE, self.invoke_drop_after_create_first, self.invoke_drop_after_create),
        ]

    def status_kinds(self) -> list[tuple[int, int, float]]:
        return [(429, self.status_429_first, self.status_429), (503, self.status_503_first, self.status_503)]


def _pick(number: int, draw: float, kinds: Sequence[tuple[K, int, float]]) -> K | None:
    """The fault for the `number`-th request: the `*_first` counts take the first requests in order
    (the first N get the first kind, the next M the second, ...); after them, `draw` in [0, 1) falls
    into one fraction's slice or into none."""
    boundary = 0
    for kind, first, _ in kinds:
        boundary += first
        if number <= boundary:
            return kind
    low = 0.0
    for kind, _, fraction in kinds:
        if low <= draw < low + fraction:
            return kind
        low += fraction
    return None


@dataclass
class Faults:
    """The active spec plus the counters that make `*_first` and fractions deterministic."""

    spec: FaultSpec = field(default_factory=FaultSpec)
    invokes: int = 0
    jobs: int = 0
    status_reads: int = 0
    injected: Counter[str] = field(default_factory=Counter)
    _rng: random.Random = field(default_factory=lambda: random.Random(0))  # noqa: S311
    _status_rng: random.Random = field(default_factory=lambda: random.Random("status:0"))  # noqa: S311
    _events_rng: random.Random = field(default_factory=lambda: random.Random("events:0"))  # noqa: S311
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def replace(self, spec: FaultSpec) -> None:
        with self._lock:
            self.spec = spec
            self.invokes = self.jobs = self.status_reads = 0
            self.injected = Counter()
            # Fault draws for tests, not security.
            self._rng = random.Random(spec.seed)  # noqa: S311
            self._status_rng = random.Random(f"status:{spec.seed}")  # noqa: S311
            self._events_rng = random.Random(f"events:{spec.seed}")  # noqa: S311

    def invoke_fault(self) -> InvokeFault | None:
        """What to do to this invoke instead of (or after) accepting it, if anything."""
        with self._lock:
            self.invokes += 1
            fault = _pick(self.invokes, self._rng.random(), self.spec.invoke_kinds())
            if fault is not None:
                self.injected[f"invoke {fault.value}"] += 1
            return fault

    def status_fault(self) -> int | None:
        """429 or 503 to answer this status read with instead of the job, if any."""
        with self._lock:
            self.status_reads += 1
            status = _pick(self.status_reads, self._status_rng.random(), self.spec.status_kinds())
            if status is not None:
                self.injected[f"status {status}"] += 1
            return status

    def event_fault(self) -> tuple[bool, float]:
        """For one run event about to be queued: (dropped, seconds to hold it back)."""
        with self._lock:
            dropped = self._events_rng.random() < self.spec.events_drop
            delay = self.spec.events_delay_seconds
            if dropped:
                self.injected["event dropped"] += 1
            elif delay > 0:
                self.injected["event delayed"] += 1
            return dropped, delay

    def job_fault(self, input_uri: str) -> str | None:
        """'fail' or 'stuck' for a job being accepted now; decided once and stored on the job."""
        with self._lock:
            self.jobs += 1
            spec, n = self.spec, self.jobs
            draw = self._rng.random()
        if (spec.fail_match and spec.fail_match in input_uri) or n <= spec.fail_jobs_first or draw < spec.fail_jobs:
            return "fail"
        stuck_by_match = spec.stuck_match and spec.stuck_match in input_uri
        if stuck_by_match or n <= spec.fail_jobs_first + spec.stuck_jobs_first:
            return "stuck"
        if spec.fail_jobs <= draw < spec.fail_jobs + spec.stuck_jobs:
            return "stuck"
        return None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "spec": self.spec.as_dict(),
                "invokes": self.invokes,
                "jobs": self.jobs,
                "statusReads": self.status_reads,
                "injected": dict(self.injected),
            }
