"""The row cost in the worker (`--row-cost-us`): an MLflow model pays it slice by slice as it scores, with
the same lines as one call; each mini-batch reports the CPU it used, which the sleep is not part of."""

from __future__ import annotations

import time
import types
from pathlib import Path

import pytest

from localdev.batch_endpoint import worker
from localdev.batch_endpoint.worker import MiniBatchTask, run_mini_batch
from localdev.demo.data import scoring_frame
from tests.integration.batch_endpoint_support import demo_models

pytestmark = pytest.mark.integration

ROWS = 300


@pytest.fixture(scope="module")
def mlflow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, _ = demo_models(tmp_path_factory.getbasetemp())
    return model


def score(model: Path, tmp_path: Path, name: str, row_cost_us: float) -> tuple[bytes, worker.MiniBatchResult]:
    data = tmp_path / "input.csv"
    if not data.exists():
        scoring_frame(ROWS, seed=7).to_csv(data, index=False)
    part = tmp_path / f"{name}.part"
    task = MiniBatchTask(
        job_name=name,
        kind="mlflow",
        deployment_path=str(model),
        files=[str(data)],
        part_path=str(part),
        output_action="append_row",
        row_cost_us=row_cost_us,
    )
    result = run_mini_batch(task)
    assert result.ok, result.error
    return part.read_bytes(), result


def test_a_row_cost_is_paid_slice_by_slice_with_the_same_lines(
    mlflow_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole, free = score(mlflow_model, tmp_path, "free", 0.0)
    monkeypatch.setattr(worker, "COST_SLICE_ROWS", 70)  # 300 rows: slices of 70, 70, 70, 70 and 20
    slept: list[float] = []
    clock = types.SimpleNamespace(sleep=slept.append, time=time.time, process_time=time.process_time)
    monkeypatch.setattr(worker, "time", clock)  # the worker's sleeps only
    sliced, paid = score(mlflow_model, tmp_path, "paid", 1000.0)

    assert sliced == whole  # rows numbered 0..299 across the slices, predictions unchanged
    assert whole.count(b"\n") == ROWS
    assert whole.startswith(b"0,")
    assert b"\n299," in whole
    assert slept == pytest.approx([0.07, 0.07, 0.07, 0.07, 0.02])  # rows x 1000 us, after each slice
    assert (free.rows, paid.rows) == (ROWS, ROWS)


def test_a_mini_batch_reports_its_cpu_without_the_sleep(mlflow_model: Path, tmp_path: Path) -> None:
    score(mlflow_model, tmp_path, "warm", 0.0)  # the model is loaded once per process
    started = time.monotonic()
    _, result = score(mlflow_model, tmp_path, "costly", 2000.0)  # 300 rows x 2 ms: 0.6 s asleep
    assert time.monotonic() - started >= 0.6
    assert result.finished - result.started >= 0.6
    assert 0 < result.cpu < 0.5
