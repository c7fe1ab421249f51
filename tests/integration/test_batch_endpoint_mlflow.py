"""MLflow parity: the emulator's predictions.csv holds what mlflow.pyfunc predicts, row by row."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

from localdev.azurite import Azurite
from localdev.demo.data import scoring_frame
from tests.integration.batch_endpoint_support import Emulator, demo_models, get_blob, put_blob, running_emulator, unique

pytestmark = pytest.mark.integration

SPECIES = np.array(["setosa", "versicolor", "virginica"], dtype=object)


def train_classifier(path: Path) -> Path:
    """An iris-like classifier with string labels, saved as an MLflow model."""
    rng = np.random.default_rng(5)
    centers = np.array([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]])
    labels = rng.integers(0, 3, size=600)
    features = pd.DataFrame(
        centers[labels] + rng.normal(0, 0.35, size=(600, 4)),
        columns=["sepal_length", "sepal_width", "petal_length", "petal_width"],
    ).round(2)
    model = LogisticRegression(max_iter=500).fit(features, SPECIES[labels])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.sklearn.save_model(
            model,
            str(path),
            serialization_format="cloudpickle",
            signature=infer_signature(features, model.predict(features)),
        )
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    diamonds, _ = demo_models(tmp_path_factory.getbasetemp())
    return {"diamonds": diamonds, "iris": train_classifier(tmp_path_factory.mktemp("iris") / "iris-mlflow")}


@pytest.fixture(scope="module")
def emulator(azurite: Azurite, models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with running_emulator(azurite, tmp_path_factory.mktemp("mlflow"), models) as emu:
        yield emu


def read_predictions(data: bytes) -> pd.DataFrame:
    # Azure's own samples read the headerless file this way.
    return pd.read_csv(io.BytesIO(data), names=["row", "prediction", "file"], header=None)


def score(
    emulator: Emulator, azurite: Azurite, deployment: str, files: dict[str, bytes], **overrides: object
) -> pd.DataFrame:
    folder = unique(deployment)
    for name, data in files.items():
        put_blob(azurite, "incoming", f"{folder}/{name}", data)
    body = {
        "properties": {
            "InputData": {"in": {"JobInputType": "UriFolder", "Uri": f"azureml://datastores/inputs/paths/{folder}"}},
            "OutputData": {
                "score": {
                    "JobOutputType": "UriFile",
                    "Uri": f"azureml://datastores/workspaceblobstore/paths/{folder}/p.csv",
                }
            },
            **overrides,
        }
    }
    job = emulator.run(body, deployment=deployment)
    assert job["properties"]["status"] == "Completed", job["properties"].get("error")
    return read_predictions(get_blob(azurite, "azureml-blobstore", f"{folder}/p.csv"))


def test_diamonds_parity_csv_and_parquet(emulator: Emulator, azurite: Azurite, models: dict[str, Path]) -> None:
    frame = scoring_frame(2_000, seed=21)
    part_a, part_b = frame.iloc[:1_200].reset_index(drop=True), frame.iloc[1_200:].reset_index(drop=True)
    parquet = io.BytesIO()
    part_b.to_parquet(parquet, index=False)
    files = {"a.csv": part_a.to_csv(index=False).encode(), "b.parquet": parquet.getvalue()}
    got = score(emulator, azurite, "diamonds", files, miniBatchSize=1, compute={"instanceCount": 2})
    model = mlflow.pyfunc.load_model(str(models["diamonds"]))
    expected = {"a.csv": model.predict(pd.read_csv(io.BytesIO(files["a.csv"]))), "b.parquet": model.predict(part_b)}
    # Two workers: the files' blocks come in the order their mini-batches completed, each file in one block.
    blocks = got["file"].loc[got["file"].shift() != got["file"]].tolist()
    assert sorted(blocks) == ["a.csv", "b.parquet"]
    for name, predictions in expected.items():
        rows = got[got["file"] == name]
        assert rows["row"].tolist() == list(range(len(predictions)))
        # Exact equality: the CSV carries the shortest repr that round-trips each float.
        assert rows["prediction"].to_numpy().tolist() == predictions.tolist()


def test_classifier_parity(emulator: Emulator, azurite: Azurite, models: dict[str, Path]) -> None:
    rng = np.random.default_rng(9)
    rows = pd.DataFrame(
        rng.uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], size=(500, 4)),
        columns=["sepal_length", "sepal_width", "petal_length", "petal_width"],
    ).round(2)
    data = rows.to_csv(index=False).encode()
    got = score(emulator, azurite, "iris", {"flowers.csv": data})
    expected = mlflow.pyfunc.load_model(str(models["iris"])).predict(pd.read_csv(io.BytesIO(data)))
    assert got["prediction"].tolist() == list(expected)
    assert set(got["prediction"]) <= set(SPECIES)
    assert got["row"].tolist() == list(range(500))


def test_csv_not_matching_signature_fails_mini_batch_and_job(emulator: Emulator, azurite: Azurite) -> None:
    folder = unique("signature")
    put_blob(azurite, "incoming", f"{folder}/good.csv", scoring_frame(5).to_csv(index=False).encode())
    put_blob(azurite, "incoming", f"{folder}/wrong.csv", b"colour,weight\nred,1.0\n")
    base = {
        "InputData": {"in": {"JobInputType": "UriFolder", "Uri": f"azureml://datastores/inputs/paths/{folder}"}},
        "miniBatchSize": 1,
        "retrySettings": {"maxRetries": 0},
    }

    def run(threshold: int, out: str) -> dict:
        output = {
            "s": {"JobOutputType": "UriFile", "Uri": f"azureml://datastores/workspaceblobstore/paths/{folder}/{out}"}
        }
        return emulator.run(
            {"properties": {**base, "errorThreshold": threshold, "OutputData": output}}, deployment="diamonds"
        )

    tolerant = run(-1, "tolerant.csv")
    assert tolerant["properties"]["status"] == "Completed"
    lines = get_blob(azurite, "azureml-blobstore", f"{folder}/tolerant.csv").decode().splitlines()
    assert [line.rsplit(",", 1)[1] for line in lines] == ["good.csv"] * 5
    strict = run(0, "strict.csv")
    assert strict["properties"]["status"] == "Failed"
    message = strict["properties"]["error"]["message"]
    assert "exceeded the error threshold (0)" in message
    assert "missing columns ['carat'" in message
