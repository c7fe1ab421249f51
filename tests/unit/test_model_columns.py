"""REQUIRED_COLUMNS=auto: the model's MLflow signature read, cached and applied at intake (issue 10, item 6)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from shared.adapters.modelcatalog import columns_of_mlmodel, datastore_path, model_version_id
from shared.core.signature import SignatureUnusable, required_columns
from shared.errors import ConfigError, ModelSchemaUnavailable, ResourceMissing, ScoringUnavailable
from shared.models import EventType, JobState, ModelInputs
from shared.usecases import poll
from shared.usecases.intake import accept_blob
from tests.fakes import World, make_world

WORKSPACE = "/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w"
MLMODEL = (Path(__file__).parent / "data" / "MLmodel").read_bytes()
GOOD = b"carat,cut,color\n0.3,Ideal,E\n0.4,Good,F\n"
MISSING_CUT = b"carat,color\n0.3,E\n"


def auto_world(**overrides: str) -> World:
    settings = {"REQUIRED_COLUMNS": "auto", "AML_WORKSPACE_ID": WORKSPACE, "BATCH_DEPLOYMENT": "blue"}
    return make_world(**{**settings, **overrides})


def drop(world: World, name: str, data: bytes) -> JobState:
    world.blobs.put("incoming", name, data)
    info = world.blobs.properties("incoming", name)
    assert info is not None
    job = accept_blob(world.deps, container="incoming", name=name, size=info.size, etag=info.etag, url=f"u/{name}")
    assert job is not None
    return job.state


# ---------------------------------------------------------------- the signature (pure)


def test_a_column_signature_gives_its_required_columns_in_order() -> None:
    inputs = [
        {"type": "double", "name": "carat", "required": True},
        {"type": "string", "name": "cut"},  # before MLflow 2.10 there is no "required": it means required
        {"type": "string", "name": "note", "required": False},
    ]
    assert required_columns({"inputs": json.dumps(inputs)}) == ("carat", "cut")
    assert required_columns({"inputs": inputs}) == ("carat", "cut")


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (None, "without an input signature"),
        ({"inputs": None, "outputs": "[]"}, "without an input signature"),
        ({"inputs": "not json"}, "not valid JSON"),
        ({"inputs": "[]"}, "non-empty list"),
        ({"inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}]'}, "tensor-based"),
        ({"inputs": '[{"type": "double"}]'}, "unnamed"),
        ({"inputs": '[{"type": "double", "name": "a"}, {"type": "long", "name": "a"}]'}, "twice"),
        ({"inputs": "[1]"}, "not an object"),
    ],
)
def test_a_signature_that_names_no_columns_is_unusable(signature: object, reason: str) -> None:
    with pytest.raises(SignatureUnusable, match=reason):
        required_columns(signature)


def test_the_demo_models_mlmodel_file_gives_the_diamond_columns() -> None:
    assert columns_of_mlmodel(MLMODEL, label="diamonds:1") == (
        "carat",
        "cut",
        "color",
        "clarity",
        "depth",
        "table",
        "x",
        "y",
        "z",
    )


def test_an_mlmodel_that_is_not_yaml_or_has_no_signature_is_reported_with_the_model() -> None:
    with pytest.raises(ModelSchemaUnavailable, match="diamonds:2: its MLmodel file is not valid YAML"):
        columns_of_mlmodel(b"flavors: [unclosed", label="diamonds:2")
    with pytest.raises(ModelSchemaUnavailable, match="diamonds:2: the model was logged without an input signature"):
        columns_of_mlmodel(b"flavors: {}\n", label="diamonds:2")


# ---------------------------------------------------------------- ARM references (pure parsing)


@pytest.mark.parametrize(
    "asset",
    [
        f"{WORKSPACE}/models/diamonds/versions/3",
        f"azureml:{WORKSPACE}/models/diamonds/versions/3",
        "azureml:diamonds:3",
    ],
)
def test_a_deployments_model_reference_becomes_the_model_versions_arm_id(asset: str) -> None:
    found = {"properties": {"model": {"referenceType": "Id", "assetId": asset}}}
    assert model_version_id(found, workspace=WORKSPACE, deployment="blue") == f"{WORKSPACE}/models/diamonds/versions/3"


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (None, "names no model"),
        ({"referenceType": "Id", "assetId": "azureml://registries/shared/models/diamonds/versions/1"}, "registry"),
        ({"referenceType": "Id", "assetId": "https://example.com/model"}, "form the app does not know"),
    ],
)
def test_a_model_the_app_cannot_follow_is_unavailable(model: object, reason: str) -> None:
    with pytest.raises(ModelSchemaUnavailable, match=reason):
        model_version_id({"properties": {"model": model}}, workspace=WORKSPACE, deployment="blue")


def test_model_uris_on_datastores_resolve_to_the_datastore_and_path() -> None:
    long = "azureml://subscriptions/s2/resourcegroups/r2/workspaces/w2/datastores/workspaceblobstore/paths/a/b/model"
    other = "/subscriptions/s2/resourceGroups/r2/providers/Microsoft.MachineLearningServices/workspaces/w2"
    assert datastore_path(long, workspace=WORKSPACE) == (f"{other}/datastores/workspaceblobstore", "a/b/model")
    short = "azureml://datastores/workspaceartifactstore/paths/ExperimentRun/dcid.x/model"
    expected = (f"{WORKSPACE}/datastores/workspaceartifactstore", "ExperimentRun/dcid.x/model")
    assert datastore_path(short, workspace=WORKSPACE) == expected
    with pytest.raises(ModelSchemaUnavailable) as caught:
        datastore_path("https://acct.blob.core.windows.net/c/model?sig=SECRET", workspace=WORKSPACE)
    assert "SECRET" not in caught.value.message
    assert "https://acct.blob.core.windows.net/c/model" in caught.value.message


# ---------------------------------------------------------------- settings


def test_auto_needs_the_workspace_and_endpoint_to_read_the_model() -> None:
    with pytest.raises(ConfigError, match=r"REQUIRED_COLUMNS: auto .* AML_WORKSPACE_ID"):
        make_world(REQUIRED_COLUMNS="auto")
    settings = auto_world(REQUIRED_COLUMNS="AUTO").settings
    assert (settings.discover_required_columns, settings.required_columns) == (True, ())
    assert make_world(REQUIRED_COLUMNS="carat").settings.discover_required_columns is False
    with pytest.raises(ConfigError, match="REQUIRED_COLUMNS_REFRESH_SECONDS"):
        auto_world(REQUIRED_COLUMNS_REFRESH_SECONDS="1")


# ---------------------------------------------------------------- the cache


def test_listed_columns_never_ask_the_catalog() -> None:
    world = make_world(REQUIRED_COLUMNS="carat,cut")
    rule = world.model_columns.current()
    assert (rule.names, rule.source) == (("carat", "cut"), "REQUIRED_COLUMNS")
    assert world.catalog.lookups == []


def test_discovered_columns_are_looked_up_once_per_refresh() -> None:
    world = auto_world(REQUIRED_COLUMNS_REFRESH_SECONDS="600")
    assert world.model_columns.current().names == ("carat", "cut")
    world.catalog.inputs = ModelInputs("diamonds:2", ("carat", "cut", "color"))
    world.clock.advance(seconds=599)
    assert world.model_columns.current().names == ("carat", "cut")
    world.clock.advance(seconds=1)
    rule = world.model_columns.current()
    assert rule.names == ("carat", "cut", "color")
    assert rule.source == "the input signature of model diamonds:2"
    assert world.catalog.lookups == [("dropscore-ep", "blue"), ("dropscore-ep", "blue")]


def test_a_transient_failure_keeps_the_last_columns_and_tries_again_soon() -> None:
    world = auto_world()
    world.model_columns.current()
    world.clock.advance(seconds=600)
    world.catalog.error = ScoringUnavailable("HTTP 503", ambiguous=False)
    assert world.model_columns.current().names == ("carat", "cut")
    world.catalog.error = None
    world.catalog.inputs = ModelInputs("diamonds:2", ("x",))
    world.clock.advance(seconds=29)
    assert world.model_columns.current().names == ("carat", "cut")
    world.clock.advance(seconds=1)
    assert world.model_columns.current().names == ("x",)


def test_a_model_without_usable_columns_turns_the_check_off_until_the_next_refresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = auto_world()
    world.catalog.error = ModelSchemaUnavailable("model diamonds:1: the model has a tensor-based signature")
    with caplog.at_level(logging.WARNING, logger="dropscore"):
        assert world.model_columns.current().names == ()
    assert "tensor-based" in caplog.text
    world.catalog.error = None
    assert world.model_columns.current().names == ()  # cached: no second lookup before the refresh
    world.clock.advance(seconds=600)
    assert world.model_columns.current().names == ("carat", "cut")
    assert len(world.catalog.lookups) == 2


# ---------------------------------------------------------------- intake


def test_a_file_without_a_model_column_is_rejected_before_any_job() -> None:
    world = auto_world()
    assert drop(world, "a.csv", MISSING_CUT) is JobState.REJECTED
    assert world.scoring.posts == []
    (job,) = world.store.rows.values()
    assert job.error_code == "MissingColumns"
    assert job.error_message is not None
    assert "missing required columns: cut (the input signature of model diamonds:1)" in job.error_message
    assert [event.type for event in world.events.published] == [EventType.INPUT_REJECTED]


def test_a_file_with_the_model_columns_is_submitted() -> None:
    world = auto_world()
    assert drop(world, "a.csv", GOOD) is JobState.SUBMITTED
    assert len(world.scoring.posts) == 1


def test_with_the_catalog_down_at_start_the_job_waits_received_and_the_poller_validates_it_later() -> None:
    world = auto_world()
    world.catalog.error = ScoringUnavailable("ARM answered 503", ambiguous=False)
    with pytest.raises(ScoringUnavailable):
        drop(world, "a.csv", MISSING_CUT)
    (job,) = world.store.rows.values()
    assert job.state is JobState.RECEIVED
    assert world.scoring.posts == []
    world.catalog.error = None
    world.clock.advance(minutes=10)
    poll.poll(world.deps)
    (job,) = world.store.rows.values()
    assert (job.state, job.error_code) == (JobState.REJECTED, "MissingColumns")
    assert world.scoring.posts == []


def test_a_model_that_cannot_be_read_lets_inputs_through_unchecked() -> None:
    world = auto_world()
    world.catalog.error = ResourceMissing("Azure ML has no deployment blue")
    assert drop(world, "a.csv", MISSING_CUT) is JobState.SUBMITTED


def test_a_datastore_naming_a_foreign_host_is_never_sent_the_apps_token() -> None:
    """ARM data decides where the MLmodel read goes; only a storage account in an Azure cloud may get our token."""
    from shared.adapters.modelcatalog import AzureMLModelCatalog
    from shared.adapters.rest import Reply

    class Arm:
        def __init__(self, store: dict[str, str]) -> None:
            self.store = store

        def send(self, method: str, url: str, *, headers: dict[str, str]) -> Reply:
            path = url.split("?", 1)[0]
            model = f"{WORKSPACE}/models/diamonds/versions/1"
            bodies = {
                "deployments/blue": {"properties": {"model": {"referenceType": "Id", "assetId": model}}},
                "versions/1": {
                    "properties": {"modelType": "mlflow_model", "modelUri": "azureml://datastores/a/paths/m"}
                },
                "datastores/a": {"properties": self.store},
            }
            body = next(value for key, value in bodies.items() if path.endswith(key))
            return Reply(200, json.dumps(body), "OK")

    class Files:
        def read_small(self, **where: object) -> bytes:
            raise AssertionError(f"the app's token would have been sent to {where}")

    for store in (
        {"accountName": "acct", "containerName": "c", "endpoint": "evil.example"},
        {"accountName": "evil.example/x", "containerName": "c", "endpoint": "core.windows.net"},
    ):
        catalog = AzureMLModelCatalog(
            management_endpoint="https://management.azure.com",
            workspace_id=WORKSPACE,
            token=lambda: "t",
            client=Arm(store),  # type: ignore[arg-type]
            files=Files(),  # type: ignore[arg-type]
        )
        with pytest.raises(ModelSchemaUnavailable, match="only an Azure storage account in a known Azure cloud"):
            catalog.input_columns(endpoint_name="ep", deployment="blue")


def test_the_local_token_never_goes_to_a_real_management_endpoint() -> None:
    local = {"BATCH_ENDPOINT_URI": "http://127.0.0.1:5081/jobs", "AML_LOCAL_TOKEN": "t", "AML_WORKSPACE_ID": WORKSPACE}
    with pytest.raises(ConfigError, match="AML_LOCAL_TOKEN: with AML_WORKSPACE_ID"):
        make_world(**local)
    assert make_world(**local, AML_MANAGEMENT_ENDPOINT="http://127.0.0.1:5081").settings.aml_local_token == "t"
