"""A scored file's profile against the reference: per feature the population stability index (PSI) and the
Jensen-Shannon distance over the reference's bins, nulls, non-numeric cells and unseen categories; the
prediction's distribution; and a verdict as Evidently's dataset drift gives one (drift when the share of
drifted features reaches a threshold). Pure: no I/O.

The definitions are Evidently's (tests/unit/test_drift_oracles.py checks them against Evidently and scipy):
shares are counts over the column's values (nulls left out). PSI = sum((ref - cur) * ln(ref / cur)) with a
zero share replaced by 1e-4, or by the smallest non-zero share / 1e6 when that share is 1e-4 or less.
JS distance = sqrt of the Jensen-Shannon divergence, natural log, no replacement (scipy's jensenshannon).
A numeric bin empty on both sides is kept and filled on both sides, as Evidently's numeric histogram does; a
categorical bin empty on both sides (the "other" bin of a complete reference, when the file has no unseen value)
is left out, as Evidently's categorical branch only has the values seen in either sample. (`psi` itself keeps
every bin it is given: tests/unit/test_drift_oracles.py shows what a kept empty bin adds.)
The bins differ from Evidently's: ours are the reference's (quantile edges for a numeric column, its top
categories plus "other" for a categorical one), fixed in the profile so a file is compared in one pass;
Evidently bins the two samples together, which needs both whole.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.drift.profile import CategoricalColumn, Column, NumericColumn, Profile
from shared.drift.stream import StreamResult

DRIFT, NO_DRIFT, NOT_COMPUTED = "drift", "no_drift", "not_computed"
REPORT_FORMAT = "dropscore.drift-report"
#: The label of a categorical column's bin of values outside the reference's top categories.
OTHER = "(other)"


@dataclass(frozen=True)
class Thresholds:
    psi: float = 0.2
    share: float = 0.5


def shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [count / total for count in counts]


def _filled(values: list[float]) -> list[float]:
    smallest = min(value for value in values if value != 0)
    fill = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return [value if value != 0 else fill for value in values]


def psi(expected: Sequence[int], actual: Sequence[int]) -> float:
    """The population stability index of `actual` against `expected` (two histograms over the same bins)."""
    reference, current = _filled(shares(expected)), _filled(shares(actual))
    return sum((ref - cur) * math.log(ref / cur) for ref, cur in zip(reference, current, strict=True))


def js_distance(expected: Sequence[int], actual: Sequence[int]) -> float:
    """The Jensen-Shannon distance (natural log) between two histograms over the same bins."""
    reference, current = shares(expected), shares(actual)
    divergence = 0.0
    for ref, cur in zip(reference, current, strict=True):
        middle = (ref + cur) / 2
        divergence += _relative_entropy(ref, middle) + _relative_entropy(cur, middle)
    return math.sqrt(max(divergence / 2, 0.0))


def _relative_entropy(share: float, middle: float) -> float:
    return share * math.log(share / middle) if share > 0 else 0.0


def histogram(column: Column) -> list[int]:
    """The column's values over its bins: numeric bins, or the categories then "other"."""
    if isinstance(column, NumericColumn):
        return list(column.counts)
    return [*column.counts, column.other]


@dataclass
class DriftReport:
    verdict: str
    reason: str | None
    thresholds: Thresholds
    rows_seen: int
    rows_profiled: int
    features: list[dict[str, Any]] = field(default_factory=list)
    prediction: dict[str, Any] | None = None
    not_compared: list[dict[str, str]] = field(default_factory=list)
    reference: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted(self) -> list[str]:
        return [feature["feature"] for feature in self.features if feature["drifted"]]

    @property
    def drifted_share(self) -> float:
        return len(self.drifted) / len(self.features) if self.features else 0.0

    def to_json(self) -> dict[str, Any]:
        """The whole report (`<input>.drift.json`)."""
        return {
            "format": REPORT_FORMAT,
            "version": 1,
            "verdict": self.verdict,
            "reason": self.reason,
            "thresholds": {"psi": self.thresholds.psi, "share": self.thresholds.share},
            "rows": {
                "scored": self.rows_seen,
                "profiled": self.rows_profiled,
                "sampled": self.rows_profiled < self.rows_seen,
            },
            "driftedShare": self.drifted_share,
            "driftedFeatures": self.drifted,
            "features": self.features,
            "prediction": self.prediction,
            "notCompared": self.not_compared,
            "reference": self.reference,
        }

    def summary(self, *, top: int = 3) -> dict[str, Any]:
        """What events carry (`data.drift`): the verdict, the drifted features and the highest scores."""
        ranked = sorted(self.features, key=lambda feature: (-feature["psi"], feature["feature"]))[:top]
        prediction = self.prediction
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "driftedFeatures": self.drifted,
            "driftedShare": self.drifted_share,
            "threshold": {"psi": self.thresholds.psi, "share": self.thresholds.share},
            "rowsProfiled": self.rows_profiled,
            "top": [
                {"feature": feature["feature"], "psi": feature["psi"], "jsDistance": feature["jsDistance"]}
                for feature in ranked
            ],
            "prediction": None
            if prediction is None
            else {key: prediction[key] for key in ("psi", "jsDistance", "drifted")},
        }


