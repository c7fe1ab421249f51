"""`python -m shared.doctor`: the app's health check from a workstation, as a table a person reads.

Reads the settings from the environment, over which `--settings local.settings.json` (its "Values")
is laid, builds the app exactly as the Functions host would, and runs the same checks as
`GET /api/health`. Exit code 0 when nothing failed, 1 otherwise, 2 when the settings file is unusable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from shared import runtime
from shared.config import Settings
from shared.models import Check, CheckStatus, HealthReport
from shared.usecases.health import check_all

_MARKS = {CheckStatus.PASS: "ok", CheckStatus.FAIL: "FAIL", CheckStatus.SKIP: "skip"}


def load_settings(path: Path | None, environ: Mapping[str, str]) -> dict[str, str]:
    values = dict(environ)
    if path is not None:
        document = json.loads(path.read_text(encoding="utf-8"))
        file_values = document.get("Values") if isinstance(document, dict) else None
        if not isinstance(file_values, dict):
            raise ValueError(f'{path} has no "Values" object (the local.settings.json shape)')
        values.update({str(key): str(value) for key, value in file_values.items()})
    return values


def render(report: HealthReport) -> str:
    """One line per check; the fix on its own indented line under each failure."""
    width = max(len(check.name) for check in report.checks)
    lines = []
    for check in report.checks:
        lines.append(f"{_MARKS[check.status]:<4}  {check.name:<{width}}  {check.detail}")
        if check.status is CheckStatus.FAIL and check.fix:
            lines.append(f"{'':<4}  {'':<{width}}  -> {check.fix}")
    failed = [c for c in report.checks if c.status is CheckStatus.FAIL]
    lines.append("healthy" if not failed else f"{len(failed)} check(s) failed: {', '.join(_names(failed))}")
    return "\n".join(lines)


def _names(checks: list[Check]) -> list[str]:
    return [check.name for check in checks]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--settings", type=Path, help="a local.settings.json whose Values override the environment")
    args = parser.parse_args(argv)
    try:
        values = load_settings(args.settings, os.environ)
    except (OSError, ValueError) as exc:
        print(f"doctor: cannot read the settings: {exc}", file=sys.stderr)
        return 2
    report = check_all(lambda: runtime.build_deps(Settings.from_env(values)))
    print(render(report))
    return 0 if report.healthy else 1


if __name__ == "__main__":
    sys.exit(main())
