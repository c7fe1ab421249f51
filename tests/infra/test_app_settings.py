"""The Function App's settings in infra/ against what the app reads, and against what the template creates."""

from __future__ import annotations

import ast
import json
import operator
import re
from typing import Any

import pytest

from tests.infra.bicep import INFRA, REPO, Opaque, Scope, bicep_files, main_scope, parse

# The settings the app and the host read in Azure (issue 9). Exactly these: no more, no fewer.
EXPECTED_SETTINGS = {
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "AZURE_CLIENT_ID",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "BLOB_TRIGGER_SOURCE",
    "INPUT_CONTAINER",
    "OUTPUT_CONTAINER",
    "ARCHIVE_CONTAINER",
    "FAILED_CONTAINER",
    "REJECTED_CONTAINER",
    "JOBS_TABLE",
    "ACTIVE_JOBS_TABLE",
    "JOB_LIST_TABLE",
    "COMPLETIONS_QUEUE",
    "POLL_SCHEDULE",
    "BATCH_ENDPOINT_URI",
    "BATCH_ENDPOINT_NAME",
    "BATCH_DEPLOYMENT",
    "REQUIRED_COLUMNS",
    "AML_WORKSPACE_ID",
    "AML_INPUT_DATASTORE",
    "AML_OUTPUT_DATASTORE",
    "AML_OUTPUT_CONTAINER",
    "EVENTGRID_TOPIC_ENDPOINT",
    "EVENT_SCHEMA",
    "EVENT_SOURCE",
    "BLOB_EVENT_SUBSCRIPTION_ID",
    "AML_RUN_EVENTS",
    "AML_EVENT_SUBSCRIPTION_ID",
    "MAX_JOBS_IN_FLIGHT",
    "SHARD_THRESHOLD_MB",
    "SHARD_PART_MB",
    "ROUTES",
    "DRIFT_REFERENCE",
}
# Read by shared/config.py but deliberately left to the app's defaults in Azure (tuning knobs), or only for the
# local stack (keys, tokens and connection strings are refused against Azure endpoints).
LEFT_TO_DEFAULTS = {
    "AzureWebJobsStorage",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
    "AML_TOKEN_SCOPE",
    "AML_LOCAL_TOKEN",
    "AML_OUTPUT_PREFIX",
    "AML_MANAGEMENT_ENDPOINT",
    "AML_HTTP_TIMEOUT_SECONDS",
    "AML_MAX_RETRIES",
    "POLL_CONCURRENCY",
    "QUEUED_LIMIT_MINUTES",
    "RUNNING_LIMIT_MINUTES",
    "SUBMIT_LEASE_SECONDS",
    "SUBMIT_MAX_ATTEMPTS",
    "COMPLETION_REDELIVERY_SECONDS",
    "COMPLETION_MAX_ATTEMPTS",
    "JOIN_MEMORY_MB",
    "JOIN_CONCURRENCY",
    "OUTBOX_GRACE_SECONDS",
    "AML_EVENTS_BACKSTOP_SECONDS",
    "REQUIRED_COLUMNS_REFRESH_SECONDS",
    "MAX_INPUT_BYTES",
    "CSV_DELIMITER",
    "EVENTGRID_TOPIC_KEY",
    "DRIFT_PSI_THRESHOLD",
    "DRIFT_SHARE_THRESHOLD",
    "DRIFT_SAMPLE_MB",
}
NEVER_IN_AZURE = {"AzureWebJobsStorage", "AML_LOCAL_TOKEN", "EVENTGRID_TOPIC_KEY", "FUNCTIONS_WORKER_RUNTIME"}
SECRET_MARKERS = re.compile(
    r"AccountKey|SharedAccessSignature|DefaultEndpointsProtocol|InstrumentationKey=|sig=|list_?keys|"
    r"listAccountSas|listServiceSas|list_account_sas|list_service_sas|listSecrets|list_secrets",
    re.IGNORECASE,
)


# main.bicep parameter -> the app setting it becomes (a deploy parameter only the template turns into a setting).
PARAMETER_SETTINGS = {
    "maxJobsInFlight": "MAX_JOBS_IN_FLIGHT",
    "shardThresholdMb": "SHARD_THRESHOLD_MB",
    "shardPartMb": "SHARD_PART_MB",
}


