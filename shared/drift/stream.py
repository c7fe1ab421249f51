"""The scored file's profile, taken during the join: the join hands over each block of rows it has parsed (or,
for plain blocks, the output lines it made) with their predictions, and the profiler counts them into the
reference's bins and categories. One pass, no second read of the input; memory is the profile's, whatever
the file's size.

Cost: a block is cut into cells with one C-level split and its columns counted with numpy (whole columns at
once, never cell by cell, except in a block holding a non-numeric cell in a numeric column). Files bigger
than DRIFT_SAMPLE_MB are profiled on an evenly spread sample of whole blocks (`sample_every`), so the cost of
drift stays a small share of the join's whatever the size; the report says how many rows were profiled.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

from shared.drift.profile import (
    UNSEEN_KEPT,
    CategoricalColumn,
    Column,
    NumericColumn,
    Profile,
    empty_like,
    merge_numbers,
)

#: Cells that mean "no value" (besides an empty or blank cell), compared case-insensitively: pandas' usual ones.
NULL_TOKENS = frozenset({"na", "n/a", "nan", "null", "none", "-nan", "<na>"})
#: The join's block size, which `sample_every` spaces its sample by.
BLOCK_BYTES = 128 * 1024


def sample_every(size_bytes: int, *, sample_mb: int) -> int:
    """Profile one block in this many: 1 (all) up to `sample_mb` of input, then spread evenly over the file."""
    return max(1, math.ceil(size_bytes / (sample_mb * 1024 * 1024)))


@dataclass
class StreamResult:
    profile: Profile
    rows_seen: int
    rows_profiled: int
    rows_skipped: int = 0
    columns_missing: list[str] = field(default_factory=list)
    columns_extra: list[str] = field(default_factory=list)


class Profiler:
    """The join's observer: `header` once, then `plain` or `records` for each block of rows, in file order."""

    def __init__(self, reference: Profile, *, sample_every: int = 1) -> None:
        self._profile = empty_like(reference)
        self._sample_every = sample_every
        self._blocks = 0
        self._rows_seen = 0
        self._rows_skipped = 0
        self._width = 0
        self._where: dict[str, int] = {}
        self._missing: list[str] = []
        self._extra: list[str] = []

    def header(self, columns: Sequence[str]) -> None:
        names = [column.strip() for column in columns]
        self._width = len(names)
        self._where = {name: names.index(name) for name in self._profile.columns if name in names}
        self._missing = [name for name in self._profile.columns if name not in self._where]
        self._extra = [name for name in names if name not in self._profile.columns]

    def plain(self, lines: list[bytes], values: list[bytes]) -> None:
        """A plain block's output lines (cells joined by commas, no quotes unless a cell held a comma)."""
        if not self._take(len(lines)):
            return
        width = self._width
        joined = b",".join(lines)
        cells = joined.split(b",")
        # Every line has the header's cells (a short and a long line may add up to as many: each is counted) and
        # none is quoted (a quoted cell may hold a comma): columns by slicing.
        if (
            len(cells) == width * len(lines)
            and b'"' not in joined
            and set(map(bytes.count, lines, repeat(b","))) == {width - 1}
        ):
            self._count(lambda index: cells[index::width], values, len(lines))
            return
        rows = list(csv.reader(line.decode("utf-8") for line in lines))
        self._count_records(rows, values)

    def records(self, records: list[list[str]], values: list[bytes]) -> None:
        if self._take(len(records)):
            self._count_records(records, values)

    def result(self) -> StreamResult:
        return StreamResult(
            profile=self._profile,
            rows_seen=self._rows_seen,
            rows_profiled=self._profile.rows,
            rows_skipped=self._rows_skipped,
            columns_missing=list(self._missing),
            columns_extra=list(self._extra),
        )

    def _take(self, rows: int) -> bool:
        """Whether this block is in the sample (every block counts, sampled or not)."""
        self._rows_seen += rows
        self._blocks += 1
        return rows > 0 and (self._blocks - 1) % self._sample_every == 0

    def _count_records(self, records: list[list[str]], values: list[bytes]) -> None:
        whole = [index for index, record in enumerate(records) if len(record) == self._width]
        self._rows_skipped += len(records) - len(whole)
        if not whole:
            return
        kept = [records[index] for index in whole]
        columns = list(zip(*kept, strict=True))
        kept_values = values if len(whole) == len(records) else [values[index] for index in whole]
        self._count(lambda index: [cell.encode("utf-8") for cell in columns[index]], kept_values, len(kept))

    def _count(self, column_cells: Callable[[int], list[bytes]], values: list[bytes], rows: int) -> None:
        profile = self._profile
        for name, index in self._where.items():
            profile.columns[name] = count_cells(profile.columns[name], column_cells(index))
        if profile.prediction is not None:
            profile.prediction = count_cells(profile.prediction, values)
        profile.rows += rows


