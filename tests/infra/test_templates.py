"""infra/: every template parses, the modules are wired, and the resources have the settings the issue asks for."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.infra.bicep import INFRA, REPO, bicep_files, main_scope, parse, unwrap


def test_every_bicep_file_parses() -> None:
    names = {path.relative_to(INFRA).as_posix() for path in bicep_files()}
    assert {"main.bicep", "blob-subscription.bicep", "modules/roles.bicep", "modules/functionapp.bicep"} <= names
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


def test_azd_parameters_file_covers_the_required_parameters() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["location"]["value"] == "${AZURE_LOCATION}"
    for name in ("amlWorkspaceResourceGroup", "amlWorkspaceName", "batchEndpointName"):
        assert parameters[name]["value"].startswith("${"), name


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
