"""The chaos run's printout: one table row per input version, what failed and why, the stack checks, a summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from localdev.chaos.checks import CHECKS, Verdict, VersionRow
from localdev.chaos.stack_checks import StackCheck

NAME_WIDTH = 34
OUTCOME_WIDTH = 44


def _fit(text: str, width: int) -> str:
    """At most `width` characters; a cut keeps the end, where names and outcomes differ."""
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def render_table(rows: Sequence[VersionRow]) -> str:
    header = ["#", "name", "kind", "expected", "got", *CHECKS]
    cells = [
        [
            str(row.number),
            _fit(row.name, NAME_WIDTH),
            row.kind,
            _fit(row.expected, OUTCOME_WIDTH),
            _fit(row.got, OUTCOME_WIDTH),
            *(str(row.verdicts.get(check, Verdict.NOT_APPLICABLE)) for check in CHECKS),
        ]
        for row in rows
    ]
    widths = [max(len(line[column]) for line in [header, *cells]) for column in range(len(header))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
             for line in [header, *cells]]  # fmt: skip
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def render_problems(rows: Sequence[VersionRow]) -> str:
    """What each failing version did wrong, in full (the table cuts long texts)."""
    blocks = []
    for row in rows:
        if row.passed:
            continue
        details = "\n".join(f"      {problem}" for problem in row.problems)
        blocks.append(f"  #{row.number} {row.name} ({row.kind}): expected {row.expected}, got {row.got}\n{details}")
    return "\n".join(blocks)


def render_stack_checks(checks: Sequence[StackCheck]) -> str:
    width = max(len(check.name) for check in checks)
    return "\n".join(f"  {'ok  ' if c.passed else 'FAIL'}  {c.name.ljust(width)}  {c.detail}" for c in checks)


@dataclass(frozen=True)
class Figures:
    """The run's numbers, for the summary (and the README)."""

    versions: int
    kills: int
    host_restarts: int
    topic_down_seconds: float
    azurite_restarts: int
    faults_injected: dict[str, int]
    duplicate_event_ids: int
    wall_seconds: float


def render_summary(rows: Sequence[VersionRow], checks: Sequence[StackCheck], figures: Figures) -> str:
    outcomes = Counter(row.got.split(" ", 1)[0] for row in rows)
    verdicts = Counter(verdict for row in rows for verdict in row.verdicts.values())
    passed = all(row.passed for row in rows) and all(check.passed for check in checks)
    faults = ", ".join(f"{name}={count}" for name, count in sorted(figures.faults_injected.items())) or "none"
    return "\n".join(
        [
            f"versions: {figures.versions} ({', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))})",
            f"version checks: {verdicts[Verdict.OK]} passed, {verdicts[Verdict.FAIL]} failed "
            f"({sum(1 for row in rows if not row.passed)} versions with a failure); "
            f"stack checks: {sum(c.passed for c in checks)}/{len(checks)} passed",
            f"chaos: {figures.kills} kill -9 of the functions host ({figures.host_restarts} restarts), "
            f"Event Grid topic down {figures.topic_down_seconds:.1f}s, Azurite restarted {figures.azurite_restarts}x",
            f"batch endpoint faults injected: {faults}",
            f"event ids delivered more than once (allowed after crashes): {figures.duplicate_event_ids}",
            f"wall time: {figures.wall_seconds:.1f}s: {'PASS' if passed else 'FAIL'}",
        ]
    )
