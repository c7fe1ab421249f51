"""Subscribe the app to its Event Grid events, after code deploy (azd `postdeploy` hook).

1. The blob trigger to BlobCreated events. The subscription's webhook needs the blob extension's system key,
   which the Functions host creates only once the code is running, so it cannot be part of infra/main.bicep.
   This script reads that key with `az functionapp keys list` and deploys infra/blob-subscription.bicep with it.
2. When main.bicep's amlRunEvents is on (output AML_RUN_EVENTS_SETTING=on): `aml_run_events` to the Azure ML
   workspace's run events (infra/aml-run-events-subscription.bicep, into the workspace's resource group). Event
   Grid refuses an AzureFunction destination that does not exist, so this too waits for the deployed function
   (`az functionapp function show`). No key is involved: Event Grid fetches the function's key itself.

The key never reaches a command line or the console: it goes from the CLI's captured output into a
parameters file readable only by the current user, which is deleted as soon as the deployment returns.

Inputs, in this order:
  --deployment-name NAME  the outputs of `az deployment sub create --name NAME -f infra/main.bicep ...`
  environment variables   what azd passes to hooks (main.bicep outputs, e.g. AZURE_FUNCTION_APP_NAME)
  `azd env get-values`    when run by hand inside an azd project

Standard library only, and `az` (plus `azd` for the last source); runs the same on Linux, macOS, Windows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "blob-subscription.bicep"
AML_TEMPLATE = Path(__file__).resolve().parent.parent / "aml-run-events-subscription.bicep"
KEY_QUERY = "systemKeys.blobs_extension"
KEY_ATTEMPTS = 10
KEY_RETRY_SECONDS = 15.0
FUNCTION_ATTEMPTS = 10
FUNCTION_RETRY_SECONDS = 15.0

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


@dataclass(frozen=True)
class AmlEvents:
    """What the run events subscription template needs (only when AML_RUN_EVENTS_SETTING is 'on')."""

    resource_group: str
    system_topic_name: str
    subscription_name: str
    function_app_id: str
    function_name: str
    storage_account_id: str
    dead_letter_container: str


# AmlEvents field -> main.bicep output name; required only when the setting is 'on'.
AML_OUTPUT_NAMES = {
    "resource_group": "AML_SYSTEM_TOPIC_RESOURCE_GROUP",
    "system_topic_name": "AML_SYSTEM_TOPIC_NAME",
    "subscription_name": "AML_EVENT_SUBSCRIPTION_NAME",
    "function_app_id": "AZURE_FUNCTION_APP_ID",
    "function_name": "AML_EVENTS_FUNCTION_NAME",
    "storage_account_id": "AZURE_STORAGE_ACCOUNT_ID",
    "dead_letter_container": "DEAD_LETTER_CONTAINER_NAME",
}
AML_SETTING_VALUES = ("on", "off")


def deployment_from_values(values: Mapping[str, str]) -> Deployment:
    """Build the Deployment from output values; name every missing one at once."""
    missing = [output for output in OUTPUT_NAMES.values() if not str(values.get(output, "")).strip()]
    if missing:
        raise HookError(
            "missing deployment outputs: "
            + ", ".join(missing)
            + ". Run inside the azd environment that ran `azd provision`, or pass --deployment-name with the "
            "name of your `az deployment sub create` deployment of infra/main.bicep."
        )
    return Deployment(**{field: str(values[output]).strip() for field, output in OUTPUT_NAMES.items()})


def aml_events_from_values(values: Mapping[str, str]) -> AmlEvents | None:
    """None when the run events are off; otherwise every output the subscription needs (all missing named at once)."""
    setting = str(values.get(OUTPUT_NAMES["aml_run_events"], "")).strip().lower()
    if setting not in AML_SETTING_VALUES:
        raise HookError(
            f"{OUTPUT_NAMES['aml_run_events']} is {setting!r}, expected 'on' or 'off': provision again with the "
            "current infra/main.bicep."
        )
    if setting == "off":
        return None
    missing = [output for output in AML_OUTPUT_NAMES.values() if not str(values.get(output, "")).strip()]
    if missing:
        raise HookError(
            "AML_RUN_EVENTS_SETTING is on but these deployment outputs are missing or empty: "
            + ", ".join(missing)
            + ". Provision again with the current infra/main.bicep."
        )
    return AmlEvents(**{field: str(values[output]).strip() for field, output in AML_OUTPUT_NAMES.items()})


def values_from_arm_outputs(outputs: Mapping[str, Mapping[str, object]]) -> dict[str, str]:
    """`az deployment sub show --query properties.outputs` gives {name: {type, value}}."""
    return {name: str(output.get("value", "")) for name, output in outputs.items()}


def arm_outputs_command(*, az: str, deployment_name: str) -> list[str]:
    return [
        az, "deployment", "sub", "show",
        "--name", deployment_name,
        "--query", "properties.outputs",
        "--output", "json",
    ]  # fmt: skip


def azd_values_command(*, azd: str) -> list[str]:
    return [azd, "env", "get-values", "--output", "json"]


def key_command(*, az: str, deployment: Deployment) -> list[str]:
    return [
        az, "functionapp", "keys", "list",
        "--resource-group", deployment.resource_group,
        "--name", deployment.function_app_name,
        "--query", KEY_QUERY,
        "--output", "tsv",
    ]  # fmt: skip


def function_command(*, az: str, deployment: Deployment, function_name: str) -> list[str]:
    return [
        az, "functionapp", "function", "show",
        "--resource-group", deployment.resource_group,
        "--name", deployment.function_app_name,
        "--function-name", function_name,
        "--query", "name",
        "--output", "tsv",
    ]  # fmt: skip


def subscription_parameters(*, deployment: Deployment, blob_extension_key: str) -> dict[str, object]:
    """The ARM parameters file for infra/blob-subscription.bicep (holds the key: write it privately)."""
    values = {
        "systemTopicName": deployment.system_topic_name,
        "subscriptionName": deployment.subscription_name,
        "functionAppHostName": deployment.function_app_hostname,
        "functionName": deployment.function_name,
        "blobExtensionKey": blob_extension_key,
        "inputContainerName": deployment.input_container,
        "storageAccountId": deployment.storage_account_id,
        "deadLetterContainerName": deployment.dead_letter_container,
    }
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {name: {"value": value} for name, value in values.items()},
    }


def aml_subscription_parameters(*, events: AmlEvents) -> dict[str, object]:
    """The ARM parameters file for infra/aml-run-events-subscription.bicep (no secret in it)."""
    values = {
        "systemTopicName": events.system_topic_name,
        "subscriptionName": events.subscription_name,
        "functionAppId": events.function_app_id,
        "functionName": events.function_name,
        "storageAccountId": events.storage_account_id,
        "deadLetterContainerName": events.dead_letter_container,
    }
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {name: {"value": value} for name, value in values.items()},
    }


def aml_deploy_command(*, az: str, events: AmlEvents, template: Path, parameters_file: Path) -> list[str]:
    return [
        az, "deployment", "group", "create",
        "--resource-group", events.resource_group,
        "--name", f"aml-run-events-{events.subscription_name}"[:64],
        "--template-file", str(template),
        "--parameters", f"@{parameters_file}",
        "--output", "none",
        "--only-show-errors",
    ]  # fmt: skip


def deploy_command(*, az: str, deployment: Deployment, template: Path, parameters_file: Path) -> list[str]:
    # --output none: the CLI echoes nothing of the deployment (secure parameters are never returned anyway).
    return [
        az, "deployment", "group", "create",
        "--resource-group", deployment.resource_group,
        "--name", f"blob-subscription-{deployment.subscription_name}"[:64],
        "--template-file", str(template),
        "--parameters", f"@{parameters_file}",
        "--output", "none",
        "--only-show-errors",
    ]  # fmt: skip


def write_private_json(document: Mapping[str, object]) -> Path:
    """A temp file only the current user can read (mkstemp creates it with mode 0600)."""
    handle, name = tempfile.mkstemp(prefix="dropscore-blob-subscription-", suffix=".json")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        json.dump(document, stream)
    return Path(name)


def redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def run_cli(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a CLI command, capturing its output (nothing of it is printed unless it fails)."""
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)  # noqa: S603


