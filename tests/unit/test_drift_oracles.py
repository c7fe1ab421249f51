"""shared/drift checked against libraries nobody here wrote: Evidently's PSI and Jensen-Shannon stattests and
dataset-drift rule, scipy's jensenshannon and rel_entr, numpy's searchsorted/digitize/mean/std.

Evidently bins numeric data its own way (np.histogram_bin_edges over both samples together), so to compare on
the *same bins* it is fed each value's bin label as categorical data, and our functions the counts of the same
labels. Evidently drops nulls before a stattest (get_one_column_drift), so the labels here hold none.

One difference is by definition and asserted as such (shared/drift/compare.py's docstring): a bin empty on both
sides is kept and zero-filled by us, as by Evidently's numeric histogram, while Evidently's categorical branch
has only the values seen in either sample.

Evidently (test-only, requirements-dev.txt) is imported once per module: it takes seconds.
"""

from __future__ import annotations

import bisect
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon  # type: ignore[import-untyped]
from scipy.special import rel_entr  # type: ignore[import-untyped]

from shared.drift.compare import Thresholds, compare, histogram, js_distance, psi
from shared.drift.profile import CategoricalColumn, NumericColumn, Profile, empty_column
from shared.drift.stream import StreamResult, count_cells, numbers_of

TOLERANCE = 1e-9


@dataclass(frozen=True)
class Evidently:
    """The parts of Evidently 0.7 the oracles call (its legacy API holds the stattests)."""

    psi: Any
    jensenshannon: Any
    categorical: Any
    numerical: Any
    report: Any
    dataset_drift_metric: Any
    data_drift_table: Any
    column_mapping: Any


@pytest.fixture(scope="module")
def evidently() -> Evidently:
    # Evidently 0.7.23 (the newest) imports a helper pandas 3 removed, in a module of data-integrity tests
    # these oracles never run. The name is put back as a function that fails loudly if anything calls it.
    import pandas.core.dtypes.common as pandas_common  # type: ignore[import-untyped]

    if not hasattr(pandas_common, "infer_dtype_from_object"):

        def removed_in_pandas_3(*_args: object, **_kwargs: object) -> None:
            raise AssertionError("Evidently called infer_dtype_from_object, which pandas 3 removed")

        pandas_common.infer_dtype_from_object = removed_in_pandas_3

    with warnings.catch_warnings():  # its dependencies' deprecation warnings, on import
        warnings.simplefilter("ignore")
        from evidently.legacy.calculations.stattests import jensenshannon_stat_test, psi_stat_test  # type: ignore[import-untyped]
        from evidently.legacy.core import ColumnType  # type: ignore[import-untyped]
        from evidently.legacy.metrics import DataDriftTable, DatasetDriftMetric  # type: ignore[import-untyped]
        from evidently.legacy.pipeline.column_mapping import ColumnMapping  # type: ignore[import-untyped]
        from evidently.legacy.report import Report  # type: ignore[import-untyped]

    return Evidently(
        psi=psi_stat_test,
        jensenshannon=jensenshannon_stat_test,
        categorical=ColumnType.Categorical,
        numerical=ColumnType.Numerical,
        report=Report,
        dataset_drift_metric=DatasetDriftMetric,
        data_drift_table=DataDriftTable,
        column_mapping=ColumnMapping,
    )


def labelled(counts: Sequence[int]) -> pd.Series:
    """A sample holding bin i's label counts[i] times."""
    return pd.Series(np.repeat([f"bin{index:02d}" for index in range(len(counts))], counts), dtype=object)


def evidently_scores(evidently: Evidently, expected: Sequence[int], actual: Sequence[int]) -> tuple[float, float]:
    """Evidently's PSI and Jensen-Shannon distance of two histograms over the same bins (as categories)."""
    reference, current = labelled(expected), labelled(actual)
    score = evidently.psi(reference, current, evidently.categorical, 0.2).drift_score
    distance = evidently.jensenshannon(reference, current, evidently.categorical, 0.1).drift_score
    return float(score), float(distance)


