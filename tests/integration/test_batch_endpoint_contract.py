"""The emulator answers the request bodies of the contract doc the way Azure ML batch endpoints do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from localdev.azurite import Azurite
from tests.integration.batch_endpoint_support import (
    Emulator,
    blob_exists,
    demo_models,
    get_blob,
    model_body,
    put_blob,
    running_emulator,
    unique,
)

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "localdev" / "demo" / "diamonds.csv"
PREDICTIONS = "azureml://datastores/workspaceblobstore/paths/{}/predictions.csv"


@pytest.fixture(scope="module")
def emulator(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    mlflow_dir, script_dir = demo_models(tmp_path_factory.getbasetemp())
    workdir = tmp_path_factory.mktemp("contract")
    with running_emulator(azurite, workdir, {"diamonds": mlflow_dir, "diamonds-script": script_dir}) as emu:
        yield emu


@pytest.fixture(scope="module")
def sample_uri(azurite: Azurite) -> str:
    put_blob(azurite, "incoming", "contract/diamonds.csv", SAMPLE.read_bytes())
    return "azureml://datastores/inputs/paths/contract/diamonds.csv"


def assert_predictions(data: bytes, file_name: str, rows: int = 300) -> None:
    """No header; `row,prediction,file_name` with rows numbered from 0 in each file."""
    lines = data.decode().splitlines()
    assert len(lines) == rows
    for index, line in enumerate(lines):
        row, prediction, name = line.split(",")
        assert (int(row), name) == (index, file_name)
        assert float(prediction) > 0


def assert_arm_error(response: requests.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error["message"], str)
    assert error["message"]
    if code:
        assert error["code"] == code
    return error


def test_documented_pascal_case_body(emulator: Emulator, azurite: Azurite, sample_uri: str) -> None:
    folder = unique("pascal")
    response = emulator.invoke(model_body(sample_uri, PREDICTIONS.format(folder)))
    assert response.status_code == 200
    job = response.json()
    name = job["name"]
    assert job["id"].rsplit("/", 1)[-1] == name
    assert job["id"].startswith("/subscriptions/")
    assert job["type"] == "Microsoft.MachineLearningServices/workspaces/batchEndpoints/jobs"
    props = job["properties"]
    assert props["status"] in {"NotStarted", "Queued", "Preparing", "Running"}
    assert props["inputData"] == {"input": {"jobInputType": "UriFile", "uri": sample_uri}}
    assert props["outputData"]["score"]["uri"] == PREDICTIONS.format(folder)
    assert name in props["interactionEndpoints"]["Studio"]["endpoint"]
    assert set(job["systemData"]) >= {"createdAt", "createdBy", "createdByType"}
    done = emulator.wait(name)
    assert done["properties"]["status"] == "Completed"
    assert "error" not in done["properties"]
    assert emulator.job(name).json() == done
    assert_predictions(get_blob(azurite, "azureml-blobstore", f"{folder}/predictions.csv"), "diamonds.csv")


def test_sdk_camel_case_body_with_overrides(emulator: Emulator, azurite: Azurite, sample_uri: str) -> None:
    name = unique("my-job")
    body = {
        "properties": {
            "inputData": {"UriFile": {"jobInputType": "UriFile", "uri": sample_uri}},
            "compute": {"isLocal": True, "instanceCount": 2},
            "errorThreshold": -1,
            "miniBatchSize": 20,
            "retrySettings": {"maxRetries": 2, "timeout": "PT5M"},
            "outputFileName": "preds.csv",
            "name": name,
            "properties": {"experimentName": "exp1"},
        }
    }
    job = emulator.run(body)
    props = job["properties"]
    assert job["name"] == name
    assert props["status"] == "Completed"
    assert props["miniBatchSize"] == 20
    assert props["compute"]["instanceCount"] == 2
    assert props["retrySettings"] == {"maxRetries": 2, "timeout": "PT300S"}
    assert props["properties"] == {"experimentName": "exp1"}
    # No explicit output: the default location is azureml/<job>/score/<outputFileName> on the default store.
    assert props["output"]["path"] == f"azureml/{name}/score/preds.csv"
    assert_predictions(get_blob(azurite, "azureml-blobstore", f"azureml/{name}/score/preds.csv"), "diamonds.csv")
    duplicate = emulator.invoke(body)
    assert_arm_error(duplicate, 409, "Conflict")


def test_property_names_are_case_insensitive(emulator: Emulator, azurite: Azurite, sample_uri: str) -> None:
    folder = unique("mixedcase")
    body = {
        "PROPERTIES": {
            "inputdata": {"in": {"JOBINPUTTYPE": "urifile", "URI": sample_uri}},
            "OUTPUTDATA": {"out": {"jobOutputType": "UriFile", "uri": PREDICTIONS.format(folder)}},
        }
    }
    assert emulator.run(body)["properties"]["status"] == "Completed"
    assert_predictions(get_blob(azurite, "azureml-blobstore", f"{folder}/predictions.csv"), "diamonds.csv")


def test_legacy_dataset_body(emulator: Emulator, azurite: Azurite, sample_uri: str) -> None:
    folder = unique("legacy")
    body = {
        "properties": {
            "dataset": {"dataInputType": "DataUrl", "Path": sample_uri},
            "outputDataset": {
                "datastoreId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices"
                "/workspaces/w/datastores/workspaceblobstore",
                "path": folder,
            },
            "outputFileName": "legacy.csv",
        }
    }
    assert emulator.run(body)["properties"]["status"] == "Completed"
    assert_predictions(get_blob(azurite, "azureml-blobstore", f"{folder}/legacy.csv"), "diamonds.csv")


@pytest.mark.parametrize(
    "uri_form",
    [
        "azureml://subscriptions/sub/resourcegroups/rg/workspaces/ws/datastores/inputs/paths/{path}",
        "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
        "/datastores/inputs/paths/{path}",
        "https://mystg.blob.core.windows.net/incoming/{path}",
        "{blob_endpoint}/incoming/{path}",
    ],
    ids=["long-azureml", "arm-id", "https-blob", "azurite-path-style"],
)
def test_input_uri_forms(emulator: Emulator, azurite: Azurite, sample_uri: str, uri_form: str) -> None:
    folder = unique("form")
    input_uri = uri_form.format(path="contract/diamonds.csv", blob_endpoint=azurite.blob_endpoint)
    output_uri = (
        "azureml://subscriptions/sub/resourcegroups/rg/workspaces/ws/datastores/workspaceblobstore"
        f"/paths/{folder}/predictions.csv"
    )
    job = emulator.run(model_body(input_uri, output_uri))
    assert job["properties"]["status"] == "Completed", job["properties"].get("error")
    assert_predictions(get_blob(azurite, "azureml-blobstore", f"{folder}/predictions.csv"), "diamonds.csv")


def test_folder_input_scores_every_file_but_not_nested_ones(emulator: Emulator, azurite: Azurite) -> None:
    folder = unique("folder")
    rows = SAMPLE.read_bytes().splitlines(keepends=True)
    put_blob(azurite, "incoming", f"{folder}/a.csv", b"".join(rows[:11]))
    put_blob(azurite, "incoming", f"{folder}/b.csv", b"".join(rows[:1] + rows[11:16]))
    put_blob(azurite, "incoming", f"{folder}/nested/c.csv", SAMPLE.read_bytes())
    body = model_body(f"azureml://datastores/inputs/paths/{folder}", PREDICTIONS.format(folder), input_type="UriFolder")
    body["properties"]["miniBatchSize"] = 1
    assert emulator.run(body)["properties"]["status"] == "Completed"
    lines = get_blob(azurite, "azureml-blobstore", f"{folder}/predictions.csv").decode().splitlines()
    assert [(line.split(",")[0], line.split(",")[2]) for line in lines] == [
        *[(str(i), "a.csv") for i in range(10)],
        *[(str(i), "b.csv") for i in range(5)],
    ]


def test_script_deployment_selected_by_header(emulator: Emulator, azurite: Azurite, sample_uri: str) -> None:
    mlflow_folder, script_folder = unique("by-model"), unique("by-script")
    emulator.run(model_body(sample_uri, PREDICTIONS.format(mlflow_folder)))
    job = emulator.run(model_body(sample_uri, PREDICTIONS.format(script_folder)), deployment="diamonds-script")
    assert job["properties"]["status"] == "Completed"
    by_script = get_blob(azurite, "azureml-blobstore", f"{script_folder}/predictions.csv")
    assert by_script == get_blob(azurite, "azureml-blobstore", f"{mlflow_folder}/predictions.csv")


def test_list_jobs_newest_first(emulator: Emulator, sample_uri: str) -> None:
    first = emulator.invoke(model_body(sample_uri, PREDICTIONS.format(unique("list")))).json()["name"]
    second = emulator.invoke(model_body(sample_uri, PREDICTIONS.format(unique("list")))).json()["name"]
    listed = requests.get(emulator.scoring_uri, headers=emulator.headers(), timeout=10).json()["value"]
    names = [job["name"] for job in listed]
    assert names.index(second) < names.index(first)
    emulator.wait(second)
    emulator.wait(first)


# ---- errors Azure returns at invoke ---------------------------------------------------------------


def test_missing_or_wrong_token_is_401(emulator: Emulator, sample_uri: str) -> None:
    body = model_body(sample_uri, PREDICTIONS.format(unique("auth")))
    assert_arm_error(emulator.invoke(body, token=None), 401)
    wrong = emulator.invoke(body, token="not-the-token")
    assert_arm_error(wrong, 401)
    assert "not-the-token" not in wrong.text
    assert emulator.job("anything").status_code != 401  # sanity: the right token is accepted
    assert requests.get(f"{emulator.scoring_uri}/x", timeout=10).status_code == 401


def test_malformed_json_is_400(emulator: Emulator) -> None:
    response = requests.post(emulator.scoring_uri, data=b"{not json", headers=emulator.headers(), timeout=10)
    assert_arm_error(response, 400)


def test_uri_folder_output_gets_predicate_validator_error(emulator: Emulator, sample_uri: str) -> None:
    body = model_body(sample_uri, "azureml://datastores/workspaceblobstore/paths/out")
    body["properties"]["OutputData"]["score"]["JobOutputType"] = "UriFolder"
    error = assert_arm_error(emulator.invoke(body), 400)
    assert error["message"].startswith("The Job request provided has the following validation errors.")
    assert '"ErrorMessage":"Job output type must be \'uri_file\'."' in error["message"]
    assert '"ErrorCode":"PredicateValidator"' in error["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (model_body("azureml://datastores/nosuchstore/paths/a.csv", PREDICTIONS.format("x")), "nosuchstore"),
        (
            model_body("azureml://datastores/inputs/paths/a.csv", "https://acct.blob.core.windows.net/c/out.csv"),
            "must be a path to an output file in a Data Store",
        ),
        ({"properties": {}}, "exactly one input"),
        ({"inputData": {}}, "'properties'"),
        (
            {
                "properties": {
                    "InputData": {
                        "a": {"JobInputType": "UriFile", "Uri": "azureml://datastores/inputs/paths/a.csv"},
                        "b": {"JobInputType": "UriFile", "Uri": "azureml://datastores/inputs/paths/b.csv"},
                    }
                }
            },
            "exactly one input",
        ),
        (
            {"properties": {"InputData": {"mode": {"JobInputType": "Literal", "Value": "append"}}}},
            "Literal",
        ),
        (
            {
                "properties": {
                    "InputData": {"t": {"JobInputType": "MLTable", "Uri": "azureml://datastores/inputs/paths/t"}}
                }
            },
            "MLTable",
        ),
        (
            {
                "properties": {
                    "inputData": {"i": {"jobInputType": "UriFile", "uri": "azureml://datastores/inputs/paths/a.csv"}},
                    "retrySettings": {"timeout": "five minutes"},
                }
            },
            "ISO-8601",
        ),
    ],
    ids=[
        "unknown-datastore",
        "https-output",
        "no-input",
        "no-properties",
        "two-inputs",
        "literal",
        "mltable",
        "bad-timeout",
    ],
)
def test_invalid_bodies_are_400(emulator: Emulator, body: dict[str, Any], fragment: str) -> None:
    error = assert_arm_error(emulator.invoke(body), 400)
    assert fragment in error["message"]


def test_unknown_deployment_header(emulator: Emulator, sample_uri: str) -> None:
    response = emulator.invoke(model_body(sample_uri, PREDICTIONS.format(unique("dep"))), deployment="blue")
    error = assert_arm_error(response, 400)
    assert error["message"].startswith("No valid deployments to route to.")


def test_unknown_job_is_404(emulator: Emulator) -> None:
    assert_arm_error(emulator.job("no-such-job"), 404)


# ---- failures Azure reports on the job ------------------------------------------------------------


def test_missing_input_fails_the_job(emulator: Emulator, azurite: Azurite) -> None:
    folder = unique("missing")
    job = emulator.run(model_body("azureml://datastores/inputs/paths/nope/none.csv", PREDICTIONS.format(folder)))
    assert job["properties"]["status"] == "Failed"
    assert "does not exist" in job["properties"]["error"]["message"]
    assert not blob_exists(azurite, "azureml-blobstore", f"{folder}/predictions.csv")


def test_existing_output_fails_the_job_and_keeps_the_file(
    emulator: Emulator, azurite: Azurite, sample_uri: str
) -> None:
    folder = unique("exists")
    put_blob(azurite, "azureml-blobstore", f"{folder}/predictions.csv", b"old\n")
    job = emulator.run(model_body(sample_uri, PREDICTIONS.format(folder)))
    assert job["properties"]["status"] == "Failed"
    assert "already exists" in job["properties"]["error"]["message"]
    assert get_blob(azurite, "azureml-blobstore", f"{folder}/predictions.csv") == b"old\n"


def test_unsupported_file_type_fails_the_job(emulator: Emulator, azurite: Azurite) -> None:
    folder = unique("avro")
    put_blob(azurite, "incoming", f"{folder}/data.avro", b"Obj\x01")
    job = emulator.run(model_body(f"azureml://datastores/inputs/paths/{folder}/data.avro", PREDICTIONS.format(folder)))
    assert job["properties"]["status"] == "Failed"
    assert job["properties"]["error"]["message"] == "File type 'avro' is not supported."