def count_cells(column: Column, cells: list[bytes]) -> Column:
    """The column with these cells counted in: a new column (the counts of `column` are not changed)."""
    if isinstance(column, NumericColumn):
        return merge_numbers(column, numbers_of(column.edges, cells))
    return _count_categories(column, cells)


def numbers_of(edges: tuple[float, ...], cells: list[bytes]) -> NumericColumn:
    """A numeric column of just these cells, in the given bins."""
    values, nulls, invalid = parse_numbers(cells)
    counts = np.bincount(np.searchsorted(np.asarray(edges), values, side="right"), minlength=len(edges) + 1)
    count = int(values.size)
    mean = float(values.mean()) if count else 0.0
    return NumericColumn(
        edges=edges,
        counts=[int(number) for number in counts],
        nulls=nulls,
        invalid=invalid,
        count=count,
        mean=mean,
        m2=float(np.square(values - mean).sum()) if count else 0.0,
        min=float(values.min()) if count else None,
        max=float(values.max()) if count else None,
    )


def parse_numbers(cells: list[bytes]) -> tuple[np.ndarray, int, int]:
    """The finite numbers among the cells; how many cells were nulls, and how many were not numbers (text, or
    an infinity)."""
    present = [cell for cell in cells if cell] if b"" in cells else cells
    nulls = len(cells) - len(present)
    invalid = 0
    try:  # Python's float parses bytes faster than numpy's string casts do
        parsed = np.fromiter(map(float, present), dtype=np.float64, count=len(present))
    except ValueError:  # a cell that is not a number (or a blank one): this block cell by cell
        parsed, more_nulls, invalid = _parse_each(present)
        nulls += more_nulls
    finite = np.isfinite(parsed)
    not_a_number = np.isnan(parsed)  # "nan" parses as a number but means no value
    nulls += int(not_a_number.sum())
    invalid += int((~finite & ~not_a_number).sum())
    return parsed[finite], nulls, invalid


def _parse_each(cells: list[bytes]) -> tuple[np.ndarray, int, int]:
    """Numbers of the cells that are numbers; how many were null tokens and how many were other text."""
    numbers: list[float] = []
    nulls = invalid = 0
    for cell in cells:
        text = cell.decode("utf-8", "replace").strip()
        if not text or text.lower() in NULL_TOKENS:
            nulls += 1
            continue
        try:
            numbers.append(float(text))
        except ValueError:
            invalid += 1
    return np.array(numbers, dtype=np.float64), nulls, invalid


def _count_categories(column: CategoricalColumn, cells: list[bytes]) -> CategoricalColumn:
    position = {category: index for index, category in enumerate(column.categories)}
    counts = list(column.counts)
    other, nulls, unseen = column.other, column.nulls, set(column.unseen)
    for cell, times in Counter(cells).items():
        value = cell.decode("utf-8", "replace").strip()
        if not value or value.lower() in NULL_TOKENS:
            nulls += times
        elif (index := position.get(value)) is not None:
            counts[index] += times
        else:
            other += times
            if column.complete:
                unseen.add(value)
    return CategoricalColumn(
        categories=column.categories,
        counts=counts,
        other=other,
        nulls=nulls,
        complete=column.complete,
        unseen=tuple(sorted(unseen)[:UNSEEN_KEPT]),
    )
