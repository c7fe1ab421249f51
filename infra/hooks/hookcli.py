"""What infra/hooks/postdeploy.py and infra/hooks/amlevents.py share: the deployment's outputs, the error the
hook reports, and running the CLI. Standard library only, like the hook.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


class HookError(Exception):
    """A failure with a message that says what to do; the script prints it and exits 1."""


@dataclass(frozen=True)
class Deployment:
    """What the subscription template needs, from main.bicep's outputs."""

    resource_group: str
    function_app_name: str
    function_app_hostname: str
    function_name: str
    system_topic_name: str
    subscription_name: str
    input_container: str
    storage_account_id: str
    dead_letter_container: str
    aml_run_events: str  # 'on' or 'off': whether to subscribe aml_run_events too (aml_events_from_values)


# Deployment field -> main.bicep output name (azd exports outputs under these names too).
OUTPUT_NAMES = {
    "resource_group": "AZURE_RESOURCE_GROUP",
    "function_app_name": "AZURE_FUNCTION_APP_NAME",
    "function_app_hostname": "AZURE_FUNCTION_APP_HOSTNAME",
    "function_name": "BLOB_TRIGGER_FUNCTION_NAME",
    "system_topic_name": "EVENTGRID_SYSTEM_TOPIC_NAME",
    "subscription_name": "BLOB_EVENT_SUBSCRIPTION_NAME",
    "input_container": "INPUT_CONTAINER_NAME",
    "storage_account_id": "AZURE_STORAGE_ACCOUNT_ID",
    "dead_letter_container": "DEAD_LETTER_CONTAINER_NAME",
    "aml_run_events": "AML_RUN_EVENTS_SETTING",
}


def write_private_json(document: Mapping[str, object]) -> Path:
    """A temp file only the current user can read (mkstemp creates it with mode 0600)."""
    handle, name = tempfile.mkstemp(prefix="dropscore-blob-subscription-", suffix=".json")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        json.dump(document, stream)
    return Path(name)


def run_cli(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a CLI command, capturing its output (nothing of it is printed unless it fails)."""
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)  # noqa: S603


def parameters_document(values: Mapping[str, object]) -> dict[str, object]:
    """An ARM deployment parameters file holding `values`."""
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {name: {"value": value} for name, value in values.items()},
    }


def group_deploy_command(
    *, az: str, resource_group: str, name: str, template: Path, parameters_file: Path
) -> list[str]:
    """`az deployment group create` with its parameters by file; --output none: the CLI echoes nothing of the
    deployment (secure parameters are never returned anyway)."""
    return [
        az, "deployment", "group", "create",
        "--resource-group", resource_group,
        "--name", name[:64],
        "--template-file", str(template),
        "--parameters", f"@{parameters_file}",
        "--output", "none",
        "--only-show-errors",
    ]  # fmt: skip
