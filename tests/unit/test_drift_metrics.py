"""The drift metrics adapter against OpenTelemetry's SDK: an in-memory reader on a MeterProvider of its own."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, HistogramDataPoint, InMemoryMetricReader

from shared.adapters.metrics import DETECTED, JS_DISTANCE, PREDICTION_FEATURE, PSI, SHARE, OtelDriftMetrics, scores

ROOT = Path(__file__).resolve().parents[2]
JOB = "a" * 40
#: What Azure Monitor's exporter asks for (its APPLICATION_INSIGHTS_METRIC_TEMPORALITIES).
APP_INSIGHTS = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
Points = dict[str, list[tuple[dict[str, Any], float]]]


def summary(verdict: str = "drift", **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "verdict": verdict,
        "reason": None,
        "driftedFeatures": ["carat", "color"] if verdict == "drift" else [],
        "driftedShare": 0.5 if verdict == "drift" else 0.0,
        "threshold": {"psi": 0.2, "share": 0.5},
        "rowsProfiled": 400,
        "top": [
            {"feature": "carat", "psi": 0.61, "jsDistance": 0.37},
            {"feature": "color", "psi": 0.34, "jsDistance": 0.28},
            {"feature": "cut", "psi": 0.05, "jsDistance": 0.09},
        ],
        "prediction": {"psi": 0.47, "jsDistance": 0.33, "drifted": True},
        "report": {"container": "predictions", "name": "x.csv.drift.json"},
    }
    return {**base, **changes}


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    memory = InMemoryMetricReader(preferred_temporality=APP_INSIGHTS)
    yield memory
    memory.shutdown()


@pytest.fixture
def metrics(reader: InMemoryMetricReader) -> OtelDriftMetrics:
    return OtelDriftMetrics(meter_provider=MeterProvider(metric_readers=[reader]))


def points(reader: InMemoryMetricReader) -> Points:
    """Each metric's points as (attributes, value); a histogram's value is its sum, what Azure Monitor sends."""
    data = reader.get_metrics_data()
    found: Points = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "dropscore"
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = point.sum if isinstance(point, HistogramDataPoint) else point.value
                    found.setdefault(metric.name, []).append((dict(point.attributes or {}), value))
    return found


def by_feature(found: Points, name: str) -> dict[str, float]:
    return {attributes["feature"]: value for attributes, value in found[name]}


def test_a_drifted_summary_sends_every_score_with_its_dimensions(
    metrics: OtelDriftMetrics, reader: InMemoryMetricReader
) -> None:
    metrics.record(summary(), job_id=JOB, route="diamonds")
    found = points(reader)
    assert set(found) == {PSI, JS_DISTANCE, SHARE, DETECTED}
    assert by_feature(found, PSI) == {"carat": 0.61, "color": 0.34, "cut": 0.05, PREDICTION_FEATURE: 0.47}
    assert by_feature(found, JS_DISTANCE) == {"carat": 0.37, "color": 0.28, "cut": 0.09, PREDICTION_FEATURE: 0.33}
    for attributes, _ in found[PSI] + found[JS_DISTANCE]:
        assert set(attributes) == {"job_id", "route", "feature"}
        assert (attributes["job_id"], attributes["route"]) == (JOB, "diamonds")
    assert found[SHARE] == [({"job_id": JOB, "route": "diamonds"}, 0.5)]
    assert found[DETECTED] == [({"route": "diamonds"}, 1)]


def test_no_drift_sends_the_scores_and_the_share_but_counts_nothing(
    metrics: OtelDriftMetrics, reader: InMemoryMetricReader
) -> None:
    metrics.record(summary("no_drift"), job_id=JOB, route="default")
    found = points(reader)
    assert DETECTED not in found
    assert found[SHARE] == [({"job_id": JOB, "route": "default"}, 0.0)]
    assert len(found[PSI]) == 4


def test_not_computed_sends_nothing(metrics: OtelDriftMetrics, reader: InMemoryMetricReader) -> None:
    empty = summary("not_computed", reason="no reference profile at r/x.json", top=[], prediction=None)
    metrics.record(empty, job_id=JOB, route="default")
    assert points(reader) == {}


def test_each_score_is_exported_once_not_at_every_interval(
    metrics: OtelDriftMetrics, reader: InMemoryMetricReader
) -> None:
    """Per-job series: a gauge would be exported again at every interval (Azure Monitor reads gauges
    cumulatively); the histograms and the counter are delta, so the next collection has nothing."""
    metrics.record(summary(), job_id=JOB, route="default")
    assert points(reader)
    assert points(reader) == {}
    metrics.record(summary(), job_id="b" * 40, route="default")
    assert {attributes["job_id"] for attributes, _ in points(reader)[PSI]} == {"b" * 40}


def test_the_counter_adds_up_per_route(metrics: OtelDriftMetrics, reader: InMemoryMetricReader) -> None:
    for job in ("1", "2", "3"):
        metrics.record(summary(), job_id=job * 40, route="diamonds")
    metrics.record(summary(), job_id="4" * 40, route="other")
    assert sorted(points(reader)[DETECTED], key=lambda p: p[0]["route"]) == [
        ({"route": "diamonds"}, 3),
        ({"route": "other"}, 1),
    ]


def test_a_summary_with_every_feature_sends_them_all(metrics: OtelDriftMetrics, reader: InMemoryMetricReader) -> None:
    every = [{"feature": f"f{index}", "psi": index / 10, "jsDistance": index / 20} for index in range(8)]
    metrics.record(summary(features=every), job_id=JOB, route="default")
    assert len(by_feature(points(reader), PSI)) == 9  # eight features and the prediction


def test_odd_values_are_left_out_and_nothing_raises(
    metrics: OtelDriftMetrics, reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    odd = summary(
        top=[
            {"feature": "nan", "psi": float("nan"), "jsDistance": 0.1},
            {"feature": "text", "psi": "0.3", "jsDistance": True},
            {"psi": 0.4},
            "not a feature",
        ],
        prediction=None,
        driftedShare=None,
    )
    metrics.record(odd, job_id=JOB, route="default")
    found = points(reader)
    assert by_feature(found, JS_DISTANCE) == {"nan": 0.1}
    assert PSI not in found
    assert SHARE not in found
    with caplog.at_level(logging.WARNING, logger="dropscore"):
        metrics.record({"verdict": "drift", "top": None, "prediction": 3}, job_id=JOB, route="default")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_failure_inside_is_logged_never_raised(
    metrics: OtelDriftMetrics, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("meter gone")

    monkeypatch.setattr(metrics, "_ready", broken)
    with caplog.at_level(logging.WARNING, logger="dropscore"):
        metrics.record(summary(), job_id=JOB, route="default")
    assert "drift metrics not sent: RuntimeError: meter gone" in caplog.text


def test_scores_list_the_prediction_last() -> None:
    assert [feature for feature, _, _ in scores(summary())] == ["carat", "color", "cut", PREDICTION_FEATURE]


def test_without_a_provider_the_global_one_is_used_and_opentelemetry_loads_on_first_record() -> None:
    """No MeterProvider installed (no Application Insights): a no-op. `import function_app` and building the
    dependencies never import opentelemetry; the first record does."""
    code = """
import sys
import function_app
from shared import runtime
from shared.config import Settings
from tests.fakes import BASE_SETTINGS
deps = runtime.build_deps(Settings.from_env(BASE_SETTINGS))
assert not [name for name in sys.modules if name.startswith("opentelemetry")], "imported too early"
deps.metrics.record({"verdict": "drift", "driftedShare": 1.0, "top": [{"feature": "a", "psi": 1.0}]},
                    job_id="j", route="default")
assert "opentelemetry.metrics" in sys.modules
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.stdout.strip() == "ok", result.stderr