def zero_filled(shares: np.ndarray) -> np.ndarray:
    """The zero-fill rule, written again with numpy."""
    smallest = shares[shares > 0].min()
    return np.where(shares == 0, smallest / 1e6 if smallest <= 1e-4 else 1e-4, shares)


def scipy_psi(expected: Sequence[int], actual: Sequence[int]) -> float:
    """PSI as symmetric relative entropy: (r - c) ln(r / c) = r ln(r / c) + c ln(c / r)."""
    reference = np.asarray(expected, dtype=np.float64)
    current = np.asarray(actual, dtype=np.float64)
    reference, current = zero_filled(reference / reference.sum()), zero_filled(current / current.sum())
    return float(np.sum(rel_entr(reference, current) + rel_entr(current, reference)))


def scipy_js(expected: Sequence[int], actual: Sequence[int]) -> float:
    return float(jensenshannon(np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)))


#: Histograms over the same bins, none empty on both sides (the difference there is tested on its own).
CASES = {
    "no empty bin": ([10, 20, 30, 40], [15, 25, 20, 40]),
    "identical": ([3, 1, 4, 1, 5], [3, 1, 4, 1, 5]),
    "same shares, other sizes": ([1, 2, 3], [100, 200, 300]),
    "one bin": ([7], [3]),
    "empty in the file": ([5, 5, 5, 5], [0, 10, 5, 5]),
    "empty in the reference": ([0, 10, 5, 5], [5, 5, 5, 5]),
    "empty on either side": ([0, 3, 7, 1], [4, 0, 3, 1]),
    "disjoint": ([5, 0], [0, 5]),
    # the fill is the smallest share / 1e6 when that share is 1e-4 or less, else 1e-4
    "smallest share below 1e-4": ([1, 19_999, 0], [0, 12_000, 8_000]),
    "smallest share exactly 1e-4": ([1, 9_999, 0], [0, 30, 70]),
    "smallest share just above 1e-4": ([1, 9_998, 0], [0, 30, 70]),
    "small shares on both sides": ([1, 0, 14_999], [0, 2, 25_000]),
}


@pytest.mark.parametrize(("expected", "actual"), CASES.values(), ids=CASES.keys())
def test_psi_and_js_distance_are_evidentlys_and_scipys(
    evidently: Evidently, expected: list[int], actual: list[int]
) -> None:
    evidently_psi, evidently_js = evidently_scores(evidently, expected, actual)
    ours_psi, ours_js = psi(expected, actual), js_distance(expected, actual)
    assert ours_psi == pytest.approx(evidently_psi, abs=TOLERANCE)
    assert ours_psi == pytest.approx(scipy_psi(expected, actual), abs=TOLERANCE)
    assert ours_js == pytest.approx(evidently_js, abs=TOLERANCE)
    assert ours_js == pytest.approx(scipy_js(expected, actual), abs=TOLERANCE)


counts = st.one_of(st.just(0), st.integers(1, 40), st.integers(1, 3_000))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(counts, counts).filter(lambda pair: pair != (0, 0)), min_size=1, max_size=12))
def test_any_histograms_agree_with_evidently_and_scipy(evidently: Evidently, pairs: list[tuple[int, int]]) -> None:
    expected, actual = [pair[0] for pair in pairs], [pair[1] for pair in pairs]
    assume(sum(expected) > 0 and sum(actual) > 0)
    evidently_psi, evidently_js = evidently_scores(evidently, expected, actual)
    assert psi(expected, actual) == pytest.approx(evidently_psi, abs=TOLERANCE)
    assert psi(expected, actual) == pytest.approx(scipy_psi(expected, actual), abs=TOLERANCE)
    assert js_distance(expected, actual) == pytest.approx(evidently_js, abs=TOLERANCE)
    assert js_distance(expected, actual) == pytest.approx(scipy_js(expected, actual), abs=TOLERANCE)


