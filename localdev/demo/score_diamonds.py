"""Scoring script of the `diamonds-script` deployment (copied into the folder as score.py).

Azure custom-deployment contract: init() once per worker, run(mini_batch) per mini-batch with local paths.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

model: Any = None


def init() -> None:
    global model  # noqa: PLW0603 - Azure scoring scripts keep the init() model in a module global
    model = mlflow.pyfunc.load_model(str(Path(os.environ["AZUREML_MODEL_DIR"]) / "model"))


def run(mini_batch: list[str]) -> pd.DataFrame:
    frames = []
    for file in mini_batch:
        data = pd.read_csv(file)
        frames.append(
            pd.DataFrame({"row": range(len(data)), "prediction": model.predict(data), "file_name": Path(file).name})
        )
    return pd.concat(frames, ignore_index=True)
