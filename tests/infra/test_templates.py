"""infra/: every template parses, the modules are wired, and the resources have the settings the issue asks for."""

from __future__ import annotations

import ast
import json
from typing import Any

import pytest
import yaml

from shared.core import naming
from tests.infra.bicep import (
    INFRA,
    REPO,
    Opaque,
    Scope,
    accessor_chain,
    bicep_files,
    main_scope,
    parse,
    readme_section,
    unwrap,
)


def test_every_bicep_file_parses() -> None:
    names = {path.relative_to(INFRA).as_posix() for path in bicep_files()}
    assert {
        "main.bicep",
        "blob-subscription.bicep",
        "aml-run-events-subscription.bicep",
        "modules/roles.bicep",
        "modules/functionapp.bicep",
        "modules/amlevents.bicep",
    } <= names
    for name in names:
        template = parse(name)
        assert template.get("resources") or template.get("modules"), f"{name} parsed to nothing"


def test_main_uses_every_module_and_only_existing_ones() -> None:
    used = {call["detail"]["path"] for call in parse("main.bicep")["modules"].values()}
    on_disk = {f"modules/{path.name}" for path in (INFRA / "modules").glob("*.bicep")}
    assert used == on_disk


def test_main_is_subscription_scoped_and_creates_the_resource_group() -> None:
    main = parse("main.bicep")
    assert main["globals"]["scope"]["value"] == "subscription"
    assert [r["type"] for r in main["resources"].values()] == ["Microsoft.Resources/resourceGroups"]
    required = {name for name, p in main["parameters"].items() if "default" not in p or p["default"] is None}
    assert required == {
        "environmentName",
        "location",
        "amlWorkspaceResourceGroup",
        "amlWorkspaceName",
        "batchEndpointName",
    }
    assert main["parameters"]["pythonVersion"]["default"] == "3.11"
    assert main["parameters"]["batchDeploymentName"]["default"] == ""
    assert main["parameters"]["amlComputePrincipalId"]["default"] == ""
    assert main["parameters"]["amlRunEvents"]["default"] is True
    assert main["parameters"]["workspaceSystemTopicName"]["default"] == ""


def test_azd_parameters_file_covers_the_required_parameters() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["location"]["value"] == "${AZURE_LOCATION}"
    for name in ("amlWorkspaceResourceGroup", "amlWorkspaceName", "batchEndpointName"):
        assert parameters[name]["value"].startswith("${"), name


# main.bicep parameter -> what main.parameters.json gives it (azd env variable and default; azd turns "true" and
# "100" into the parameter's bool or int type).
AZD_PARAMETERS = {
    "requiredColumns": "${REQUIRED_COLUMNS=auto}",
    "amlRunEvents": "${AML_RUN_EVENTS=true}",
    "workspaceSystemTopicName": "${AML_WORKSPACE_SYSTEM_TOPIC_NAME=}",
    "maxJobsInFlight": "${MAX_JOBS_IN_FLIGHT=100}",
    "shardThresholdMb": "${SHARD_THRESHOLD_MB=256}",
    "shardPartMb": "${SHARD_PART_MB=32}",
    "routes": "${ROUTES=}",
    "driftReference": "${DRIFT_REFERENCE=}",
}


@pytest.mark.parametrize(("parameter", "value"), sorted(AZD_PARAMETERS.items()))
def test_azd_parameters_file_maps_the_optional_parameters(parameter: str, value: str) -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters[parameter]["value"] == value
    declared = parse("main.bicep")["parameters"][parameter]
    assert azd_variable(value)[1] == str(declared["default"]).lower(), f"{parameter}: azd's default is not main's"


def azd_variable(value: str) -> tuple[str, str]:
    """`${NAME=default}` as (NAME, default); `${NAME}` has the default ''."""
    name, _, default = value.removeprefix("${").removesuffix("}").partition("=")
    return name, default


