"""A reference profile from the model's training data (`python -m shared.profile build`).

Two passes over the file, in chunks of rows, memory bounded whatever its size:
1. each column's kind (numeric when at least NUMERIC_SHARE of its non-null cells are numbers), a sample of
   its numbers (systematic: every value until SAMPLE_KEPT are kept, then every second, every fourth...) for
   the quantile edges, and its values' counts (at most DISTINCT_KEPT distinct values: past that the list of
   top categories is not complete);
2. the counts of every row into those bins and categories, by the same code the join's profiler runs
   (stream.count_cells), so a file and its reference are profiled alike.
"""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from shared.drift.profile import CategoricalColumn, Column, NumericColumn, Profile
from shared.drift.stream import NULL_TOKENS, count_cells, parse_numbers

CHUNK_ROWS = 50_000
NUMERIC_SHARE = 0.95
SAMPLE_KEPT = 1_000_000
DISTINCT_KEPT = 100_000
Progress = Callable[[str], None]


@dataclass
class _Seen:
    """What pass 1 learns of one column."""

    numbers: int = 0
    texts: int = 0
    sample: list[np.ndarray] = field(default_factory=list)
    kept: int = 0
    stride: int = 1
    values: Counter[bytes] = field(default_factory=Counter)
    complete: bool = True

    def add(self, cells: list[bytes]) -> None:
        numbers, _nulls, invalid = parse_numbers(cells)
        self.numbers += numbers.size
        self.texts += invalid
        if numbers.size:
            self.sample.append(numbers[:: self.stride])
            self.kept += self.sample[-1].size
            if self.kept > SAMPLE_KEPT:  # keep every second of what is kept, and of what comes
                self.sample = [np.concatenate(self.sample)[::2]]
                self.kept, self.stride = self.sample[0].size, self.stride * 2
        for cell, times in Counter(cells).items():
            if cell in self.values or len(self.values) < DISTINCT_KEPT:
                self.values[cell] += times
            else:
                self.complete = False

    def shape(self, *, bins: int, top: int, numeric: bool | None = None) -> Column:
        """The column's bins (numeric) or top categories, with zero counts."""
        is_numeric = self.numbers > 0 and self.numbers >= NUMERIC_SHARE * (self.numbers + self.texts)
        if numeric if numeric is not None else is_numeric:
            sample = np.concatenate(self.sample) if self.sample else np.array([], dtype=np.float64)
            quantiles = np.quantile(sample, np.arange(1, bins) / bins) if sample.size else np.array([])
            edges = tuple(float(edge) for edge in np.unique(quantiles))
            return NumericColumn(edges=edges, counts=[0] * (len(edges) + 1))
        categories = Counter[str]()
        for cell, times in self.values.items():
            value = cell.decode("utf-8", "replace").strip()
            if value and value.lower() not in NULL_TOKENS:
                categories[value] += times
        ranked = sorted(categories.items(), key=lambda item: (-item[1], item[0]))
        chosen = tuple(value for value, _ in ranked[:top])
        return CategoricalColumn(
            categories=chosen, counts=[0] * len(chosen), complete=self.complete and len(ranked) <= top
        )


def build_profile(
    path: Path,
    *,
    prediction_column: str | None = None,
    bins: int = 10,
    top: int = 20,
    categorical: frozenset[str] = frozenset(),
    delimiter: str = ",",
    progress: Progress | None = None,
) -> Profile:
    """The reference profile of a CSV file (the training data, with its label or predictions in
    `prediction_column` when given: that column becomes the profile's prediction)."""
    header = _header(path, delimiter=delimiter)
    if prediction_column is not None and prediction_column not in header:
        raise ValueError(f"{path.name} has no column {prediction_column!r} (its columns: {', '.join(header)})")
    unknown = sorted(categorical - set(header))
    if unknown:
        raise ValueError(f"{path.name} has no column {', '.join(map(repr, unknown))}")
    seen = {name: _Seen() for name in header}
    for _ in _chunks(path, header, delimiter=delimiter, progress=progress, label="pass 1 of 2 (bins)", seen=seen):
        pass
    shapes = {
        name: seen[name].shape(bins=bins, top=top, numeric=False if name in categorical else None) for name in header
    }
    counted = dict(shapes)
    rows = 0
    for chunk_rows in _chunks(path, header, delimiter=delimiter, progress=progress, label="pass 2 of 2 (counts)"):
        rows += len(chunk_rows[0]) if chunk_rows else 0
        for name, cells in zip(header, chunk_rows, strict=True):
            counted[name] = count_cells(counted[name], cells)
    if rows == 0:  # every column would be "categorical" with no category: nothing could ever be compared
        raise ValueError(f"{path.name} has no rows of its header's width: a reference needs a header and rows")
    prediction = counted.pop(prediction_column) if prediction_column is not None else None
    return Profile(columns=counted, prediction=prediction, rows=rows, source=path.name)


def _header(path: Path, *, delimiter: str) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as text:
        first = next(csv.reader(text, delimiter=delimiter), None)
    if not first:
        raise ValueError(f"{path.name} is empty: a reference needs a header and rows")
    names = [name.strip() for name in first]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{path.name} repeats the column(s) {', '.join(duplicates)}")
    return names


def _chunks(
    path: Path,
    header: list[str],
    *,
    delimiter: str,
    progress: Progress | None,
    label: str,
    seen: dict[str, _Seen] | None = None,
) -> Iterator[list[list[bytes]]]:
    """The file's rows in chunks, as columns of cells (rows of another width are skipped, and counted)."""
    size = max(path.stat().st_size, 1)
    raw = path.open("rb")
    try:
        reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""), delimiter=delimiter)
        next(reader, None)
        rows = skipped = 0
        said = time.monotonic()
        while chunk := list(islice(reader, CHUNK_ROWS)):
            whole = [row for row in chunk if len(row) == len(header)]
            skipped += len(chunk) - len(whole)
            rows += len(whole)
            columns = [[cell.encode("utf-8") for cell in column] for column in zip(*whole, strict=True)]
            if not columns:
                continue
            if seen is not None:
                for name, cells in zip(header, columns, strict=True):
                    seen[name].add(cells)
            yield columns
            if progress is not None and time.monotonic() - said >= 2:
                said = time.monotonic()
                progress(f"{label}: {min(raw.tell() / size, 1):.0%}, {rows:,} rows")
        if progress is not None:
            progress(f"{label}: done, {rows:,} rows" + (f" ({skipped:,} of another width skipped)" if skipped else ""))
    finally:
        raw.close()