def test_the_fill_rule_boundary_is_inclusive() -> None:
    """1 in 10,000 is a share of exactly 1e-4: filled with 1e-10, where 1 in 9,999 is filled with 1e-4."""
    at, above = [1, 9_999, 0], [1, 9_998, 0]
    current = [1, 1, 1]
    fill_at, fill_above = 1e-4 / 1e6, 1e-4
    expected_at = sum(
        (ref - cur) * math.log(ref / cur)
        for ref, cur in zip([1e-4, 0.9999, fill_at], [1 / 3, 1 / 3, 1 / 3], strict=True)
    )
    expected_above = sum(
        (ref - cur) * math.log(ref / cur)
        for ref, cur in zip([1 / 9_999, 9_998 / 9_999, fill_above], [1 / 3, 1 / 3, 1 / 3], strict=True)
    )
    assert psi(at, current) == pytest.approx(expected_at, abs=TOLERANCE)
    assert psi(above, current) == pytest.approx(expected_above, abs=TOLERANCE)


def test_a_bin_empty_on_both_sides_is_the_documented_difference(evidently: Evidently) -> None:
    """Evidently's categorical branch has only the values seen in either sample; we keep the bin and fill it on
    both sides, which adds (f_ref - f_cur) ln(f_ref / f_cur): nothing when both fills are 1e-4, a little when a
    side has a share of 1e-4 or less (here 1 in 20,000: filled with 5e-11 against the file's 1e-4)."""
    same_fill = ([2, 5, 0], [4, 3, 0])
    evidently_psi, evidently_js = evidently_scores(evidently, *same_fill)
    assert psi(*same_fill) == pytest.approx(evidently_psi, abs=TOLERANCE)
    assert js_distance(*same_fill) == pytest.approx(evidently_js, abs=TOLERANCE)

    expected, actual = [1, 19_999, 0], [30, 70, 0]
    evidently_psi, evidently_js = evidently_scores(evidently, expected, actual)
    reference_fill, current_fill = (1 / 20_000) / 1e6, 1e-4
    added = (reference_fill - current_fill) * math.log(reference_fill / current_fill)
    assert added == pytest.approx(0.00145087, abs=1e-8)
    assert psi(expected, actual) == pytest.approx(evidently_psi + added, abs=TOLERANCE)
    assert psi(expected, actual) == pytest.approx(scipy_psi(expected, actual), abs=TOLERANCE)
    # without the bin nobody has, the scores are Evidently's; the JS distance never changes (0 ln 0 = 0)
    assert psi(expected[:2], actual[:2]) == pytest.approx(evidently_psi, abs=TOLERANCE)
    assert js_distance(expected, actual) == pytest.approx(evidently_js, abs=TOLERANCE)
    assert js_distance(expected, actual) == pytest.approx(scipy_js(expected, actual), abs=TOLERANCE)


def test_evidentlys_numeric_histogram_keeps_and_fills_bins_empty_on_both_sides(evidently: Evidently) -> None:
    """On Evidently's own numeric bins (Sturges' edges over both samples, empty bins between the bulk and an
    outlier), our PSI of the same histogram is Evidently's: it fills bins empty on both sides as we do."""
    rng = np.random.default_rng(14)
    reference = np.append(rng.normal(size=19_999), 50.0)  # the outlier's share is 5e-5: filled with 5e-11
    current = np.append(rng.normal(0.3, size=499), 50.0)
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
    expected = np.histogram(reference, edges)[0].tolist()
    actual = np.histogram(current, edges)[0].tolist()
    assert sum(1 for ref, cur in zip(expected, actual, strict=True) if ref == cur == 0) >= 5

    score = evidently.psi(pd.Series(reference), pd.Series(current), evidently.numerical, 0.2).drift_score
    distance = evidently.jensenshannon(pd.Series(reference), pd.Series(current), evidently.numerical, 0.1)
    assert psi(expected, actual) == pytest.approx(float(score), abs=TOLERANCE)
    assert js_distance(expected, actual) == pytest.approx(float(distance.drift_score), abs=TOLERANCE)