def not_computed(
    reason: str, *, thresholds: Thresholds, rows_seen: int = 0, columns: Sequence[str] = ()
) -> DriftReport:
    """A report that compares nothing, saying why (no rows, a reference that cannot be used)."""
    return DriftReport(
        verdict=NOT_COMPUTED,
        reason=reason,
        thresholds=thresholds,
        rows_seen=rows_seen,
        rows_profiled=0,
        not_compared=[{"column": column, "reason": reason} for column in columns],
    )


def compare(reference: Profile, current: StreamResult, *, thresholds: Thresholds) -> DriftReport:
    """The drift report of a scored file's profile against the reference it was profiled in."""
    not_compared = [{"column": name, "reason": "not in the input"} for name in current.columns_missing]
    not_compared += [{"column": name, "reason": "not in the reference"} for name in current.columns_extra]
    report = DriftReport(
        verdict=NO_DRIFT,
        reason=None,
        thresholds=thresholds,
        rows_seen=current.rows_seen,
        rows_profiled=current.rows_profiled,
        not_compared=not_compared,
    )
    if current.rows_seen == 0:
        return _nothing(report, "the input has no rows")
    for name, expected in reference.columns.items():
        if name in current.columns_missing:
            continue
        outcome = _compare_column(name, expected, current.profile.columns[name], thresholds)
        if isinstance(outcome, str):
            report.not_compared.append({"column": name, "reason": outcome})
        else:
            report.features.append(outcome)
    if reference.prediction is not None and current.profile.prediction is not None:
        outcome = _compare_column("prediction", reference.prediction, current.profile.prediction, thresholds)
        if isinstance(outcome, str):
            report.not_compared.append({"column": "prediction", "reason": outcome})
        else:
            report.prediction = outcome
    if not report.features:
        return _nothing(report, "no feature could be compared")
    report.verdict = DRIFT if report.drifted_share >= thresholds.share else NO_DRIFT
    return report


def _nothing(report: DriftReport, reason: str) -> DriftReport:
    report.verdict, report.reason = NOT_COMPUTED, reason
    return report


def _compare_column(name: str, expected: Column, actual: Column, thresholds: Thresholds) -> dict[str, Any] | str:
    """The column's scores, or why it was not compared."""
    reference_counts, current_counts = histogram(expected), histogram(actual)
    bins: dict[str, Any] = {}
    if isinstance(expected, CategoricalColumn):  # only the values seen in either, as Evidently bins categories
        seen = [index for index, pair in enumerate(zip(reference_counts, current_counts, strict=True)) if any(pair)]
        labels = [*expected.categories, OTHER]
        bins["labels"] = [labels[index] for index in seen]
        reference_counts = [reference_counts[index] for index in seen]
        current_counts = [current_counts[index] for index in seen]
    else:
        bins["edges"] = list(expected.edges)
    if sum(reference_counts) == 0:
        return "the reference has no values in it"
    if sum(current_counts) == 0:
        return "the file has no values in it"
    score = psi(reference_counts, current_counts)
    result: dict[str, Any] = {
        "feature": name,
        "kind": "numeric" if isinstance(expected, NumericColumn) else "categorical",
        "psi": score,
        "jsDistance": js_distance(reference_counts, current_counts),
        "drifted": score >= thresholds.psi,
        "nullShare": {"reference": _null_share(expected), "current": _null_share(actual)},
        "bins": {**bins, "reference": reference_counts, "current": current_counts},
    }
    if isinstance(expected, NumericColumn) and isinstance(actual, NumericColumn):
        result["invalid"] = actual.invalid
        result["mean"] = {"reference": expected.mean, "current": actual.mean}
        result["std"] = {"reference": expected.std, "current": actual.std}
        result["range"] = {"reference": [expected.min, expected.max], "current": [actual.min, actual.max]}
    elif isinstance(actual, CategoricalColumn):
        result["unseen"] = {"rows": actual.other if actual.complete else 0, "examples": list(actual.unseen)}
    return result


def _null_share(column: Column) -> float:
    if isinstance(column, NumericColumn):
        cells = column.count + column.nulls + column.invalid
    else:
        cells = sum(column.counts) + column.other + column.nulls
    return column.nulls / cells if cells else 0.0
