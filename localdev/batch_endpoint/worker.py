"""Code that runs inside the scoring worker processes (spawned, one mini-batch per task).

Models and scoring scripts are loaded once per worker (init), as Azure does per worker process; a
scoring script gets a fresh init() per job because each job has its own AZUREML_BI_OUTPUT_PATH.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import sys
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

MLFLOW_FILE_TYPES = (".csv", ".parquet", ".pqt")
_SCRIPT_CACHE_SIZE = 4
#: With a row cost, an MLflow model predicts a file in slices of this many rows, each followed by its sleep.
COST_SLICE_ROWS = 50_000
_NEEDS_QUOTES = re.compile(r'[,"\r\n]')

_mlflow_models: dict[str, Any] = {}
_scripts: OrderedDict[str, ModuleType] = OrderedDict()


@dataclass
class MiniBatchTask:
    job_name: str
    kind: str
    deployment_path: str
    files: list[str]
    part_path: str
    output_action: str
    env: dict[str, str] = field(default_factory=dict)
    # The emulator's fixed scoring cost: the worker sleeps this many microseconds per scored row.
    row_cost_us: float = 0.0


@dataclass
class MiniBatchResult:
    ok: bool
    succeeded_items: int = 0
    rows: int = 0
    error: str | None = None
    init_error: bool = False
    # Which worker ran the attempt and when (epoch seconds): the job's mini-batch trace, and the
    # completion order of the append_row merge.
    pid: int = 0
    started: float = 0.0
    finished: float = 0.0
    # CPU seconds the worker process spent on it (all its threads); the row cost's sleep is not CPU.
    cpu: float = 0.0


class InitError(Exception):
    """init() of the model or the scoring script failed; the job fails whatever the threshold."""


def last_line(exc: BaseException) -> str:
    """The last line of the traceback, which is what the job's error carries."""
    lines = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()
    return lines[-1] if lines else type(exc).__name__


def warm_up(mlflow_paths: list[str]) -> int:
    """Import the heavy modules and load the MLflow models once, so the first job does not pay for them."""
    import mlflow.pyfunc  # noqa: F401
    import pandas  # noqa: F401

    for path in mlflow_paths:
        with contextlib.suppress(InitError):
            _load_mlflow(path)
    return os.getpid()


def _load_mlflow(path: str) -> Any:
    model = _mlflow_models.get(path)
    if model is None:
        import mlflow.pyfunc

        try:
            model = mlflow.pyfunc.load_model(path)
        except Exception as exc:
            raise InitError(f"Failed to load the MLflow model: {last_line(exc)}") from exc
        _mlflow_models[path] = model
    return model


def _required_columns(model: Any) -> list[str]:
    schema = model.metadata.get_input_schema()
    if schema is None or not schema.has_input_names():
        return []
    return [spec.name for spec in schema.inputs if getattr(spec, "required", True)]


def _read_table(path: Path) -> Any:
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".parquet", ".pqt"):
        return pd.read_parquet(path)
    raise ValueError(f"File type '{suffix.lstrip('.')}' is not supported.")


def _prediction_values(predictions: Any) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(predictions, pd.DataFrame):
        if predictions.shape[1] == 1:
            return predictions.iloc[:, 0].to_numpy()
        return [list(row) for row in predictions.itertuples(index=False)]
    if isinstance(predictions, pd.Series):
        return predictions.to_numpy()
    array = np.asarray(predictions)
    if array.ndim > 1:
        return [list(row) for row in array]
    return array


