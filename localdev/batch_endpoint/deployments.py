"""Deployments: an MLflow model folder (no-code MLflow deployment) or a scoring-script folder.

Scoring-script folder layout (a custom deployment):
    score.py           defines init() and run(mini_batch)
    model/             optional; AZUREML_MODEL_DIR points at the folder that holds it
    deployment.json    optional settings (see DEFAULT_SETTINGS)
An MLflow folder (one with an `MLmodel` file) may carry a deployment.json too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MLFLOW = "mlflow"
SCRIPT = "script"
SCORING_SCRIPT = "score.py"
SETTINGS_FILE = "deployment.json"
OUTPUT_ACTIONS = ("append_row", "summary_only")

# Azure's batch deployment defaults (contract doc §6); timeout in seconds.
DEFAULT_SETTINGS: dict[str, Any] = {
    "output_action": "append_row",
    "output_file_name": "predictions.csv",
    "mini_batch_size": 10,
    "max_concurrency_per_instance": 1,
    "instance_count": 1,
    "error_threshold": -1,
    "max_retries": 3,
    "timeout": 30.0,
}


DEFAULT_SETTINGS_KEYS = frozenset(DEFAULT_SETTINGS) | {"retry_settings"}


class DeploymentError(ValueError):
    """A deployment folder the emulator cannot serve; reported at start-up."""


@dataclass(frozen=True)
class Deployment:
    name: str
    path: Path
    kind: str
    settings: dict[str, Any] = field(default_factory=dict)


def _read_settings(path: Path) -> dict[str, Any]:
    settings = dict(DEFAULT_SETTINGS)
    settings_file = path / SETTINGS_FILE
    if settings_file.is_file():
        loaded = json.loads(settings_file.read_text())
        if not isinstance(loaded, dict):
            raise DeploymentError(f"{settings_file} must hold a JSON object")
        unknown = set(loaded) - DEFAULT_SETTINGS_KEYS
        if unknown:
            raise DeploymentError(f"{settings_file}: unknown settings {sorted(unknown)}")
        retry = loaded.pop("retry_settings", None)
        if isinstance(retry, dict):
            loaded.update({k: v for k, v in retry.items() if k in ("max_retries", "timeout")})
        settings.update(loaded)
    if settings["output_action"] not in OUTPUT_ACTIONS:
        raise DeploymentError(f"{path}: output_action must be one of {OUTPUT_ACTIONS}")
    return settings


def load_deployment(name: str, path: Path) -> Deployment:
    path = path.resolve()
    if (path / "MLmodel").is_file():
        kind = MLFLOW
    elif (path / SCORING_SCRIPT).is_file():
        kind = SCRIPT
    else:
        raise DeploymentError(f"deployment '{name}': {path} has neither an MLmodel file nor {SCORING_SCRIPT}")
    return Deployment(name, path, kind, _read_settings(path))
