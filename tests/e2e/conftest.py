"""One whole local stack per test session, started with the real CLI in a temp dir and stopped at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localdev.demo.model import build
from localdev.stack_procs import processes_mentioning
from tests.e2e.support import STACK_FAULTS, StackClient, run_cli


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model, built once for the session (the stack would build it too; this shares it)."""
    out = Path(tmp_path_factory.mktemp("models"))
    build(out)
    return out


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[StackClient]:
    directory = Path(tmp_path_factory.mktemp("stack"))
    started = run_cli(
        "up",
        "--dir",
        str(directory),
        "--models-dir",
        str(models_dir),
        "--faults",
        STACK_FAULTS,
        "--job-seconds",
        "1",
        "--set",
        "POLL_SCHEDULE=* * * * * *",
    )
    try:
        assert started.returncode == 0, f"stack did not start:\n{started.stdout}\n{started.stderr}"
        yield StackClient.load(directory)
    finally:
        stopped = run_cli("down", "--dir", str(directory))
        leftovers = processes_mentioning(str(directory))
        assert stopped.returncode == 0, stopped.stderr
        assert not leftovers, f"processes still running after down: {leftovers}"
