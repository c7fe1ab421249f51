"""Shared fixtures: a real Azurite on free ports with in-memory data, started once per run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localdev.azurite import Azurite, start_azurite


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    log = Path(tmp_path_factory.mktemp("azurite")) / "azurite.log"
    server = start_azurite(log)
    yield server
    server.stop()