def function_app(**main_parameters: Any) -> Scope:
    """The function app module, with main.bicep's parameters at their defaults or as given."""
    return Scope("main.bicep", main_parameters).module("functionApp")


def raw_settings() -> dict[str, object]:
    return function_app().template["variables"]["appSettings"]["value"]


def settings(**main_parameters: Any) -> dict[str, object]:
    app = function_app(**main_parameters)
    return {name: app.value(expr) for name, expr in raw_settings().items()}


def names_config_reads() -> set[str]:
    """Every setting name shared/config.py passes to a call (reader.get/require/optional, f"{STORAGE}__...")."""
    tree = ast.parse((REPO / "shared" / "config.py").read_text(encoding="utf-8"))
    storage = next(
        node.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "STORAGE"
    )
    names = {storage}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            text = first.value
        elif isinstance(first, ast.JoinedStr):
            text = "".join(
                part.value
                if isinstance(part, ast.Constant)
                else storage
                if ast.unparse(part.value) == "STORAGE"
                else "?"
                for part in first.values
            )
        else:
            continue
        if re.fullmatch(r"[A-Z][A-Z0-9_]+|AzureWebJobsStorage(__\w+)?", text):
            names.add(text)
    return names


def test_app_settings_are_exactly_the_expected_names() -> None:
    assert set(raw_settings()) == EXPECTED_SETTINGS


def test_every_setting_the_app_reads_is_set_or_deliberately_defaulted() -> None:
    read = names_config_reads()
    assert {
        "BATCH_ENDPOINT_URI",
        "EVENTGRID_TOPIC_ENDPOINT",
        "INPUT_CONTAINER",
        "AzureWebJobsStorage__accountName",
    } <= read
    unaccounted = read - set(raw_settings()) - LEFT_TO_DEFAULTS
    assert not unaccounted, f"shared/config.py reads {sorted(unaccounted)}: set them in infra/modules/functionapp.bicep"


def test_no_local_only_setting_and_no_worker_runtime_on_flex() -> None:
    assert not NEVER_IN_AZURE & set(raw_settings())


