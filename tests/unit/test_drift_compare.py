"""The drift verdict (shared/drift/compare.py): a reference built from training data (build_profile), a scored
file profiled as the join profiles it (Profiler), compared.
"""

from __future__ import annotations

import csv
import json
import math
import random

import pytest

from shared.csvjoin import JoinStats, join_predictions
from shared.drift.build import build_profile
from shared.drift.compare import DRIFT, NO_DRIFT, NOT_COMPUTED, DriftReport, Thresholds, compare
from shared.drift.profile import Profile
from shared.drift.stream import Profiler, StreamResult

FEATURES = ["x", "y", "z", "w", "c"]
Rows = list[list[str]]


def training_rows(count: int = 2_000, *, seed: int = 14) -> tuple[Rows, list[str]]:
    """Rows of x, y, z, w (numbers of different spreads), c (a category) and their price."""
    rng = random.Random(seed)
    rows, prices = [], []
    for _ in range(count):
        rows.append(
            [
                f"{rng.gauss(0, 1):.4f}",
                f"{rng.uniform(0, 10):.4f}",
                f"{rng.gauss(50, 5):.3f}",
                f"{rng.expovariate(1.0):.4f}",
                rng.choices(["red", "green", "blue"], weights=[5, 3, 2])[0],
            ]
        )
        prices.append(f"{rng.gauss(100, 10):.2f}")
    return rows, prices


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Profile:
    rows, prices = training_rows()
    path = tmp_path_factory.mktemp("drift") / "training.csv"
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow([*FEATURES, "price"])
        writer.writerows([*row, price] for row, price in zip(rows, prices, strict=True))
    return build_profile(path, prediction_column="price")


def profiled(reference: Profile, header: list[str], rows: Rows, values: list[str]) -> StreamResult:
    profiler = Profiler(reference)
    profiler.header(header)
    profiler.records(rows, [value.encode() for value in values])
    return profiler.result()


def shifted(rows: Rows, shifts: dict[str, float]) -> Rows:
    """The rows with some numeric features moved by so much."""
    return [
        [
            f"{float(cell) + shifts[name]:.4f}" if name in shifts else cell
            for name, cell in zip(FEATURES, row, strict=True)
        ]
        for row in rows
    ]


def test_the_reference_is_what_the_tests_expect(reference: Profile) -> None:
    kinds = {name: type(column).__name__ for name, column in reference.columns.items()}
    assert kinds == dict.fromkeys("xyzw", "NumericColumn") | {"c": "CategoricalColumn"}
    assert type(reference.prediction).__name__ == "NumericColumn"
    assert reference.rows == 2_000


def test_the_same_distribution_is_no_drift(reference: Profile) -> None:
    rows, prices = training_rows()
    report = compare(reference, profiled(reference, FEATURES, rows, prices), thresholds=Thresholds())
    assert (report.verdict, report.reason, report.drifted, report.drifted_share) == (NO_DRIFT, None, [], 0.0)
    assert [(feature["feature"], feature["psi"], feature["jsDistance"]) for feature in report.features] == [
        (name, 0.0, 0.0) for name in FEATURES
    ]
    assert report.prediction is not None
    assert (report.prediction["psi"], report.prediction["drifted"]) == (0.0, False)
    assert report.not_compared == []


def test_another_sample_of_the_same_distribution_is_no_drift(reference: Profile) -> None:
    rows, prices = training_rows(1_000, seed=99)
    report = compare(reference, profiled(reference, FEATURES, rows, prices), thresholds=Thresholds())
    assert report.verdict == NO_DRIFT
    assert max(feature["psi"] for feature in report.features) < 0.05