def test_numeric_columns_on_the_same_bins(evidently: Evidently) -> None:
    """A reference's quantile bins, a shifted file with values on the edges: counted by the profiler, the same
    values labelled by np.digitize for Evidently."""
    rng = np.random.default_rng(7)
    reference = np.round(rng.normal(size=3_000), 2)
    edges = tuple(float(edge) for edge in np.unique(np.quantile(reference, np.arange(1, 10) / 10)))
    current = np.concatenate([np.round(rng.normal(0.4, 1.3, size=1_200), 2), np.repeat(edges, 3)])

    def profiled(values: np.ndarray) -> NumericColumn:
        cells = [repr(float(value)).encode() for value in values]
        column = NumericColumn(edges=edges, counts=[0] * (len(edges) + 1))
        for start in range(0, len(cells), 500):
            column = count_cells(column, cells[start : start + 500])  # type: ignore[assignment]
        return column

    expected, actual = histogram(profiled(reference)), histogram(profiled(current))
    bins = len(edges) + 1
    assert expected == np.bincount(np.digitize(reference, edges, right=False), minlength=bins).tolist()
    assert actual == np.bincount(np.digitize(current, edges, right=False), minlength=bins).tolist()
    evidently_psi, evidently_js = evidently_scores(evidently, expected, actual)
    assert psi(expected, actual) == pytest.approx(evidently_psi, abs=TOLERANCE)
    assert js_distance(expected, actual) == pytest.approx(evidently_js, abs=TOLERANCE)
    assert psi(expected, actual) == pytest.approx(scipy_psi(expected, actual), abs=TOLERANCE)
    assert js_distance(expected, actual) == pytest.approx(scipy_js(expected, actual), abs=TOLERANCE)


def categorical_profile(categories: tuple[str, ...], cells: list[str], *, complete: bool = True) -> CategoricalColumn:
    column = CategoricalColumn(categories=categories, counts=[0] * len(categories), complete=complete)
    counted = count_cells(column, [cell.encode() for cell in cells])
    assert isinstance(counted, CategoricalColumn)
    return counted


def test_a_categorical_column_with_unseen_values_and_nulls(evidently: Evidently) -> None:
    """Values the reference never had share our "other" bin (Evidently gives each its own bin: fed the same
    bins, they are one label); nulls are left out on both sides (Evidently drops them before its stattests)."""
    categories = ("red", "green", "blue")
    reference_cells = ["red"] * 50 + ["green"] * 30 + ["blue"] * 20 + [""] * 7
    current_cells = ["red"] * 10 + ["blue"] * 25 + ["purple"] * 5 + ["teal"] * 3 + [""] * 4 + ["NA"] * 2
    expected = categorical_profile(categories, reference_cells)
    actual = categorical_profile(categories, current_cells)
    assert (actual.other, actual.nulls, actual.unseen) == (8, 6, ("purple", "teal"))
    assert histogram(expected) == [50, 30, 20, 0]
    assert histogram(actual) == [10, 0, 25, 8]

    def same_bins(cells: list[str]) -> pd.Series:
        values = pd.Series([cell if cell in categories else "<other>" for cell in cells if cell not in {"", "NA"}])
        return values.astype(object)

    reference, current = same_bins(reference_cells), same_bins(current_cells)
    evidently_psi = float(evidently.psi(reference, current, evidently.categorical, 0.2).drift_score)
    evidently_js = float(evidently.jensenshannon(reference, current, evidently.categorical, 0.1).drift_score)
    assert psi(histogram(expected), histogram(actual)) == pytest.approx(evidently_psi, abs=TOLERANCE)
    assert js_distance(histogram(expected), histogram(actual)) == pytest.approx(evidently_js, abs=TOLERANCE)


def test_bin_assignment_is_bisect_right_as_numpy_does_it() -> None:
    """A value on an edge falls in the bin to its right: bisect_right, np.searchsorted(side="right") and
    np.digitize(right=False) agree, and so do the profiler's counts."""
    edges = (-1.5, 0.0, 0.0 + 1e-12, 2.0, 10.0)
    values = [-100.0, -1.5, -1.4999, -0.0, 0.0, 5e-13, 1e-12, 1.999, 2.0, 9.99, 10.0, 1e30, -1e30]
    ours = [bisect.bisect_right(edges, value) for value in values]
    assert ours == np.searchsorted(np.asarray(edges), values, side="right").tolist()
    assert ours == np.digitize(values, edges, right=False).tolist()
    column = numbers_of(edges, [repr(value).encode() for value in values])
    assert column.counts == np.bincount(ours, minlength=len(edges) + 1).tolist()


