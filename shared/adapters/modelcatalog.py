"""The batch deployment's model, read through Azure ML's ARM API: which input columns it requires.

The path (REQUIRED_COLUMNS=auto): deployment -> `properties.model.assetId` (a model version) ->
`properties.modelUri` (a datastore path) -> the datastore's storage account and container -> the
model's `MLmodel` file -> its MLflow `signature.inputs`. With no deployment named, the endpoint's
`properties.defaults.deploymentName` is used, as Azure does when invoke names none.

Permissions: the ARM reads need `batchEndpoints/read`, `batchEndpoints/deployments/read`, `models/read`
and `datastores/read` on the workspace (all in the 'dropscore batch invoker' role); the MLmodel read
needs Storage Blob Data Reader on the storage account behind the model's datastore (usually the
workspace's own). Datastore secrets are never read: the app stays keyless.

This module is the only one that imports PyYAML (MLmodel is YAML).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml

from shared.adapters.azureml import bearer, json_object, raise_for_status, service_message
from shared.adapters.blobs import DatastoreFiles
from shared.adapters.identity import credential
from shared.adapters.rest import CachedToken, RestClient, retrying_session, static_token
from shared.config import Settings
from shared.core.signature import SignatureUnusable, required_columns
from shared.errors import ModelSchemaUnavailable, ResourceMissing
from shared.models import ModelInputs

#: Storage endpoint suffixes of the Azure clouds (public, US Government, China).
STORAGE_SUFFIXES = frozenset({"core.windows.net", "core.usgovcloudapi.net", "core.chinacloudapi.cn"})
_ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")
#: An MLmodel file is a few kilobytes; anything far bigger is not one.
MLMODEL_MAX_BYTES = 1024 * 1024
_WORKSPACE = r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.MachineLearningServices/workspaces/[^/]+"
_MODEL_VERSION = re.compile(rf"^(?:azureml:)?({_WORKSPACE}/models/[^/]+/versions/[^/]+)$", re.IGNORECASE)
_SHORT_MODEL = re.compile(r"^azureml:([^/:]+):([^/:]+)$")
_LONG_DATASTORE_PATH = re.compile(
    r"^azureml://subscriptions/([^/]+)/resource[gG]roups/([^/]+)/workspaces/([^/]+)/datastores/([^/]+)/paths/(.+)$"
)
_SHORT_DATASTORE_PATH = re.compile(r"^azureml://datastores/([^/]+)/paths/(.+)$")
#: `modelType` as the CLI writes it (mlflow_model) and as the REST enum spells it (MLFlowModel), normalised.
_MLFLOW = "mlflowmodel"


class AzureMLModelCatalog:
    """ModelCatalog over ARM (`{management endpoint}/{workspace id}/...`) and the model's datastore."""

    @classmethod
    def from_settings(cls, settings: Settings) -> AzureMLModelCatalog:
        endpoint = settings.aml_management_endpoint
        if settings.aml_local_token:  # the emulator answers the ARM reads on loopback
            token = static_token(settings.aml_local_token)
        else:
            token = CachedToken(credential(settings.client_id), endpoint + "/.default")
        return cls(
            management_endpoint=endpoint,
            workspace_id=settings.aml_workspace_id or "",
            token=token,
            client=RestClient(retrying_session(settings.aml_max_retries), timeout=settings.aml_http_timeout),
            files=DatastoreFiles.from_settings(settings),
        )

    def __init__(
        self,
        *,
        management_endpoint: str,
        workspace_id: str,
        token: Callable[[], str],
        client: RestClient,
        files: DatastoreFiles,
        api_version: str = "2024-04-01",
    ) -> None:
        self._endpoint = management_endpoint.rstrip("/")
        self._workspace = "/" + workspace_id.strip("/")
        self._token = token
        self._rest = client
        self._files = files
        self._api_version = api_version

    def input_columns(self, *, endpoint_name: str, deployment: str | None) -> ModelInputs:
        name = deployment or self._default_deployment(endpoint_name)
        found = self._get(f"{self._workspace}/batchEndpoints/{endpoint_name}/deployments/{name}", f"deployment {name}")
        model_id = model_version_id(found, workspace=self._workspace, deployment=name)
        model = self._get(model_id, "model")
        label = _label(model_id)
        properties = model.get("properties") or {}
        model_type = str(properties.get("modelType") or "").replace("_", "").lower()
        if model_type and model_type != _MLFLOW:
            raise ModelSchemaUnavailable(
                f"model {label} is a {properties.get('modelType')}, not an MLflow model: it has no signature to read"
            )
        datastore_id, folder = datastore_path(str(properties.get("modelUri") or ""), workspace=self._workspace)
        store = (self._get(datastore_id, "datastore").get("properties")) or {}
        account, container = store.get("accountName"), store.get("containerName")
        if not (account and container):
            raise ModelSchemaUnavailable(f"model {label} is kept on a datastore that is not Azure Blob storage")
        suffix = str(store.get("endpoint") or "core.windows.net").lower()
        # The app's identity signs this read: only a real storage account name in an Azure cloud, never a host
        # that whoever can write a datastore chose.
        if not _ACCOUNT_NAME.match(str(account)) or suffix not in STORAGE_SUFFIXES:
            raise ModelSchemaUnavailable(
                f"model {label} is on datastore storage the app does not read ({account!s:.30} in {suffix:.40}): "
                "only an Azure storage account in a known Azure cloud"
            )
        text = self._files.read_small(
            account=str(account),
            endpoint_suffix=suffix,
            container=str(container),
            path=f"{folder.rstrip('/')}/MLmodel",
            max_bytes=MLMODEL_MAX_BYTES,
        )
        return ModelInputs(label, columns_of_mlmodel(text, label=label))

    def _default_deployment(self, endpoint_name: str) -> str:
        endpoint = self._get(f"{self._workspace}/batchEndpoints/{endpoint_name}", f"batch endpoint {endpoint_name}")
        name = ((endpoint.get("properties") or {}).get("defaults") or {}).get("deploymentName")
        if not name:
            raise ModelSchemaUnavailable(
                f"batch endpoint {endpoint_name} has no default deployment; set BATCH_DEPLOYMENT"
            )
        return str(name)

    def _get(self, resource_id: str, what: str) -> dict[str, Any]:
        url = f"{self._endpoint}{resource_id}?api-version={self._api_version}"
        response = self._rest.send("GET", url, headers={"Authorization": f"Bearer {bearer(self._token)}"})
        if response.status == 404:
            raise ResourceMissing(f"Azure ML has no {what}: {service_message(response)}")
        raise_for_status(response, f"{what} read")  # 401/403: ScoringAuthError naming the role
        return json_object(response)