def test_a_shifted_file_is_drift_with_the_features_that_moved(reference: Profile) -> None:
    rows, prices = training_rows(1_000, seed=5)
    moved = shifted(rows, {"x": 2.0, "y": 4.0, "w": 3.0})
    report = compare(
        reference,
        profiled(reference, FEATURES, moved, [f"{float(p) + 30:.2f}" for p in prices]),
        thresholds=Thresholds(),
    )
    assert report.verdict == DRIFT
    assert report.drifted == ["x", "y", "w"]
    assert report.drifted_share == pytest.approx(3 / 5)
    assert report.prediction is not None
    assert report.prediction["drifted"] is True
    unmoved = {feature["feature"]: feature["psi"] for feature in report.features if not feature["drifted"]}
    assert set(unmoved) == {"z", "c"}
    assert max(unmoved.values()) < 0.05


def test_the_thresholds_are_inclusive(reference: Profile) -> None:
    """A feature drifts when its PSI reaches the threshold; the file when the share of drifted features does."""
    rows, prices = training_rows(1_000, seed=5)
    current = profiled(reference, FEATURES, shifted(rows, {"x": 2.0}), prices)
    score = next(feature["psi"] for feature in compare(reference, current, thresholds=Thresholds()).features)
    assert score > 0.2

    at = compare(reference, current, thresholds=Thresholds(psi=score, share=1 / 5))
    assert (at.verdict, at.drifted, at.drifted_share) == (DRIFT, ["x"], 1 / 5)
    above_share = compare(reference, current, thresholds=Thresholds(psi=score, share=math.nextafter(1 / 5, math.inf)))
    assert (above_share.verdict, above_share.drifted) == (NO_DRIFT, ["x"])
    above_psi = compare(reference, current, thresholds=Thresholds(psi=math.nextafter(score, math.inf), share=1 / 5))
    assert (above_psi.verdict, above_psi.drifted) == (NO_DRIFT, [])


def test_an_input_of_no_rows_is_not_computed(reference: Profile) -> None:
    profiler = Profiler(reference)
    content = (",".join(FEATURES) + "\n").encode()
    output = b"".join(join_predictions([content], lambda _row: "1", JoinStats(), observer=profiler))
    assert output == (",".join(FEATURES) + ",prediction\n").encode()
    report = compare(reference, profiler.result(), thresholds=Thresholds())
    assert (report.verdict, report.reason) == (NOT_COMPUTED, "the input has no rows")
    assert (report.features, report.drifted, report.prediction) == ([], [], None)
    summary = report.summary()
    assert (summary["verdict"], summary["reason"], summary["top"], summary["prediction"]) == (
        NOT_COMPUTED,
        "the input has no rows",
        [],
        None,
    )


def test_columns_missing_from_the_input_or_the_reference_are_not_compared(reference: Profile) -> None:
    rows, prices = training_rows(500, seed=8)
    header = ["c", "x", "extra", "w"]  # no y, no z; one the reference lacks
    index = {name: FEATURES.index(name) for name in ("c", "x", "w")}
    cut = [[row[index["c"]], row[index["x"]], "e", row[index["w"]]] for row in rows]
    report = compare(reference, profiled(reference, header, cut, prices), thresholds=Thresholds())
    assert [feature["feature"] for feature in report.features] == ["x", "w", "c"]
    assert report.not_compared == [
        {"column": "y", "reason": "not in the input"},
        {"column": "z", "reason": "not in the input"},
        {"column": "extra", "reason": "not in the reference"},
    ]
    assert report.to_json()["notCompared"] == report.not_compared
    assert report.verdict == NO_DRIFT


def test_an_input_with_none_of_the_features_is_not_computed(reference: Profile) -> None:
    report = compare(reference, profiled(reference, ["other"], [["1"], ["2"]], ["1", "2"]), thresholds=Thresholds())
    assert (report.verdict, report.reason) == (NOT_COMPUTED, "no feature could be compared")
    assert [entry["reason"] for entry in report.not_compared] == ["not in the input"] * 5 + ["not in the reference"]


