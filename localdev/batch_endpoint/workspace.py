"""ARM reads of the emulated workspace, shaped as Azure answers them: the batch endpoint, its deployments,
their models and the datastores. The app's health check and REQUIRED_COLUMNS=auto read these in Azure.

Models: a deployment serving an MLflow folder is registered as model `<deployment>` version 1 (a
scoring-script deployment with a `model/` folder as a custom model). Its files are on the
`workspaceartifactstore` datastore (container `azureml` in Azurite, like a workspace's default artifact
store) under `LocalUpload/<hash>/model/`, as `az ml model create` from a local folder leaves them.
`publish_models` uploads each MLflow model's MLmodel file there at start-up; only that file, since the
emulator scores from the local folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.blob import BlobServiceClient
from fastapi import FastAPI, Request

from localdev.batch_endpoint.config import RESOURCE_GROUP, SUBSCRIPTION, WORKSPACE, WORKSPACE_ID, EmulatorConfig
from localdev.batch_endpoint.deployments import MLFLOW, Deployment
from localdev.batch_endpoint.errors import ApiError

ARM_WORKSPACE = (
    "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
    "Microsoft.MachineLearningServices/workspaces/{workspace}"
)
ARM_ENDPOINT = ARM_WORKSPACE + "/batchEndpoints/{endpoint}"
ARM_DEPLOYMENT = ARM_ENDPOINT + "/deployments/{deployment}"
ARM_MODEL_VERSION = ARM_WORKSPACE + "/models/{model}/versions/{version}"
ARM_DATASTORE = ARM_WORKSPACE + "/datastores/{datastore}"
MODEL_DATASTORE = "workspaceartifactstore"
MODEL_CONTAINER = "azureml"
MODEL_VERSION = "1"

log = logging.getLogger("batch_endpoint")


def model_folder(deployment: str) -> str:
    """Where a deployment's model files are on the model datastore (deterministic, like Azure's upload hash)."""
    digest = hashlib.sha256(deployment.encode()).hexdigest()[:32]
    return f"LocalUpload/{digest}/model"


def account_name(connection_string: str) -> str:
    parts = dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)
    return parts.get("AccountName", "devstoreaccount1")


def publish_models(config: EmulatorConfig) -> None:
    """Upload each MLflow deployment's MLmodel to the model datastore, so ARM's modelUri points at a real file."""
    mlflow = [d for d in config.deployments.values() if d.kind == MLFLOW]
    if not mlflow:
        return
    try:
        service = BlobServiceClient.from_connection_string(config.connection_string)
        with contextlib.suppress(ResourceExistsError):
            service.create_container(MODEL_CONTAINER)
        for deployment in mlflow:
            blob = service.get_blob_client(MODEL_CONTAINER, f"{model_folder(deployment.name)}/MLmodel")
            blob.upload_blob((deployment.path / "MLmodel").read_bytes(), overwrite=True)
    except (AzureError, OSError) as exc:  # the scoring routes work without it; only model reads will 404
        log.warning("could not publish the models' MLmodel files to Azurite: %s", exc)


def add_workspace_routes(
    app: FastAPI,
    config: EmulatorConfig,
    check_token: Callable[[Request, str], None],
    require_api_version: Callable[[Request], None],
) -> None:
    """`check_token(request, token)` and `require_api_version(request)` are the app's own request checks."""

    def checked(request: Request) -> None:
        check_token(request, config.token)
        require_api_version(request)

    @app.get(ARM_ENDPOINT)
    async def arm_endpoint(endpoint: str, request: Request) -> dict[str, Any]:
        checked(request)
        if endpoint != config.endpoint_name:
            raise ApiError(404, "ResourceNotFound", f"Batch endpoint '{endpoint}' was not found.")
        base = str(request.base_url).rstrip("/")
        return {
            "id": f"{WORKSPACE_ID}/batchEndpoints/{endpoint}",
            "name": endpoint,
            "type": "Microsoft.MachineLearningServices/workspaces/batchEndpoints",
            "properties": {
                "authMode": "AADToken",
                "defaults": {"deploymentName": config.default_deployment},
                "scoringUri": f"{base}/jobs",
                "provisioningState": "Succeeded",
            },
        }

    @app.get(ARM_DEPLOYMENT)
    async def arm_deployment(endpoint: str, deployment: str, request: Request) -> dict[str, Any]:
        checked(request)
        if endpoint != config.endpoint_name or deployment not in config.deployments:
            raise ApiError(
                404,
                "ResourceNotFound",
                f"Batch deployment '{deployment}' of endpoint '{endpoint}' was not found. "
                f"Known: {sorted(config.deployments)} on '{config.endpoint_name}'.",
            )
        served = config.deployments[deployment]
        properties: dict[str, Any] = {"provisioningState": "Succeeded", "description": f"emulated {served.kind}"}
        if _model_type(served):
            asset = f"{WORKSPACE_ID}/models/{deployment}/versions/{MODEL_VERSION}"
            properties["model"] = {"referenceType": "Id", "assetId": asset}
        return {
            "id": f"{WORKSPACE_ID}/batchEndpoints/{endpoint}/deployments/{deployment}",
            "name": deployment,
            "type": "Microsoft.MachineLearningServices/workspaces/batchEndpoints/deployments",
            "properties": properties,
        }

    @app.get(ARM_MODEL_VERSION)
    async def arm_model_version(model: str, version: str, request: Request) -> dict[str, Any]:
        checked(request)
        served = config.deployments.get(model)
        model_type = _model_type(served) if served else None
        if model_type is None or version != MODEL_VERSION:
            raise ApiError(404, "ResourceNotFound", f"Model container {model}:{version} was not found.")
        uri = (
            f"azureml://subscriptions/{SUBSCRIPTION}/resourcegroups/{RESOURCE_GROUP}/workspaces/{WORKSPACE}"
            f"/datastores/{MODEL_DATASTORE}/paths/{model_folder(model)}"
        )
        return {
            "id": f"{WORKSPACE_ID}/models/{model}/versions/{version}",
            "name": version,
            "type": "Microsoft.MachineLearningServices/workspaces/models/versions",
            "properties": {"modelType": model_type, "modelUri": uri, "isAnonymous": False},
        }

    @app.get(ARM_DATASTORE)
    async def arm_datastore(datastore: str, request: Request) -> dict[str, Any]:
        checked(request)
        container = MODEL_CONTAINER if datastore == MODEL_DATASTORE else config.datastores.get(datastore)
        if container is None:
            raise ApiError(404, "ResourceNotFound", f"Datastore '{datastore}' was not found in the workspace.")
        return {
            "id": f"{WORKSPACE_ID}/datastores/{datastore}",
            "name": datastore,
            "type": "Microsoft.MachineLearningServices/workspaces/datastores",
            "properties": {
                "datastoreType": "AzureBlob",
                "accountName": account_name(config.connection_string),
                "containerName": container,
                "endpoint": "core.windows.net",
                "protocol": "https",
                "credentials": {"credentialsType": "None"},
            },
        }


def _model_type(deployment: Deployment | None) -> str | None:
    """What Azure would call the deployment's model; None when it has none."""
    if deployment is None:
        return None
    if deployment.kind == MLFLOW:
        return "mlflow_model"
    return "custom_model" if (deployment.path / "model").is_dir() else None