def test_every_parameter_in_the_azd_file_is_a_main_parameter() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(parameters) <= set(parse("main.bicep")["parameters"])


def readme_parameter_rows() -> dict[str, tuple[str, str, str]]:
    """README "Deploy parameters" table: parameter -> (azd variable, default, effect)."""
    section = readme_section("### Deploy parameters", "### What the template creates")
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("| `") else []
        if len(cells) == 4:
            variable, parameter, default, effect = cells
            rows[parameter.strip("`")] = (variable.strip("`"), default.strip("`"), effect)
    return rows


def test_readme_deploy_parameters_table_matches_the_azd_file() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    required = {"environmentName", "location", "amlWorkspaceResourceGroup", "amlWorkspaceName", "batchEndpointName"}
    rows = readme_parameter_rows()
    assert set(rows) == set(parameters) - required
    for parameter, (variable, default, _) in rows.items():
        name, azd_default = azd_variable(parameters[parameter]["value"])
        assert variable == name, parameter
        assert default == (azd_default or "empty"), parameter
    for parameter, setting in (
        ("amlRunEvents", "AML_RUN_EVENTS"),
        ("amlRunEvents", "AML_EVENT_SUBSCRIPTION_ID"),
        ("maxJobsInFlight", "MAX_JOBS_IN_FLIGHT"),
        ("shardThresholdMb", "SHARD_THRESHOLD_MB"),
        ("shardPartMb", "SHARD_PART_MB"),
    ):
        assert f"`{setting}" in rows[parameter][2], f"README: say which app setting {parameter} sets"
    declared = parse("main.bicep")["parameters"]
    for parameter in ("maxJobsInFlight", "shardThresholdMb", "shardPartMb"):
        bounds = {d["type"]: d["argument"] for d in declared[parameter]["decorators"]}
        assert f"({bounds['min_value']}–{bounds['max_value']})" in rows[parameter][2], f"README: {parameter}'s range"


def test_no_output_feeds_another_parameter_through_the_azd_environment() -> None:
    """azd writes main.bicep's outputs into the .env that main.parameters.json reads: an output named like an
    input variable would override that parameter on the next provision (unless it is the parameter itself)."""
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    reads = {azd_variable(entry["value"])[0]: name for name, entry in parameters.items()}
    for output, declared in parse("main.bicep")["outputs"].items():
        if output in reads:
            assert declared["value"] == reads[output], f"output {output} would feed parameter {reads[output]}"


def test_azure_yaml_deploys_the_repo_as_a_python_function_and_runs_the_hook() -> None:
    config = yaml.safe_load((REPO / "azure.yaml").read_text())
    assert config["services"]["api"] == {"project": ".", "language": "python", "host": "function"}
    hook = config["hooks"]["postdeploy"]
    for platform in ("posix", "windows"):
        assert hook[platform]["run"].endswith("infra/hooks/postdeploy.py")
        assert hook[platform]["continueOnError"] is False


def test_one_user_assigned_identity_is_the_only_identity_of_the_app() -> None:
    identities = [
        name
        for path in bicep_files()
        for name, resource in parse(path.relative_to(INFRA).as_posix()).get("resources", {}).items()
        if resource["type"] == "Microsoft.ManagedIdentity/userAssignedIdentities" and not resource["existing"]
    ]
    assert identities == ["identity"]
    site = parse("modules/functionapp.bicep")["resources"]["site"]["config"]
    assert site["identity"]["type"] == "UserAssigned"
    assert list(site["identity"]["userAssignedIdentities"]) == ["'${identityId}'"]