def test_a_column_of_nulls_in_the_file_is_not_compared(reference: Profile) -> None:
    rows, prices = training_rows(300, seed=3)
    emptied = [[*row[:3], "", row[4]] for row in rows]  # w: empty everywhere
    report = compare(reference, profiled(reference, FEATURES, emptied, prices), thresholds=Thresholds())
    assert {"column": "w", "reason": "the file has no values in it"} in report.not_compared
    assert [feature["feature"] for feature in report.features] == ["x", "y", "z", "c"]


def test_the_summary_and_the_report(reference: Profile) -> None:
    rows, prices = training_rows(1_000, seed=21)
    moved = shifted(rows, {"x": 0.3, "y": 1.0, "z": 15.0, "w": 2.0})
    current = profiled(reference, FEATURES, moved, [f"{float(p) + 5:.2f}" for p in prices])
    current.rows_seen = 4_000  # as if sampled: one block in four
    report = compare(reference, current, thresholds=Thresholds(psi=0.25, share=0.5))
    summary = report.summary()
    assert list(summary) == [
        "verdict",
        "reason",
        "driftedFeatures",
        "driftedShare",
        "threshold",
        "rowsProfiled",
        "top",
        "prediction",
    ]
    ranked = sorted(report.features, key=lambda feature: -feature["psi"])
    assert [entry["feature"] for entry in summary["top"]] == [feature["feature"] for feature in ranked[:3]]
    assert [entry["feature"] for entry in summary["top"]] == ["w", "z", "y"]  # x and c moved least
    assert summary["top"][0] == {"feature": "w", "psi": ranked[0]["psi"], "jsDistance": ranked[0]["jsDistance"]}
    assert [entry["psi"] for entry in summary["top"]] == sorted(
        (entry["psi"] for entry in summary["top"]), reverse=True
    )
    assert len(report.summary(top=10)["top"]) == 5
    assert summary["threshold"] == {"psi": 0.25, "share": 0.5}
    assert summary["rowsProfiled"] == 1_000
    assert summary["driftedFeatures"] == report.drifted
    assert summary["driftedShare"] == len(report.drifted) / 5
    assert summary["verdict"] == (DRIFT if summary["driftedShare"] >= 0.5 else NO_DRIFT)
    assert report.prediction is not None
    assert summary["prediction"] == {
        "psi": report.prediction["psi"],
        "jsDistance": report.prediction["jsDistance"],
        "drifted": report.prediction["drifted"],
    }
    assert json.loads(json.dumps(summary)) == summary

    whole = report.to_json()
    assert whole["format"] == "dropscore.drift-report"
    assert whole["rows"] == {"scored": 4_000, "profiled": 1_000, "sampled": True}
    assert json.loads(json.dumps(whole)) == whole
    z = next(feature for feature in whole["features"] if feature["feature"] == "z")
    assert z["kind"] == "numeric"
    assert z["mean"]["current"] == pytest.approx(z["mean"]["reference"] + 15.0, abs=0.5)
    assert sum(z["bins"]["reference"]) == 2_000
    assert sum(z["bins"]["current"]) == 1_000
    colour = next(feature for feature in whole["features"] if feature["feature"] == "c")
    assert colour["kind"] == "categorical"
    assert colour["unseen"] == {"rows": 0, "examples": []}


def test_unseen_categories_count_in_the_other_bin(reference: Profile) -> None:
    rows, prices = training_rows(400, seed=4)
    recoloured = [[*row[:4], "purple" if index % 2 else row[4]] for index, row in enumerate(rows)]
    report = compare(reference, profiled(reference, FEATURES, recoloured, prices), thresholds=Thresholds())
    colour = next(feature for feature in report.features if feature["feature"] == "c")
    assert colour["drifted"] is True
    assert colour["bins"]["current"][-1] == 200
    assert colour["bins"]["reference"][-1] == 0
    assert colour["unseen"] == {"rows": 200, "examples": ["purple"]}


def test_a_report_is_a_drift_report(reference: Profile) -> None:
    rows, prices = training_rows(50, seed=1)
    assert isinstance(
        compare(reference, profiled(reference, FEATURES, rows, prices), thresholds=Thresholds()), DriftReport
    )
