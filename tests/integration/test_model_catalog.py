"""REQUIRED_COLUMNS=auto against the emulator and Azurite: deployment -> model -> datastore -> MLmodel, via ARM."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobServiceClient

from localdev.azurite import Azurite
from localdev.batch_endpoint.config import WORKSPACE_ID
from localdev.batch_endpoint.workspace import MODEL_CONTAINER, model_folder
from shared.adapters.blobs import DatastoreFiles
from shared.adapters.modelcatalog import AzureMLModelCatalog
from shared.adapters.rest import RestClient, retrying_session
from shared.errors import ModelSchemaUnavailable, ResourceMissing, ScoringAuthError
from shared.models import ModelInputs
from tests.integration.batch_endpoint_support import TOKEN, Emulator, demo_models, running_emulator

pytestmark = pytest.mark.integration
ENDPOINT = "local-endpoint"
DIAMOND_COLUMNS = ("carat", "cut", "color", "clarity", "depth", "table", "x", "y", "z")


@pytest.fixture(scope="module")
def emulator(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    root = tmp_path_factory.mktemp("model-catalog")
    mlflow_model, script = demo_models(root)
    with running_emulator(azurite, root, {"diamonds": mlflow_model, "scripted": script}) as running:
        yield running


def catalog(emulator: Emulator, token: str = TOKEN) -> AzureMLModelCatalog:
    own = BlobServiceClient.from_connection_string(emulator.azurite.connection_string)
    return AzureMLModelCatalog(
        management_endpoint=emulator.base,
        workspace_id=WORKSPACE_ID,
        token=lambda: token,
        client=RestClient(retrying_session(2, 0.05), timeout=10),
        files=DatastoreFiles(own, client_id=None),
    )


def test_the_deployments_mlflow_signature_gives_the_model_columns(emulator: Emulator) -> None:
    found = catalog(emulator).input_columns(endpoint_name=ENDPOINT, deployment="diamonds")
    assert found == ModelInputs("diamonds:1", DIAMOND_COLUMNS)


def test_no_deployment_named_means_the_endpoints_default(emulator: Emulator) -> None:
    found = catalog(emulator).input_columns(endpoint_name=ENDPOINT, deployment=None)
    assert found == ModelInputs("diamonds:1", DIAMOND_COLUMNS)


def test_a_scoring_script_model_has_no_signature_to_read(emulator: Emulator) -> None:
    with pytest.raises(ModelSchemaUnavailable, match="scripted:1 is a custom_model, not an MLflow model"):
        catalog(emulator).input_columns(endpoint_name=ENDPOINT, deployment="scripted")


def test_an_unknown_deployment_or_endpoint_is_missing(emulator: Emulator) -> None:
    with pytest.raises(ResourceMissing, match="deployment nope"):
        catalog(emulator).input_columns(endpoint_name=ENDPOINT, deployment="nope")
    with pytest.raises(ResourceMissing, match="batch endpoint other"):
        catalog(emulator).input_columns(endpoint_name="other", deployment=None)


def test_a_refused_token_is_an_authorization_error_naming_the_role(emulator: Emulator) -> None:
    with pytest.raises(ScoringAuthError, match="dropscore batch invoker"):
        catalog(emulator, token="wrong").input_columns(endpoint_name=ENDPOINT, deployment="diamonds")


def test_the_mlmodel_file_is_read_from_the_models_datastore(emulator: Emulator) -> None:
    """The columns come from the file in storage, not from anything else the emulator knows."""
    service = BlobServiceClient.from_connection_string(emulator.azurite.connection_string)
    blob = service.get_blob_client(MODEL_CONTAINER, f"{model_folder('diamonds')}/MLmodel")
    original = blob.download_blob().readall()
    try:
        edited = original.replace(b'"name": "carat", "required": true', b'"name": "carat", "required": false')
        assert edited != original
        blob.upload_blob(edited, overwrite=True)
        found = catalog(emulator).input_columns(endpoint_name=ENDPOINT, deployment="diamonds")
        assert found.columns == DIAMOND_COLUMNS[1:]
        blob.delete_blob()
        with pytest.raises(ResourceMissing, match="MLmodel does not exist"):
            catalog(emulator).input_columns(endpoint_name=ENDPOINT, deployment="diamonds")
    finally:
        blob.upload_blob(original, overwrite=True)