def test_literal_values() -> None:
    values = settings()
    assert values["AzureWebJobsStorage__credential"] == "managedidentity"
    assert values["BLOB_TRIGGER_SOURCE"] == "EventGrid"
    assert values["POLL_SCHEDULE"] == "0 */1 * * * *"
    assert values["EVENT_SCHEMA"] == "cloudevents"
    assert values["AML_INPUT_DATASTORE"] == "dropscore_inputs"
    assert values["AML_OUTPUT_DATASTORE"] == "dropscore_outputs"
    assert values["AML_OUTPUT_CONTAINER"] == "aml-outputs"
    assert values["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "Authorization=AAD;ClientId=${identityClientId}"


def test_identity_and_deployment_bound_values_come_from_the_right_place() -> None:
    values = settings()
    client_id = Opaque("identity.outputs.clientId")
    assert values["AZURE_CLIENT_ID"] == values["AzureWebJobsStorage__clientId"] == client_id
    assert values["AzureWebJobsStorage__accountName"] == Opaque("storage.outputs.name")
    assert values["BATCH_ENDPOINT_URI"] == Opaque("azureMl.outputs.scoringUri")
    assert values["AML_WORKSPACE_ID"] == Opaque("azureMl.outputs.workspaceId")
    assert values["EVENTGRID_TOPIC_ENDPOINT"] == Opaque("eventGrid.outputs.topicEndpoint")
    assert values["BATCH_ENDPOINT_NAME"] == Opaque("param batchEndpointName")
    assert values["BATCH_DEPLOYMENT"] == ""  # main.bicep default: the endpoint's default deployment
    raw = raw_settings()
    assert raw["BLOB_EVENT_SUBSCRIPTION_ID"] == "${systemTopicId}/eventSubscriptions/${blobEventSubscriptionName}"
    assert raw["EVENT_SOURCE"] == {
        "function": {
            "type": "resource_id",
            "parameters": {
                "resource_type": "Microsoft.Web/sites",
                "resource_name_1": "name",
                "resource_name_2": None,
                "resource_group_name": None,
                "subscription_id": None,
            },
        }
    }
    # The hook names the subscription with the same parameter main.bicep passes to the app.
    main = parse("main.bicep")
    assert (
        main["modules"]["functionApp"]["config"]["params"]["blobEventSubscriptionName"] == "blobEventSubscriptionName"
    )
    assert main["outputs"]["BLOB_EVENT_SUBSCRIPTION_NAME"]["value"] == "blobEventSubscriptionName"


def test_application_insights_connection_string_is_read_from_the_component() -> None:
    app = function_app()
    assert (
        raw_settings()["APPLICATIONINSIGHTS_CONNECTION_STRING"]["operator"]["operands"]["operand_1"]
        == "applicationInsights"
    )
    component = app.resource("applicationInsights")
    assert component["existing"] is True
    assert component["type"] == "Microsoft.Insights/components"


def test_every_storage_name_in_the_settings_is_created_by_the_template() -> None:
    storage = main_scope().module("storage")
    created = {kind: set(storage.bound[kind]) for kind in ("containerNames", "tableNames", "queueNames")}
    values = settings()
    containers = ["INPUT_CONTAINER", "OUTPUT_CONTAINER", "ARCHIVE_CONTAINER", "FAILED_CONTAINER", "REJECTED_CONTAINER"]
    for name in [*containers, "AML_OUTPUT_CONTAINER"]:
        assert values[name] in created["containerNames"], name
    for name in ("JOBS_TABLE", "ACTIVE_JOBS_TABLE"):
        assert values[name] in created["tableNames"], name
    assert values["COMPLETIONS_QUEUE"] in created["queueNames"]
    assert f"{values['COMPLETIONS_QUEUE']}-poison" in created["queueNames"]
    names = [values[name] for name in containers]
    assert names == ["incoming", "predictions", "processed", "failed", "rejected"]


def test_datastores_in_the_settings_are_the_ones_created_on_the_right_containers() -> None:
    azure_ml = main_scope().module("azureMl")
    datastores = {
        d["name"]: d["container"] for d in azure_ml.value(azure_ml.template["variables"]["datastores"]["value"])
    }
    values = settings()
    assert datastores[values["AML_INPUT_DATASTORE"]] == values["INPUT_CONTAINER"]
    assert datastores[values["AML_OUTPUT_DATASTORE"]] == values["AML_OUTPUT_CONTAINER"]


def test_no_key_sas_or_storage_connection_string_in_any_setting() -> None:
    for name, expr in raw_settings().items():
        text = json.dumps(expr)
        assert not SECRET_MARKERS.search(text), f"{name} looks like a secret: {text}"
        if "CONNECTION_STRING" in name:
            assert name == "APPLICATIONINSIGHTS_CONNECTION_STRING", name


def test_no_template_lists_keys() -> None:
    for path in bicep_files():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\.list\w*\(|\blist\w*\(", text), f"{path.relative_to(INFRA)} calls a list*() function"


# ---- The fast completion path and the tuning parameters ----------------------------------------------------


def test_aml_run_events_setting_follows_the_parameter() -> None:
    assert parse("main.bicep")["parameters"]["amlRunEvents"]["default"] is True
    assert settings()["AML_RUN_EVENTS"] == "on"
    assert settings(amlRunEvents=False)["AML_RUN_EVENTS"] == "off"
    assert settings(amlRunEvents=True)["AML_RUN_EVENTS"] == "on"


def test_aml_event_subscription_id_names_the_subscription_the_hook_creates() -> None:
    raw = raw_settings()["AML_EVENT_SUBSCRIPTION_ID"]
    assert raw["operator"]["operands"] == {
        "condition": "amlRunEvents",
        "true_value": "${amlSystemTopicId}/eventSubscriptions/${amlEventSubscriptionName}",
        "false_value": "",
    }
    assert settings(amlRunEvents=False)["AML_EVENT_SUBSCRIPTION_ID"] == ""
    # The id is built from the workspace system topic module's output and the name the hook is given.
    app = function_app()
    assert app.bound["amlSystemTopicId"] == Opaque("amlEvents.outputs.systemTopicId")
    assert function_app(amlRunEvents=False).bound["amlSystemTopicId"] == ""
    assert app.bound["amlEventSubscriptionName"] == "dropscore-aml-run-events"
    main = parse("main.bicep")
    assert main["outputs"]["AML_EVENT_SUBSCRIPTION_NAME"]["value"] == "amlEventSubscriptionName"
    assert main["modules"]["functionApp"]["config"]["params"]["amlEventSubscriptionName"] == "amlEventSubscriptionName"


@pytest.mark.parametrize(("parameter", "setting"), sorted(PARAMETER_SETTINGS.items()))
def test_tuning_parameters_become_their_settings_as_strings(parameter: str, setting: str) -> None:
    default = parse("main.bicep")["parameters"][parameter]["default"]
    assert settings()[setting] == str(default)
    assert settings(**{parameter: 7})[setting] == "7"
    assert raw_settings()[setting] == {"function": {"type": "string", "parameters": {"value_to_convert": parameter}}}


def test_the_drift_reference_passes_through_and_defaults_to_none() -> None:
    assert settings()["DRIFT_REFERENCE"] == ""
    assert settings(driftReference="references/diamonds.json")["DRIFT_REFERENCE"] == "references/diamonds.json"


def test_routes_pass_through_as_given_and_default_to_one_route() -> None:
    assert settings()["ROUTES"] == ""
    routes = '[{"name":"eu","prefix":"eu/","endpointUri":"https://eu.westeurope.inference.ml.azure.com/jobs"}]'
    assert settings(routes=routes)["ROUTES"] == routes


def test_tuning_defaults() -> None:
    values = settings()
    assert (values["MAX_JOBS_IN_FLIGHT"], values["SHARD_THRESHOLD_MB"], values["SHARD_PART_MB"]) == ("100", "256", "32")


def decorator_bounds(parameter: dict[str, Any]) -> tuple[int | None, int | None]:
    found = {d["type"]: d["argument"] for d in parameter["decorators"] if d["type"] in {"min_value", "max_value"}}
    return found.get("min_value"), found.get("max_value")


_ARITHMETIC = {ast.Mult: operator.mul, ast.Add: operator.add, ast.Sub: operator.sub, ast.Pow: operator.pow}


def _arithmetic(node: ast.expr) -> int:
    """An integer literal or arithmetic on literals (`5 * 1024 * 1024`), nothing else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return int(_ARITHMETIC[type(node.op)](_arithmetic(node.left), _arithmetic(node.right)))
    raise AssertionError(f"not a literal bound: {ast.unparse(node)}")


def config_int_setting(name: str) -> tuple[int, int, int]:
    """(default, low, high) of `reader.get(NAME, "default", values.bounded_int(low, high))` in shared/config.py."""
    tree = ast.parse((REPO / "shared" / "config.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and len(node.args) == 3
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == name
            and isinstance(node.args[2], ast.Call)
            and ast.unparse(node.args[2].func).endswith("bounded_int")
        ):
            default = node.args[1]
            assert isinstance(default, ast.Constant)
            low, high = (_arithmetic(arg) for arg in node.args[2].args)
            return int(default.value), low, high
    raise AssertionError(f"shared/config.py does not read {name} as a bounded int")


@pytest.mark.parametrize(("parameter", "setting"), sorted(PARAMETER_SETTINGS.items()))
def test_tuning_parameter_range_is_inside_what_the_app_accepts(parameter: str, setting: str) -> None:
    declared = parse("main.bicep")["parameters"][parameter]
    low, high = decorator_bounds(declared)
    assert low is not None, f"{parameter} needs @minValue"
    assert high is not None, f"{parameter} needs @maxValue"
    app_default, app_low, app_high = config_int_setting(setting)
    assert app_low <= low <= declared["default"] <= high <= app_high, (parameter, setting)
    assert declared["default"] == app_default, f"{parameter}'s default differs from the app's {setting} default"


def test_tuning_parameter_ranges() -> None:
    parameters = parse("main.bicep")["parameters"]
    assert decorator_bounds(parameters["maxJobsInFlight"]) == (1, 10000)
    assert decorator_bounds(parameters["shardThresholdMb"])[0] == 0  # 0 turns sharding off
    assert decorator_bounds(parameters["shardPartMb"])[0] == 1
