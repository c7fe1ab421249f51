"""Import rules import-linter cannot express (its graph knows `azure`, not `azure.data.tables`).

Each SDK is imported by one adapter module only, and the deployed code (function_app.py and
shared/) never imports the offline stack. The layer rules live in pyproject.toml (lint-imports).
Both run in `make lint`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOYED = {
    path.relative_to(ROOT).as_posix(): path
    for path in [ROOT / "function_app.py", *sorted((ROOT / "shared").rglob("*.py"))]
}

#: SDK (top of its import path) -> the only module allowed to import it.
SDK_OWNERS = {
    "azure.data.tables": "shared/adapters/tables.py",
    # Table storage's second port, MAX_JOBS_IN_FLIGHT's slots, in its own adapter (tables.py is the ledger).
    "azure.data.tables#slots": "shared/adapters/slots.py",
    # The time-ordered job list: an index tables.py keeps with each ledger write, and reads a page at a time.
    "azure.data.tables#joblist": "shared/adapters/joblist.py",
    "azure.storage.blob": "shared/adapters/blobs.py",
    "azure.storage.queue": "shared/adapters/queues.py",
    "azure.eventgrid": "shared/adapters/eventgrid.py",
    "azure.identity": "shared/adapters/identity.py",
    "azure.monitor": "shared/adapters/telemetry.py",
    # The metrics API (drift scores); telemetry.py reaches OpenTelemetry only through azure.monitor.opentelemetry,
    # whose configure_azure_monitor installs the MeterProvider these go to.
    "opentelemetry": "shared/adapters/metrics.py",
    "requests": "shared/adapters/rest.py",
    "yaml": "shared/adapters/modelcatalog.py",
    "urllib3": "shared/adapters/rest.py",
    "azure.functions": "function_app.py",
    # The blob trigger's SDK-type binding: function_app annotates its parameter with the extension's BlobClient
    # (the worker needs the real type) and reads only names from it; storage I/O stays in blobs.py.
    "azurefunctions": "function_app.py",
}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (imports inside functions count)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(files: dict[str, Path]) -> list[str]:
    """`files` maps each file's path in the repository to where it is read from."""
    found = []
    for where, path in files.items():
        for module in sorted(imported_modules(path)):
            if within(module, "localdev"):
                found.append(f"{where} imports {module}: the offline stack is never deployed")
            for sdk in {key.split("#")[0] for key in SDK_OWNERS}:
                owners = {owner for key, owner in SDK_OWNERS.items() if key.split("#")[0] == sdk}
                if within(module, sdk) and where not in owners:
                    found.append(f"{where} imports {module}: only {' or '.join(sorted(owners))} may import {sdk}")
    return found


def test_each_sdk_has_one_owner_and_nothing_deployed_imports_localdev() -> None:
    assert violations(DEPLOYED) == []


def test_the_rule_catches_a_second_importer(tmp_path: Path) -> None:
    rogue = tmp_path / "rogue.py"
    rogue.write_text("def f():\n    from azure.storage.blob import BlobClient\n    import localdev.stack\n")
    found = violations({"shared/usecases/_rogue_check.py": rogue})
    assert found == [
        "shared/usecases/_rogue_check.py imports azure.storage.blob: only shared/adapters/blobs.py may import "
        "azure.storage.blob",
        "shared/usecases/_rogue_check.py imports localdev.stack: the offline stack is never deployed",
    ]


@pytest.mark.parametrize("sdk", sorted(SDK_OWNERS))
def test_every_owner_really_imports_its_sdk(sdk: str) -> None:
    """A renamed adapter must update this table, not silently free its SDK."""
    owner = ROOT / SDK_OWNERS[sdk]
    assert any(within(module, sdk.split("#", maxsplit=1)[0]) for module in imported_modules(owner))
