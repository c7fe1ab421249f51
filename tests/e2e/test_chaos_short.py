"""A short chaos run (`python -m localdev chaos` with a few files and one kill) as part of `make test`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from localdev.stack_procs import processes_mentioning
from tests.e2e.support import run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SHORT_RUN = ("--seed", "7", "--files", "6", "--kills", "1", "--topic-down", "4", "--timeout", "75")


def test_a_short_chaos_run_passes_every_check(tmp_path: Path, models_dir: Path) -> None:
    result = run_cli("chaos", *SHORT_RUN, "--dir", str(tmp_path), "--models-dir", str(models_dir), timeout=170)

    output = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, output
    table = [line for line in result.stdout.splitlines() if re.match(r"^\d+\s", line)]
    assert len(table) == 6, output
    assert "1 kill -9 of the functions host (1 restarts)" in result.stdout
    assert "Azurite restarted 1x" in result.stdout
    assert re.search(r"invoke dropped after create=\d", result.stdout), output  # the faults did happen
    assert re.search(r"status 503=\d", result.stdout), output
    assert re.search(r"wall time: [\d.]+s: PASS", result.stdout)
    # A passing run stops everything it started and leaves nothing behind but the shared model.
    assert processes_mentioning(str(tmp_path)) == []
    assert [path.name for path in tmp_path.iterdir()] == []
