"""Train the diamonds price model and save it as an MLflow model and as a scoring-script deployment, with the
drift reference profile of its training data (`diamonds-reference.json`, built as `python -m shared.profile build
TRAIN.csv --prediction-column price` builds one): the local stack uploads it and names it in DRIFT_REFERENCE.

Serialization: MLflow 3 defaults scikit-learn models to skops, which refuses untrusted types on load;
the demo saves with `serialization_format="cloudpickle"` so `mlflow.pyfunc.load_model` loads it as is
(pickle-family formats run code on load: only load models you built yourself).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from localdev.demo.data import CLARITIES, COLORS, CUTS, FEATURES, TARGET, generate

HERE = Path(__file__).resolve().parent
MLFLOW_DIR = "diamonds-mlflow"
SCRIPT_DIR = "diamonds-script"
STAMP = ".build-stamp"
REFERENCE_FILE = "diamonds-reference.json"
REFERENCE_STAMP = ".reference-stamp"
TRAIN_ROWS = 20_000
SCRIPT_SETTINGS = {"output_action": "append_row", "output_file_name": "predictions.csv", "mini_batch_size": 10}


def build_pipeline() -> Pipeline:
    encoder = OrdinalEncoder(categories=[CUTS, COLORS, CLARITIES])
    features = ColumnTransformer(
        [("grades", encoder, ["cut", "color", "clarity"])], remainder="passthrough", verbose_feature_names_out=False
    )
    forest = RandomForestRegressor(n_estimators=30, max_depth=12, min_samples_leaf=3, random_state=0, n_jobs=1)
    return Pipeline([("features", features), ("forest", forest)])


def _fingerprint() -> str:
    """Changes when the code, the training data or the library versions change."""
    digest = hashlib.sha256()
    for source in sorted(HERE.glob("*.py")):
        digest.update(source.read_bytes())
    import mlflow

    digest.update(f"{sklearn.__version__}/{mlflow.__version__}/{TRAIN_ROWS}".encode())
    return digest.hexdigest()


def _reference_fingerprint(model: str) -> str:
    """Changes with the model (its training data) and with the profile code (shared/drift)."""
    digest = hashlib.sha256(model.encode())
    for source in sorted((HERE.parents[1] / "shared" / "drift").glob("*")):
        if source.is_file() and source.suffix in {".py", ".json"}:
            digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def save_mlflow_model(pipeline: Pipeline, path: Path) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    sample = generate(200, seed=3)[FEATURES]
    signature = infer_signature(sample, pipeline.predict(sample))
    sklearn_log = logging.getLogger("mlflow.sklearn")
    level = sklearn_log.level
    sklearn_log.setLevel(logging.ERROR)  # the cloudpickle caution is documented above
    try:
        mlflow.sklearn.save_model(
            pipeline, str(path), serialization_format="cloudpickle", signature=signature, input_example=None
        )
    finally:
        sklearn_log.setLevel(level)


def _build_reference(out: Path, train: pd.DataFrame, *, fingerprint: str) -> None:
    """out/diamonds-reference.json: the drift reference of the training data (`price` as the prediction)."""
    from shared.drift.build import build_profile
    from shared.drift.profile import profile_to_json

    target = out / REFERENCE_FILE
    with tempfile.TemporaryDirectory(prefix="diamonds-train-") as work:
        csv_path = Path(work) / "diamonds-train.csv"  # the profile's `source`
        train.to_csv(csv_path, index=False)
        profile = build_profile(csv_path, prediction_column=TARGET)
    staged = target.with_name(f".{target.name}.{os.getpid()}.tmp")  # two builds at once each write whole files
    staged.write_text(json.dumps(profile_to_json(profile), indent=1) + "\n", encoding="utf-8")
    staged.replace(target)
    (out / REFERENCE_STAMP).write_text(fingerprint)


def build(out: Path, force: bool = False) -> tuple[Path, Path]:
    """Write out/diamonds-mlflow, out/diamonds-script and out/diamonds-reference.json; a no-op when they are up
    to date."""
    mlflow_dir, script_dir, stamp = out / MLFLOW_DIR, out / SCRIPT_DIR, out / STAMP
    fingerprint = _fingerprint()
    if not force and stamp.is_file() and stamp.read_text() == fingerprint and mlflow_dir.is_dir():
        wanted = _reference_fingerprint(fingerprint)
        stamp_file = out / REFERENCE_STAMP
        if not (out / REFERENCE_FILE).is_file() or not stamp_file.is_file() or stamp_file.read_text() != wanted:
            _build_reference(out, generate(TRAIN_ROWS, seed=7), fingerprint=wanted)
        return mlflow_dir, script_dir
    out.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    shutil.rmtree(mlflow_dir, ignore_errors=True)
    shutil.rmtree(script_dir, ignore_errors=True)
    train = generate(TRAIN_ROWS, seed=7)
    pipeline = build_pipeline().fit(train[FEATURES], train[TARGET])
    save_mlflow_model(pipeline, mlflow_dir)
    script_dir.mkdir()
    shutil.copy(HERE / "score_diamonds.py", script_dir / "score.py")
    shutil.copytree(mlflow_dir, script_dir / "model")
    (script_dir / "deployment.json").write_text(json.dumps(SCRIPT_SETTINGS, indent=2) + "\n")
    _build_reference(out, train, fingerprint=_reference_fingerprint(fingerprint))
    stamp.write_text(fingerprint)
    return mlflow_dir, script_dir