def test_function_app_is_flex_consumption_https_only_and_keyless_deploys() -> None:
    template = parse("modules/functionapp.bicep")
    plan = template["resources"]["plan"]["config"]
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    site = template["resources"]["site"]["config"]
    assert site["kind"] == "functionapp,linux"
    properties = site["properties"]
    assert properties["httpsOnly"] is True
    assert properties["siteConfig"]["minTlsVersion"] == "1.2"
    assert properties["siteConfig"]["ftpsState"] == "Disabled"
    config = properties["functionAppConfig"]
    assert config["deployment"]["storage"]["type"] == "blobContainer"
    assert config["deployment"]["storage"]["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }
    assert config["runtime"] == {"name": "python", "version": "pythonVersion"}
    assert config["scaleAndConcurrency"]["alwaysReady"] == []
    # The settings array is built from the appSettings variable the other tests read.
    loop = properties["siteConfig"]["appSettings"]["loop_type"]["detail"]["array_name"]["function"]
    assert loop == {"type": "items", "parameters": {"arg_1": "appSettings"}}


def test_storage_account_is_entra_only_and_tls12() -> None:
    account = parse("modules/storage.bicep")["resources"]["account"]["config"]
    assert account["kind"] == "StorageV2"
    properties = account["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["allowBlobPublicAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"


@pytest.mark.parametrize(
    ("resource", "expected"), [("containers", "containerNames"), ("tables", "tableNames"), ("queues", "queueNames")]
)
def test_storage_creates_what_main_asks_for(resource: str, expected: str) -> None:
    _, _, loop = unwrap(parse("modules/storage.bicep")["resources"][resource]["config"])
    assert loop is not None
    assert loop["detail"]["array_name"] == expected


def test_monitoring_and_topic_refuse_local_auth() -> None:
    insights = parse("modules/monitoring.bicep")["resources"]["applicationInsights"]["config"]["properties"]
    assert insights["DisableLocalAuth"] is True
    assert insights["WorkspaceResourceId"] == {
        "operator": {"type": "property_accessor", "operands": {"operand_1": "logAnalytics", "operand_2": "id"}}
    }
    grid = parse("modules/eventgrid.bicep")["resources"]
    assert grid["topic"]["config"]["properties"]["inputSchema"] == "CloudEventSchemaV1_0"
    assert grid["topic"]["config"]["properties"]["disableLocalAuth"] is True
    assert grid["systemTopic"]["config"]["identity"] == {"type": "SystemAssigned"}
    assert grid["systemTopic"]["config"]["properties"]["topicType"] == "Microsoft.Storage.StorageAccounts"


def test_azure_ml_datastores_are_identity_based_blob_datastores_on_the_app_account() -> None:
    azure_ml = main_scope().module("azureMl")
    datastores = azure_ml.value(azure_ml.template["variables"]["datastores"]["value"])
    assert {(d["name"], d["container"]) for d in datastores} == {
        ("dropscore_inputs", "incoming"),
        ("dropscore_outputs", "aml-outputs"),
    }
    body, _, _ = unwrap(azure_ml.resource("blobDatastores")["config"])
    properties = body["properties"]
    assert properties["datastoreType"] == "AzureBlob"
    assert properties["credentials"] == {"credentialsType": "None"}
    assert properties["accountName"] == "storageAccountName"
    endpoint = azure_ml.resource("batchEndpoint")
    assert endpoint["existing"] is True
    assert endpoint["type"].endswith("/batchEndpoints")
    assert azure_ml.template["outputs"]["scoringUri"]["value"]["operator"]["operands"]["operand_1"] == "batchEndpoint"


def test_blob_subscription_filters_committed_csv_uploads_in_the_input_container() -> None:
    template = parse("blob-subscription.bicep")
    assert {"type": "secure"} in template["parameters"]["blobExtensionKey"]["decorators"]
    properties = template["resources"]["blobCreated"]["config"]["properties"]
    assert properties["eventDeliverySchema"] == "EventGridSchema"
    endpoint = properties["destination"]["properties"]["endpointUrl"]
    assert properties["destination"]["endpointType"] == "WebHook"
    assert endpoint == (
        "https://${functionAppHostName}/runtime/webhooks/blobs"
        "?functionName=Host.Functions.${functionName}&code=${blobExtensionKey}"
    )
    assert template["parameters"]["functionName"]["default"] == "on_input_blob"
    event_filter = properties["filter"]
    assert event_filter["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"]
    assert event_filter["subjectBeginsWith"] == "/blobServices/default/containers/${inputContainerName}/"
    assert event_filter["subjectEndsWith"] == ".csv"
    assert event_filter["advancedFilters"] == [
        {
            "operatorType": "StringIn",
            "key": "data.api",
            "values": ["PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose"],
        }
    ]
    assert properties["retryPolicy"] == {
        "maxDeliveryAttempts": "maxDeliveryAttempts",
        "eventTimeToLiveInMinutes": "eventTimeToLiveInMinutes",
    }
    assert template["parameters"]["maxDeliveryAttempts"]["default"] == 30
    assert template["parameters"]["eventTimeToLiveInMinutes"]["default"] == 1440
    dead_letter = properties["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"] == {"type": "SystemAssigned"}
    assert dead_letter["deadLetterDestination"]["endpointType"] == "StorageBlob"
    assert dead_letter["deadLetterDestination"]["properties"]["blobContainerName"] == "deadLetterContainerName"


# ---- The fast completion path: the workspace's system topic and the run events subscription ------------------


def aml_events(**main_parameters: Any) -> Scope:
    return Scope("main.bicep", main_parameters).module("amlEvents")


def roles_module(main: Scope, symbol: str) -> Scope:
    """A roles.bicep deployment of main.bicep. pycep gives the literal 'amlWorkspaceResourceGroup' like an
    identifier, and main.bicep has a parameter of that name: bind the literal main.bicep passes as grantsIn."""
    scope = main.module(symbol)
    grants_in = main.template["modules"][symbol]["config"]["params"]["grantsIn"]
    assert grants_in in {"appResourceGroup", "amlWorkspaceResourceGroup"}
    return Scope(scope.relative, {**scope.bound, "grantsIn": grants_in})


def test_workspace_system_topic_is_created_on_the_workspace_in_its_resource_group() -> None:
    call = parse("main.bicep")["modules"]["amlEvents"]["config"]
    assert call["scope"]["function"] == {
        "type": "resource_group",
        "parameters": {"resource_group_name": "amlWorkspaceResourceGroup", "subscription_id": None},
    }
    assert call["params"]["enabled"] == "amlRunEvents"
    assert call["params"]["existingSystemTopicName"] == "workspaceSystemTopicName"
    module = aml_events()
    body, condition, _ = unwrap(module.resource("systemTopic")["config"])
    assert module.resource("systemTopic")["type"] == "Microsoft.EventGrid/systemTopics"
    assert condition == "createTopic"
    assert set(body["properties"]) == {"source", "topicType"}
    assert accessor_chain(body["properties"]["source"]) == ["workspace", "id"]
    assert body["properties"]["topicType"] == "Microsoft.MachineLearningServices.Workspaces"
    assert accessor_chain(body["location"]) == ["workspace", "location"]
    assert body["identity"] == {"type": "SystemAssigned"}  # dead-lettering with the topic's identity
    workspace = module.resource("workspace")
    assert workspace["existing"] is True
    assert workspace["type"] == "Microsoft.MachineLearningServices/workspaces"
    assert module.value(workspace["config"]["name"]) == Opaque("param amlWorkspaceName")


def test_workspace_system_topic_is_created_by_default() -> None:
    module = aml_events()
    assert module.condition("systemTopic") is True
    outputs = module.template["outputs"]
    assert module.value(outputs["systemTopicName"]["value"]) == Opaque("systemTopic.name")  # the created one
    assert module.value(outputs["systemTopicPrincipalId"]["value"]) == Opaque("systemTopic.identity.principalId")
    assert module.bound["systemTopicName"] == "evgst-dropscore-aml-${resourceToken}"


def test_a_named_existing_system_topic_is_used_instead_of_creating_one() -> None:
    module = aml_events(workspaceSystemTopicName="ml-prod-events")
    assert module.condition("systemTopic") is False
    assert module.resource("existingSystemTopic")["existing"] is True
    assert module.value(module.resource("existingSystemTopic")["config"]["name"]) == "ml-prod-events"
    outputs = module.template["outputs"]
    for name in ("systemTopicName", "systemTopicId", "systemTopicPrincipalId"):
        # the existing topic's branch, never the created one's
        assert "existingSystemTopic" in repr(module.value(outputs[name]["value"])), name


@pytest.mark.parametrize("existing", ["", "ml-prod-events"])
def test_amlrunevents_false_leaves_no_system_topic_subscription_or_grant(existing: str) -> None:
    main = Scope("main.bicep", {"amlRunEvents": False, "workspaceSystemTopicName": existing})
    module = main.module("amlEvents")
    assert module.condition("systemTopic") is False
    for name in ("systemTopicName", "systemTopicId", "systemTopicPrincipalId"):
        assert module.value(module.template["outputs"][name]["value"]) == "", name
    for roles in ("appRoles", "amlRoles"):
        scope = roles_module(main, roles)
        assert scope.bound["amlSystemTopicName"] == ""
        assert scope.bound["amlSystemTopicPrincipalId"] == ""
        assert scope.condition("appAmlSubscriptionReader") is False, roles
        assert scope.condition("amlSystemTopicDeadLetterWriter") is False, roles
    # No subscription: the hook creates it only when the app setting is on, and it is off.
    assert main.value(parse("main.bicep")["outputs"]["AML_RUN_EVENTS_SETTING"]["value"]) == "off"
    assert main.value(parse("main.bicep")["outputs"]["AML_SYSTEM_TOPIC_NAME"]["value"]) == ""


def test_amlrunevents_true_grants_each_role_in_the_resource_group_that_holds_its_scope() -> None:
    main = Scope("main.bicep", {"amlRunEvents": True})
    assert main.value(parse("main.bicep")["outputs"]["AML_RUN_EVENTS_SETTING"]["value"]) == "on"
    app_group, aml_group = roles_module(main, "appRoles"), roles_module(main, "amlRoles")
    assert app_group.bound["amlSystemTopicPrincipalId"] == Opaque("amlEvents.outputs.systemTopicPrincipalId")
    assert aml_group.bound["amlSystemTopicName"] == Opaque("amlEvents.outputs.systemTopicName")
    # Each grant is deployed only from the roles module in its scope's resource group...
    assert app_group.condition("appAmlSubscriptionReader") is False
    assert aml_group.condition("amlSystemTopicDeadLetterWriter") is False
    # ...and there it depends on the topic module's output, known at deployment: its form is checked here.
    assert aml_group.condition("appAmlSubscriptionReader") is None
    assert app_group.condition("amlSystemTopicDeadLetterWriter") is None
    variables = app_group.template["variables"]
    assert variables["grantAmlSubscriptionRead"]["value"]["operator"]["operands"]["operand_1"] == "inAmlGroup"
    assert variables["grantAmlDeadLetter"]["value"]["operator"]["operands"]["operand_1"] == "inAppGroup"
    assert "amlSystemTopicName" in repr(variables["grantAmlSubscriptionRead"]["value"])
    assert "amlSystemTopicPrincipalId" in repr(variables["grantAmlDeadLetter"]["value"])


def aml_subscription() -> dict[str, Any]:
    return parse("aml-run-events-subscription.bicep")


def test_run_events_subscription_delivers_the_end_of_dropscore_runs_to_aml_run_events() -> None:
    template = aml_subscription()
    resource = template["resources"]["runEvents"]
    assert resource["type"] == "Microsoft.EventGrid/systemTopics/eventSubscriptions"
    assert template["resources"]["systemTopic"]["existing"] is True
    properties = resource["config"]["properties"]
    assert properties["eventDeliverySchema"] == "EventGridSchema"
    assert properties["destination"] == {
        "endpointType": "AzureFunction",
        "properties": {
            "resourceId": "${functionAppId}/functions/${functionName}",
            "maxEventsPerBatch": 1,
            "preferredBatchSizeInKilobytes": 64,
        },
    }
    assert template["parameters"]["functionName"]["default"] == "aml_run_events"
    assert properties["filter"] == {
        "includedEventTypes": ["Microsoft.MachineLearningServices.RunStatusChanged"],
        "advancedFilters": [
            {"operatorType": "StringIn", "key": "data.runStatus", "values": ["Completed", "Failed", "Canceled"]},
            {"operatorType": "StringBeginsWith", "key": "data.runId", "values": ["dropscore-"]},
        ],
    }


def test_run_events_subscription_retries_and_dead_letters_like_the_blob_one() -> None:
    blob, aml = parse("blob-subscription.bicep"), aml_subscription()
    blob_properties = blob["resources"]["blobCreated"]["config"]["properties"]
    aml_properties = aml["resources"]["runEvents"]["config"]["properties"]
    for key in ("retryPolicy", "deadLetterWithResourceIdentity", "eventDeliverySchema"):
        assert aml_properties[key] == blob_properties[key], key
    blob_batching = {k: v for k, v in blob_properties["destination"]["properties"].items() if k != "endpointUrl"}
    aml_batching = {k: v for k, v in aml_properties["destination"]["properties"].items() if k != "resourceId"}
    assert aml_batching == blob_batching
    for name in ("maxDeliveryAttempts", "eventTimeToLiveInMinutes"):
        assert aml["parameters"][name] == blob["parameters"][name], name
    assert not any({"type": "secure"} in p["decorators"] for p in aml["parameters"].values())  # no key involved


def test_run_id_filter_matches_the_job_names_dropscore_submits() -> None:
    [prefix_filter] = [
        f
        for f in aml_subscription()["resources"]["runEvents"]["config"]["properties"]["filter"]["advancedFilters"]
        if f["key"] == "data.runId"
    ]
    job_name = naming.aml_job_name("0123456789abcdef" * 3, 1)
    assert any(job_name.startswith(prefix) for prefix in prefix_filter["values"])
    assert not "dropscorex-1".startswith(tuple(prefix_filter["values"]))


def test_the_function_name_is_the_same_everywhere() -> None:
    main = parse("main.bicep")
    assert main["outputs"]["AML_EVENTS_FUNCTION_NAME"]["value"] == "aml_run_events"
    assert aml_subscription()["parameters"]["functionName"]["default"] == "aml_run_events"
    # The hook builds the destination from the app's id: the function app module's output.
    assert accessor_chain(main["outputs"]["AZURE_FUNCTION_APP_ID"]["value"]) == ["functionApp", "outputs", "id"]


def declared_functions() -> dict[str, list[str]]:
    """function_app.py: function name -> the `app.*` decorators on it."""
    tree = ast.parse((REPO / "function_app.py").read_text(encoding="utf-8"))
    found: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        name, kinds = node.name, []
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            target = ast.unparse(call.func if call else decorator)
            if target == "app.function_name" and call and call.args and isinstance(call.args[0], ast.Constant):
                name = str(call.args[0].value)
            kinds.append(target)
        found[name] = kinds
    return found


def test_aml_run_events_is_an_event_grid_trigger_in_function_app() -> None:
    functions = declared_functions()
    assert "on_input_blob" in functions  # the reader works
    if "aml_run_events" not in functions:
        pytest.skip("function_app.py does not declare aml_run_events yet (the subscription needs it at deploy)")
    assert "app.event_grid_trigger" in functions["aml_run_events"]
