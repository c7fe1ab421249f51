"""checkov's Bicep checks over infra/: nothing fails, and every skip is a justified, live suppression."""

from __future__ import annotations

import functools
import json
import re
import subprocess

import pytest

from tests.infra.bicep import INFRA, REPO, bicep_files

CHECKOV = REPO / ".venv-infra" / "bin" / "checkov"
SKIP_COMMENT = re.compile(r"checkov:skip=(CKV2?_[A-Z]+_\d+):(.*)")


@functools.cache
def checkov_results() -> dict[str, list[dict[str, object]]]:
    if not CHECKOV.exists():
        pytest.skip("checkov lives in .venv-infra: run `make check-infra` (it creates the venv)")
    completed = subprocess.run(
        [str(CHECKOV), "--framework", "bicep", "--directory", str(INFRA), "--skip-download", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.stdout.strip(), f"checkov printed nothing: {completed.stderr[-2000:]}"
    report = json.loads(completed.stdout)
    reports = report if isinstance(report, list) else [report]
    bicep = next(r for r in reports if r.get("check_type") == "bicep")
    return bicep["results"]


def test_no_failed_check() -> None:
    results = checkov_results()
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']})" for c in results["failed_checks"]]
    assert not failed, "checkov failures:\n" + "\n".join(failed)
    assert len(results["passed_checks"]) >= 20


def test_every_skip_is_justified_and_still_needed() -> None:
    results = checkov_results()
    reported = {(c["check_id"], c["check_result"]["suppress_comment"].strip()) for c in results["skipped_checks"]}
    in_templates = set()
    for path in bicep_files():
        for line in path.read_text(encoding="utf-8").splitlines():
            match = SKIP_COMMENT.search(line)
            if match:
                check_id, reason = match.group(1), match.group(2).strip()
                assert len(reason) >= 40, f"{path.name}: skip {check_id} needs a real reason"
                assert line.strip().startswith("// checkov:skip="), f"{path.name}: {line.strip()}"
                in_templates.add((check_id, reason))
    assert in_templates, "expected the documented skips (public endpoints without VNet, LRS, ...)"
    assert in_templates == reported, (
        f"skips checkov did not apply (stale, or outside their resource block): {sorted(in_templates - reported)}"
    )
