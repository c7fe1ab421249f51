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
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

# Sibling modules: found as the script's directory is on sys.path (azure.yaml runs this file as a script).
from amlevents import aml_events_from_values, create_aml_subscription, wait_for_function
from hookcli import (
    OUTPUT_NAMES,
    Deployment,
    HookError,
    Runner,
    group_deploy_command,
    parameters_document,
    run_cli,
    write_private_json,
)

TEMPLATE = Path(__file__).resolve().parent.parent / "blob-subscription.bicep"
KEY_QUERY = "systemKeys.blobs_extension"
KEY_ATTEMPTS = 10
KEY_RETRY_SECONDS = 15.0


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
    return parameters_document(values)


def deploy_command(*, az: str, deployment: Deployment, template: Path, parameters_file: Path) -> list[str]:
    return group_deploy_command(
        az=az,
        resource_group=deployment.resource_group,
        name=f"blob-subscription-{deployment.subscription_name}",
        template=template,
        parameters_file=parameters_file,
    )


def redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


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
