"""A compact profile of a table's columns, the unit drift is measured in: built from the model's training data
(the reference) and from each scored file, in the same shape so the two compare bin by bin.

A numeric column keeps counts in the reference's bins (inner edges at the reference's quantiles), its nulls,
its non-numeric cells (`invalid`), and count, mean, sum of squared deviations (merged with Chan's formula),
min and max. A categorical column keeps counts of the reference's top categories, the rows of any other value
(`other`), its nulls, and when the reference's list is complete, a few of the values it never saw.

Profiles merge (`merge`): the profile of a file is the merge of the profiles of any split of its rows.
Pure: no I/O. The JSON form is checked against profile.schema.json, then for sense (bins and counts agree).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

from shared.errors import ReferenceInvalid

FORMAT = "dropscore.profile"
VERSION = 1
#: How many never-seen values of a categorical column a profile keeps as examples (the smallest ones).
UNSEEN_KEPT = 10
SCHEMA = Path(__file__).with_name("profile.schema.json")


@dataclass
class NumericColumn:
    edges: tuple[float, ...]
    counts: list[int]
    nulls: int = 0
    invalid: int = 0
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float | None = None
    max: float | None = None

    @property
    def std(self) -> float:
        """The population standard deviation (0 with fewer than two values)."""
        return math.sqrt(self.m2 / self.count) if self.count > 1 else 0.0


@dataclass
class CategoricalColumn:
    categories: tuple[str, ...]
    counts: list[int]
    other: int = 0
    nulls: int = 0
    complete: bool = True
    unseen: tuple[str, ...] = ()


Column = NumericColumn | CategoricalColumn


@dataclass
class Profile:
    columns: dict[str, Column]
    prediction: Column | None = None
    rows: int = 0
    source: str = ""


def empty_like(reference: Profile) -> Profile:
    """A profile of no rows, in the reference's bins and categories."""
    return Profile(
        columns={name: empty_column(column) for name, column in reference.columns.items()},
        prediction=None if reference.prediction is None else empty_column(reference.prediction),
    )


def empty_column(column: Column) -> Column:
    if isinstance(column, NumericColumn):
        return NumericColumn(edges=column.edges, counts=[0] * len(column.counts))
    return CategoricalColumn(categories=column.categories, counts=[0] * len(column.counts), complete=column.complete)


def merge(first: Profile, second: Profile) -> Profile:
    """The profile of both profiles' rows together (they must have the same columns, bins and categories)."""
    if list(first.columns) != list(second.columns):
        raise ValueError("profiles of different columns do not merge")
    if (first.prediction is None) != (second.prediction is None):
        raise ValueError("only one of the profiles has a prediction column")
    prediction = None
    if first.prediction is not None and second.prediction is not None:
        prediction = merge_columns(first.prediction, second.prediction)
    return Profile(
        columns={name: merge_columns(column, second.columns[name]) for name, column in first.columns.items()},
        prediction=prediction,
        rows=first.rows + second.rows,
        source=first.source or second.source,
    )


def merge_columns(first: Column, second: Column) -> Column:
    if isinstance(first, NumericColumn) and isinstance(second, NumericColumn):
        if first.edges != second.edges:
            raise ValueError("numeric columns of different bins do not merge")
        return merge_numbers(first, second)
    if isinstance(first, CategoricalColumn) and isinstance(second, CategoricalColumn):
        if first.categories != second.categories:
            raise ValueError("categorical columns of different categories do not merge")
        return replace(
            first,
            counts=[a + b for a, b in zip(first.counts, second.counts, strict=True)],
            other=first.other + second.other,
            nulls=first.nulls + second.nulls,
            unseen=tuple(sorted({*first.unseen, *second.unseen})[:UNSEEN_KEPT]),
        )
    raise ValueError("a numeric and a categorical column do not merge")