def test_mean_std_min_max_are_numpys() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(1e4, 3.0, size=4_000), rng.exponential(2.0, size=3_001)])
    cells = [repr(float(value)).encode() for value in values] + [b"", b"NA", b"text"]
    column: Any = empty_column(NumericColumn(edges=(0.0, 5.0), counts=[0, 0, 0]))
    for start in range(0, len(cells), 997):  # blocks merged by Chan's formula
        column = count_cells(column, cells[start : start + 997])
    assert (column.count, column.nulls, column.invalid) == (values.size, 2, 1)
    assert column.mean == pytest.approx(float(np.mean(values)), rel=TOLERANCE)
    assert column.std == pytest.approx(float(np.std(values)), rel=TOLERANCE)
    assert column.m2 == pytest.approx(float(np.var(values) * values.size), rel=TOLERANCE)
    assert (column.min, column.max) == (float(np.min(values)), float(np.max(values)))


SHARES = [0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("share", SHARES, ids=[f"share{share}" for share in SHARES])
def test_the_dataset_drift_rule_is_evidentlys(evidently: Evidently, share: float) -> None:
    """Four categorical features, two drifted (PSI >= 0.2): the share of drifted features against drift_share,
    inclusive (2 of 4 at 0.5 is drift), per-feature PSI and verdict as Evidently's DatasetDriftMetric says."""
    reference_frame = pd.DataFrame(
        {
            "steady": ["a"] * 40 + ["b"] * 40 + ["c"] * 20,
            "shifted": ["a"] * 50 + ["b"] * 50,
            "flipped": ["x"] * 80 + ["y"] * 20,
            "calm": ["p"] * 30 + ["q"] * 70,
        },
        dtype=object,
    )
    current_frame = pd.DataFrame(
        {
            "steady": ["a"] * 21 + ["b"] * 19 + ["c"] * 10,
            "shifted": ["a"] * 45 + ["b"] * 5,
            "flipped": ["x"] * 10 + ["y"] * 40,
            "calm": ["p"] * 16 + ["q"] * 33 + [None],  # Evidently drops the null; so do we
        },
        dtype=object,
    )
    names = list(reference_frame.columns)
    report = evidently.report(
        metrics=[
            evidently.dataset_drift_metric(drift_share=share, stattest="psi", stattest_threshold=0.2),
            evidently.data_drift_table(stattest="psi", stattest_threshold=0.2),
        ]
    )
    report.run(
        reference_data=reference_frame,
        current_data=current_frame,
        column_mapping=evidently.column_mapping(categorical_features=names, numerical_features=[]),
    )
    dataset, table = (metric["result"] for metric in report.as_dict()["metrics"])

    def profiled(frame: pd.DataFrame, categories: dict[str, tuple[str, ...]]) -> Profile:
        return Profile(
            columns={
                name: categorical_profile(categories[name], ["" if cell is None else cell for cell in frame[name]])
                for name in names
            },
            rows=len(frame),
        )

    categories = {name: tuple(sorted(set(reference_frame[name]))) for name in names}
    current = profiled(current_frame, categories)
    ours = compare(
        profiled(reference_frame, categories),
        StreamResult(profile=current, rows_seen=current.rows, rows_profiled=current.rows),
        thresholds=Thresholds(psi=0.2, share=share),
    )
    evidently_drifted = sorted(name for name, column in table["drift_by_columns"].items() if column["drift_detected"])
    assert sorted(ours.drifted) == evidently_drifted == ["flipped", "shifted"]
    assert ours.drifted_share == dataset["share_of_drifted_columns"] == 0.5
    assert (ours.verdict == "drift") is dataset["dataset_drift"] is (share <= 0.5)
    for feature in ours.features:
        assert feature["psi"] == pytest.approx(
            table["drift_by_columns"][feature["feature"]]["drift_score"], abs=TOLERANCE
        )