def find_tool(name: str, *, hint: str) -> str:
    """The full path (on Windows, `az` is az.cmd, which subprocess finds only by its full name)."""
    path = shutil.which(name)
    if not path:
        raise HookError(f"`{name}` was not found on PATH. {hint}")
    return path


def read_blob_extension_key(
    *,
    az: str,
    deployment: Deployment,
    runner: Runner = run_cli,
    sleep: Callable[[float], None] = time.sleep,
    attempts: int = KEY_ATTEMPTS,
    retry_seconds: float = KEY_RETRY_SECONDS,
) -> str:
    """The host creates the key when the blob trigger first loads, which can lag the deploy: retry."""
    command = key_command(az=az, deployment=deployment)
    for attempt in range(1, attempts + 1):
        result = runner(command)
        key = result.stdout.strip()
        if result.returncode != 0:
            raise HookError(
                f"`az functionapp keys list` failed for {deployment.function_app_name} "
                f"(resource group {deployment.resource_group}): {result.stderr.strip()}. "
                "Are you logged in (`az login`) to the subscription of the deployment?"
            )
        if key:
            return key
        if attempt < attempts:
            print(f"blobs_extension key not there yet (attempt {attempt}/{attempts}); retrying", file=sys.stderr)
            sleep(retry_seconds)
    raise HookError(
        f"{deployment.function_app_name} has no blobs_extension system key after {attempts} attempts. The host "
        "creates it when it loads the blob trigger: check that the code deployed (`az functionapp function list "
        f"-g {deployment.resource_group} -n {deployment.function_app_name}` lists on_input_blob) and that the "
        "app can reach its storage, then run this script again."
    )


