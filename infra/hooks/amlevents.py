"""The Azure ML run events subscription (step 2 of infra/hooks/postdeploy.py, which imports this module).

When main.bicep's amlRunEvents is on (output AML_RUN_EVENTS_SETTING=on): `aml_run_events` to the Azure ML
workspace's run events (infra/aml-run-events-subscription.bicep, into the workspace's resource group). Event
Grid refuses an AzureFunction destination that does not exist, so this waits for the deployed function
(`az functionapp function show`) first. No key is involved: Event Grid fetches the function's key itself.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

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

AML_TEMPLATE = Path(__file__).resolve().parent.parent / "aml-run-events-subscription.bicep"
FUNCTION_ATTEMPTS = 10
FUNCTION_RETRY_SECONDS = 15.0


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


def function_command(*, az: str, deployment: Deployment, function_name: str) -> list[str]:
    return [
        az, "functionapp", "function", "show",
        "--resource-group", deployment.resource_group,
        "--name", deployment.function_app_name,
        "--function-name", function_name,
        "--query", "name",
        "--output", "tsv",
    ]  # fmt: skip


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
    return parameters_document(values)


def aml_deploy_command(*, az: str, events: AmlEvents, template: Path, parameters_file: Path) -> list[str]:
    return group_deploy_command(
        az=az,
        resource_group=events.resource_group,
        name=f"aml-run-events-{events.subscription_name}",
        template=template,
        parameters_file=parameters_file,
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
