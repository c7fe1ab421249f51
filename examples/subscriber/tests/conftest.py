"""Load the example subscriber the way the Functions host does (its folder on sys.path), under a
module name that cannot clash with the main app's `function_app`."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from localdev.azurite import Azurite, start_azurite

APP_DIR = Path(__file__).resolve().parent.parent
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))


@pytest.fixture(scope="session")
def subscriber_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dropscore_example_subscriber_app", APP_DIR / "function_app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def subscriber_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    server = start_azurite(Path(tmp_path_factory.mktemp("subscriber-azurite")) / "azurite.log")
    yield server
    server.stop()
