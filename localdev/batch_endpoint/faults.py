"""Fault injection for tests: throttled or failing invokes, failing or stuck jobs, slow status reads.

Spec syntax: comma-separated `key=value` pairs, e.g. `invoke_429_first=2,fail_match=bad-model`.
    invoke_429=F / invoke_500=F          fraction (0..1) of invokes answered 429 / 500
    invoke_429_first=N / invoke_500_first=N   the first N invokes get 429 / 500
    retry_after=S                        Retry-After seconds on injected 429s (default 1)
    fail_jobs=F / fail_jobs_first=N      fraction / first N of accepted jobs end Failed
    fail_match=TEXT                      jobs whose input URI contains TEXT end Failed
    fail_message=TEXT                    error message of injected failures
    stuck_jobs=F / stuck_jobs_first=N / stuck_match=TEXT   jobs that stay Running until canceled
    slow_status=S                        every GET /jobs/{name} waits S seconds first
    seed=N                               seed of the random draws behind fractions (default 0)
Fractions draw from a seeded RNG, so a given sequence of requests always meets the same faults.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field, fields
from typing import Any

DEFAULT_FAIL_MESSAGE = "Injected failure (emulator fault)."


@dataclass
class FaultSpec:
    invoke_429: float = 0.0
    invoke_500: float = 0.0
    invoke_429_first: int = 0
    invoke_500_first: int = 0
    retry_after: int = 1
    fail_jobs: float = 0.0
    fail_jobs_first: int = 0
    fail_match: str = ""
    fail_message: str = DEFAULT_FAIL_MESSAGE
    stuck_jobs: float = 0.0
    stuck_jobs_first: int = 0
    stuck_match: str = ""
    slow_status: float = 0.0
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
            if kind == "float" and key != "slow_status" and not 0.0 <= value <= 1.0:
                raise ValueError(f"fault '{key}' is a fraction between 0 and 1")
            setattr(spec, key, value)
        return spec

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


@dataclass
class Faults:
    """The active spec plus the counters that make `*_first` and fractions deterministic."""

    spec: FaultSpec = field(default_factory=FaultSpec)
    invokes: int = 0
    jobs: int = 0
    _rng: random.Random = field(default_factory=lambda: random.Random(0))  # noqa: S311
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def replace(self, spec: FaultSpec) -> None:
        with self._lock:
            self.spec = spec
            self.invokes = 0
            self.jobs = 0
            self._rng = random.Random(spec.seed)  # noqa: S311 - fault draws for tests, not security

    def invoke_fault(self) -> int | None:
        """HTTP status to answer this invoke with instead of accepting it, if any."""
        with self._lock:
            self.invokes += 1
            spec, n = self.spec, self.invokes
            draw = self._rng.random()
        if n <= spec.invoke_429_first or draw < spec.invoke_429:
            return 429
        if n <= spec.invoke_429_first + spec.invoke_500_first or draw < spec.invoke_429 + spec.invoke_500:
            return 500
        return None

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
            return {"spec": self.spec.as_dict(), "invokes": self.invokes, "jobs": self.jobs}