def _write_numeric_lines(out: BinaryIO, values: Any, file_name: str, first_row: int = 0) -> bool:
    """Arrow's CSV writer for plain numeric predictions (about 8x faster than pandas); False = not handled.

    Arrow prints the shortest repr that round-trips each double, as pandas does, so the bytes parse back
    to exactly the predicted values.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    if not isinstance(values, np.ndarray) or values.dtype.kind not in "iuf" or _NEEDS_QUOTES.search(file_name):
        return False
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        return False  # pandas and Arrow spell NaN/inf differently; keep pandas' spelling
    table = pa.table(
        {
            "row": pa.array(np.arange(first_row, first_row + len(values), dtype=np.int64)),
            "prediction": pa.array(values),
            "file_name": pa.array([file_name] * len(values), type=pa.string()),
        }
    )
    pa_csv.write_csv(table, out, pa_csv.WriteOptions(include_header=False, quoting_style="none"))
    return True


def _score_mlflow(task: MiniBatchTask) -> MiniBatchResult:
    model = _load_mlflow(task.deployment_path)
    required = _required_columns(model)
    rows = 0
    with open(task.part_path, "wb") as out:
        for file in task.files:
            path = Path(file)
            frame = _read_table(path)
            missing = [c for c in required if c not in frame.columns]
            if missing:
                raise ValueError(
                    f"Input file '{path.name}' does not match the model signature: missing columns {missing}."
                )
            rows += _predict_into(out, model, frame, path.name, task.row_cost_us)
    return MiniBatchResult(ok=True, succeeded_items=len(task.files), rows=rows)


def _predict_into(out: BinaryIO, model: Any, frame: Any, file_name: str, row_cost_us: float) -> int:
    """Predict a file's rows and write their lines. With a row cost, in slices of COST_SLICE_ROWS rows, each
    followed by its sleep: the cost is paid as rows are scored, so parallel workers' CPU overlaps their
    sleeps as on separate nodes (the rows are the same, numbered across slices); otherwise in one call."""
    import numpy as np
    import pandas as pd

    step = COST_SLICE_ROWS if row_cost_us > 0 else max(1, len(frame))
    slices = [frame] if len(frame) <= step else (frame.iloc[i : i + step] for i in range(0, len(frame), step))
    first_row = 0
    for piece in slices:
        values = _prediction_values(model.predict(piece))
        if not _write_numeric_lines(out, values, file_name, first_row):
            rows = np.arange(first_row, first_row + len(values))
            lines = pd.DataFrame({"row": rows, "prediction": values, "file_name": file_name})
            lines.to_csv(out, header=False, index=False, lineterminator="\n")
        first_row += len(values)
        if row_cost_us > 0:
            time.sleep(len(values) * row_cost_us / 1e6)
    return first_row


def _load_script(task: MiniBatchTask) -> ModuleType:
    module = _scripts.get(task.job_name)
    if module is not None:
        _scripts.move_to_end(task.job_name)
        return module
    script = Path(task.deployment_path) / "score.py"
    module_name = "_batch_score_" + hashlib.sha1(task.job_name.encode()).hexdigest()[:12]  # noqa: S324
    if task.deployment_path not in sys.path:
        sys.path.insert(0, task.deployment_path)
    try:
        spec = importlib.util.spec_from_file_location(module_name, script)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {script}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if hasattr(module, "init"):
            module.init()
    except Exception as exc:
        raise InitError(f"init() of the scoring script failed: {last_line(exc)}") from exc
    _scripts[task.job_name] = module
    while len(_scripts) > _SCRIPT_CACHE_SIZE:
        _scripts.popitem(last=False)
    return module


def _write_rows(result: Any, part_path: str) -> int:
    import pandas as pd

    with open(part_path, "w", encoding="utf-8", newline="\n") as out:
        if isinstance(result, pd.DataFrame):
            result.to_csv(out, header=False, index=False, lineterminator="\n")
            return len(result)
        count = 0
        for item in result:
            # Azure stringifies whatever run() returns, one element per line.
            out.write(f"{item}\n")
            count += 1
        return count


def _score_script(task: MiniBatchTask) -> MiniBatchResult:
    os.environ.update(task.env)
    module = _load_script(task)
    result = module.run(list(task.files))
    if result is None:
        raise TypeError("run() returned None; it must return a list or a pandas DataFrame.")
    writes = task.output_action == "append_row"
    count = _write_rows(result, task.part_path) if writes else len(result)
    # Each returned element stands for one successful input; missing ones count as failures.
    return MiniBatchResult(ok=True, succeeded_items=min(count, len(task.files)), rows=count)


def _score(task: MiniBatchTask) -> MiniBatchResult:
    try:
        result = _score_mlflow(task) if task.kind == "mlflow" else _score_script(task)
    except InitError as exc:
        return MiniBatchResult(ok=False, error=str(exc), init_error=True)
    except Exception as exc:
        with contextlib.suppress(OSError):
            Path(task.part_path).unlink()
        return MiniBatchResult(ok=False, error=last_line(exc))
    if task.row_cost_us > 0 and result.rows and task.kind != "mlflow":  # an MLflow model paid it as it went
        time.sleep(result.rows * task.row_cost_us / 1e6)
    return result


def run_mini_batch(task: MiniBatchTask) -> MiniBatchResult:
    """Score one mini-batch; never raises, so one bad batch cannot break the pool."""
    started, cpu = time.time(), time.process_time()
    result = _score(task)
    result.pid, result.started, result.finished = os.getpid(), started, time.time()
    result.cpu = time.process_time() - cpu
    return result