def merge_numbers(first: NumericColumn, second: NumericColumn) -> NumericColumn:
    """Counts add; mean and squared deviations combine by Chan et al.'s pairwise formula."""
    total = first.count + second.count
    if total == 0:
        mean, m2 = 0.0, 0.0
    else:
        delta = second.mean - first.mean
        mean = first.mean + delta * second.count / total
        m2 = first.m2 + second.m2 + delta * delta * first.count * second.count / total
    return NumericColumn(
        edges=first.edges,
        counts=[a + b for a, b in zip(first.counts, second.counts, strict=True)],
        nulls=first.nulls + second.nulls,
        invalid=first.invalid + second.invalid,
        count=total,
        mean=mean,
        m2=m2,
        min=_extreme(min, first.min, second.min),
        max=_extreme(max, first.max, second.max),
    )


def _extreme(pick: Any, first: float | None, second: float | None) -> float | None:
    values = [value for value in (first, second) if value is not None]
    return float(pick(values)) if values else None


def profile_to_json(profile: Profile) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "source": profile.source,
        "rows": profile.rows,
        "columns": {name: column_to_json(column) for name, column in profile.columns.items()},
        "prediction": None if profile.prediction is None else column_to_json(profile.prediction),
    }


def column_to_json(column: Column) -> dict[str, Any]:
    if isinstance(column, NumericColumn):
        return {
            "kind": "numeric",
            "edges": list(column.edges),
            "counts": list(column.counts),
            "nulls": column.nulls,
            "invalid": column.invalid,
            "count": column.count,
            "mean": column.mean,
            "std": column.std,
            "m2": column.m2,
            "min": column.min,
            "max": column.max,
        }
    return {
        "kind": "categorical",
        "categories": list(column.categories),
        "counts": list(column.counts),
        "other": column.other,
        "nulls": column.nulls,
        "complete": column.complete,
        "unseen": list(column.unseen),
    }


def profile_from_json(document: object) -> Profile:
    """A profile from its JSON form; ReferenceInvalid says what is wrong with a document that is not one."""
    import jsonschema  # type: ignore[import-untyped]  # only when a reference is read (cold start)

    validator = jsonschema.Draft202012Validator(_schema())
    problems = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
    if problems:
        first = problems[0]
        where = "/".join(str(part) for part in first.absolute_path) or "the document"
        raise ReferenceInvalid(f"not a dropscore profile: at {where}: {first.message}")
    assert isinstance(document, dict)  # the schema says so
    columns = {name: _column(name, body) for name, body in document["columns"].items()}
    prediction = document.get("prediction")
    return Profile(
        columns=columns,
        prediction=None if prediction is None else _column("the prediction", prediction),
        rows=document["rows"],
        source=document.get("source", ""),
    )


def profile_from_bytes(content: bytes) -> Profile:
    try:
        document = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReferenceInvalid(f"not a dropscore profile: not JSON ({exc})") from None
    return profile_from_json(document)


@cache
def _schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return loaded


def _column(name: str, body: dict[str, Any]) -> Column:
    if body["kind"] == "numeric":
        edges = tuple(float(edge) for edge in body["edges"])
        if any(later <= earlier for earlier, later in itertools.pairwise(edges)):
            raise ReferenceInvalid(f"not a dropscore profile: the bin edges of {name} are not increasing")
        if len(body["counts"]) != len(edges) + 1:
            raise ReferenceInvalid(f"not a dropscore profile: {name} has {len(edges)} edges but not one count more")
        return NumericColumn(
            edges=edges,
            counts=list(body["counts"]),
            nulls=body["nulls"],
            invalid=body["invalid"],
            count=body["count"],
            mean=float(body["mean"]),
            m2=float(body.get("m2", body["std"] ** 2 * body["count"])),
            min=body["min"],
            max=body["max"],
        )
    categories = tuple(body["categories"])
    if len(body["counts"]) != len(categories) or len(set(categories)) != len(categories):
        raise ReferenceInvalid(f"not a dropscore profile: the categories and counts of {name} do not match")
    return CategoricalColumn(
        categories=categories,
        counts=list(body["counts"]),
        other=body["other"],
        nulls=body["nulls"],
        complete=body["complete"],
        unseen=tuple(body.get("unseen", ())),
    )