def create_subscription(
    *, az: str, deployment: Deployment, blob_extension_key: str, runner: Runner = run_cli, template: Path = TEMPLATE
) -> None:
    parameters_file = write_private_json(
        subscription_parameters(deployment=deployment, blob_extension_key=blob_extension_key)
    )
    command = deploy_command(az=az, deployment=deployment, template=template, parameters_file=parameters_file)
    try:
        result = runner(command)
    finally:
        parameters_file.unlink(missing_ok=True)
    if result.returncode != 0:
        raise HookError(
            f"deploying {template.name} failed: {redact(result.stderr.strip(), blob_extension_key)}. "
            "Event Grid validates the webhook when the subscription is created: the app must be running and "
            "reachable, and the key current (run this script again after a key rotation)."
        )


def wait_for_function(
    *,
    az: str,
    deployment: Deployment,
    function_name: str,
    runner: Runner = run_cli,
    sleep: Callable[[float], None] = time.sleep,
    attempts: int = FUNCTION_ATTEMPTS,
    retry_seconds: float = FUNCTION_RETRY_SECONDS,
) -> None:
    """ARM lists a function once the host has indexed the deployed code, which can lag the deploy: retry."""
    command = function_command(az=az, deployment=deployment, function_name=function_name)
    error = ""
    for attempt in range(1, attempts + 1):
        result = runner(command)
        if result.returncode == 0 and result.stdout.strip():
            return
        error = result.stderr.strip()
        if attempt < attempts:
            print(f"function {function_name} not listed yet (attempt {attempt}/{attempts}); retrying", file=sys.stderr)
            sleep(retry_seconds)
    raise HookError(
        f"{deployment.function_app_name} has no function {function_name} after {attempts} attempts"
        + (f" ({error})" if error else "")
        + ". Event Grid can subscribe only an existing function: check that the deployed code declares it "
        f"(`az functionapp function list -g {deployment.resource_group} -n {deployment.function_app_name}`), "
        "then run this script again. Until then the poller alone finishes jobs."
    )


def create_aml_subscription(
    *, az: str, events: AmlEvents, runner: Runner = run_cli, template: Path = AML_TEMPLATE
) -> None:
    parameters_file = write_private_json(aml_subscription_parameters(events=events))
    command = aml_deploy_command(az=az, events=events, template=template, parameters_file=parameters_file)
    try:
        result = runner(command)
    finally:
        parameters_file.unlink(missing_ok=True)
    if result.returncode != 0:
        raise HookError(
            f"deploying {template.name} into {events.resource_group} failed: {result.stderr.strip()}. It needs the "
            f"system topic {events.system_topic_name} (main.bicep creates it, or names it with "
            "workspaceSystemTopicName), its system-assigned identity, and your right to create event subscriptions "
            "on the workspace (Contributor or Owner). Until it exists the poller alone finishes jobs."
        )


def load_values(*, deployment_name: str | None, environ: Mapping[str, str], runner: Runner) -> Mapping[str, str]:
    if deployment_name:
        az = find_tool("az", hint="Install the Azure CLI: https://aka.ms/azure-cli")
        result = runner(arm_outputs_command(az=az, deployment_name=deployment_name))
        if result.returncode != 0:
            raise HookError(f"`az deployment sub show --name {deployment_name}` failed: {result.stderr.strip()}")
        return values_from_arm_outputs(json.loads(result.stdout or "{}") or {})
    if all(environ.get(output) for output in OUTPUT_NAMES.values()):
        return environ
    azd = shutil.which("azd")
    if not azd:
        return environ  # deployment_from_values names what is missing
    result = runner(azd_values_command(azd=azd))
    if result.returncode != 0:
        raise HookError(f"`azd env get-values` failed: {result.stderr.strip()}")
    return {**json.loads(result.stdout or "{}"), **{k: v for k, v in environ.items() if v}}


def main(argv: Sequence[str] | None = None, *, runner: Runner = run_cli) -> int:
    parser = argparse.ArgumentParser(
        description="Create dropscore's Event Grid subscriptions (BlobCreated; Azure ML run events when on)."
    )
    parser.add_argument("--deployment-name", help="name of the `az deployment sub create` deployment of main.bicep")
    args = parser.parse_args(argv)
    try:
        values = load_values(deployment_name=args.deployment_name, environ=os.environ, runner=runner)
        deployment = deployment_from_values(values)
        events = aml_events_from_values(values)
        az = find_tool("az", hint="Install the Azure CLI: https://aka.ms/azure-cli")
        key = read_blob_extension_key(az=az, deployment=deployment, runner=runner)
        create_subscription(az=az, deployment=deployment, blob_extension_key=key, runner=runner)
        print(
            f"postdeploy: BlobCreated subscription {deployment.subscription_name} on {deployment.system_topic_name} "
            f"delivers *.csv uploads in {deployment.input_container}/ to {deployment.function_name}"
        )
        if events is None:
            print("postdeploy: AML_RUN_EVENTS is off: no run events subscription (the poller finishes jobs)")
            return 0
        wait_for_function(az=az, deployment=deployment, function_name=events.function_name, runner=runner)
        create_aml_subscription(az=az, events=events, runner=runner)
        print(
            f"postdeploy: run events subscription {events.subscription_name} on {events.system_topic_name} "
            f"delivers the end of dropscore's Azure ML jobs to {events.function_name}"
        )
    except HookError as exc:
        print(f"postdeploy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