def model_version_id(found: dict[str, Any], *, workspace: str, deployment: str) -> str:
    """The ARM id of the model version a deployment serves (`properties.model`, an IdAssetReference)."""
    name = deployment
    reference = (found.get("properties") or {}).get("model") or {}
    asset = str(reference.get("assetId") or "") if isinstance(reference, dict) else ""
    if not asset:
        raise ModelSchemaUnavailable(f"deployment {name} names no model (a pipeline component deployment?)")
    if asset.startswith("azureml://registries/"):
        raise ModelSchemaUnavailable(
            f"deployment {name} serves a model from a registry, whose files the app cannot read; "
            "list the model's columns in REQUIRED_COLUMNS instead"
        )
    if match := _MODEL_VERSION.match(asset):
        return match.group(1)
    if match := _SHORT_MODEL.match(asset):
        return f"{workspace}/models/{match.group(1)}/versions/{match.group(2)}"
    raise ModelSchemaUnavailable(f"deployment {name} names its model in a form the app does not know: {asset}")


def datastore_path(model_uri: str, *, workspace: str) -> tuple[str, str]:
    """(ARM id of the datastore, path in it) of a model's files (`properties.modelUri`)."""
    if match := _LONG_DATASTORE_PATH.match(model_uri):
        subscription, group, name, datastore, path = match.groups()
        owner = f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.MachineLearningServices"
        return f"{owner}/workspaces/{name}/datastores/{datastore}", path
    if match := _SHORT_DATASTORE_PATH.match(model_uri):
        return f"{workspace}/datastores/{match.group(1)}", match.group(2)
    shown = model_uri.split("?", 1)[0] or "nothing"
    raise ModelSchemaUnavailable(f"the model's files are at {shown}, not on a datastore the app can read")


def columns_of_mlmodel(text: bytes, *, label: str) -> tuple[str, ...]:
    """The required columns in an MLmodel file's signature."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ModelSchemaUnavailable(f"model {label}: its MLmodel file is not valid YAML") from None
    signature = document.get("signature") if isinstance(document, dict) else None
    try:
        return required_columns(signature)
    except SignatureUnusable as exc:
        raise ModelSchemaUnavailable(f"model {label}: {exc}") from None


def _label(model_id: str) -> str:
    """`name:version` from `.../models/{name}/versions/{version}`."""
    parts = model_id.rstrip("/").split("/")
    return f"{parts[-3]}:{parts[-1]}"
