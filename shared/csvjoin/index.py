"""Predictions in any row order, spilled to a temporary file in buckets of consecutive rows.

Azure ML writes a job's mini-batches in the order they finish, so predictions can come out of row order.
They are sorted into buckets of BUCKET_ROWS consecutive row indices, written to one temporary file as
they are read (memory holds at most PENDING_ROWS of them), and the join loads one bucket at a time as
its rows come up: each prediction is written once and read once, in a bounded working set, whatever the
order. (The SQLite index this replaces cost a B-tree insert and a query per row.)
"""

from __future__ import annotations

import bisect
import contextlib
import marshal
import operator
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

from shared.csvjoin.predictions import Batch, Prediction, Taken, batches_of

#: Rows per bucket: a loaded bucket is a list this long (with its values, a few MiB).
BUCKET_ROWS = 1 << 16
#: Predictions held in memory before the pending buckets are written out.
PENDING_ROWS = 1 << 16
# Far beyond any input's rows: such indices are never looked up, so they are not kept.
_ROW_LIMIT = 1 << 48


class PredictionIndex:
    """Predictions keyed by row: callable for one row, `take` for a run of rows; `close` removes the file.

    When a row has several predictions the first one in the file wins, as in the merge join.
    """

    def __init__(self, predictions: Iterable[Prediction]) -> None:
        handle, self._path = tempfile.mkstemp(prefix="dropscore-predictions-", suffix=".buckets")
        self._file = os.fdopen(handle, "w+b")
        self._extents: dict[int, list[tuple[int, int]]] = defaultdict(list)  # bucket -> (offset, length)
        self._loaded_bucket = -1
        self._loaded: list[bytes | None] = []
        try:
            self._spill(batches_of(predictions))
        except BaseException:
            self.close()
            raise

    def __call__(self, row: int) -> str | None:
        if not 0 <= row < _ROW_LIMIT:
            return None
        bucket, offset = divmod(row, BUCKET_ROWS)
        value = self._bucket(bucket)[offset]
        return None if value is None else value.decode("utf-8")

    def take(self, start: int, count: int) -> Taken:
        values: list[bytes] = []
        missing = 0
        row, end = start, start + count
        while row < end:
            bucket, offset = divmod(row, BUCKET_ROWS)
            run = min(end - row, BUCKET_ROWS - offset)
            found = self._bucket(bucket)[offset : offset + run]
            absent = found.count(None)
            if absent:
                missing += absent
                found = [b"" if value is None else value for value in found]
            values += found  # type: ignore[arg-type]  # no None left
            row += run
        return Taken(values, missing)

    def rest(self) -> int:
        """The index join does not count predictions for rows the input does not have."""
        return 0

    def close(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)

    def _spill(self, batches: Iterable[Batch]) -> None:
        pending: dict[int, Batch] = {}
        held = 0
        for rows, values in batches:
            for bucket, kept_rows, kept_values in _by_bucket(rows, values):
                pending_rows, pending_values = pending.setdefault(bucket, ([], []))
                pending_rows += kept_rows
                pending_values += kept_values
            held += len(rows)
            if held >= PENDING_ROWS:
                self._write(pending)
                pending, held = {}, 0
        self._write(pending)

    def _write(self, pending: dict[int, Batch]) -> None:
        self._file.seek(0, os.SEEK_END)
        for bucket, (rows, values) in pending.items():
            # marshal, the fastest dump and load of lists of ints and bytes (this process alone reads the file);
            # format 2 does not track shared objects, which costs more than the dump itself here
            data = marshal.dumps((rows, values), 2)
            self._extents[bucket].append((self._file.tell(), len(data)))
            self._file.write(data)

    def _bucket(self, bucket: int) -> list[bytes | None]:
        if bucket != self._loaded_bucket:
            self._loaded = self._read(bucket)
            self._loaded_bucket = bucket
        return self._loaded

    def _read(self, bucket: int) -> list[bytes | None]:
        table: list[bytes | None] = [None] * BUCKET_ROWS
        base = bucket * BUCKET_ROWS
        self._file.flush()
        for offset, length in self._extents.get(bucket, ()):
            self._file.seek(offset)
            rows, values = marshal.loads(self._file.read(length))  # noqa: S302 - the file this object wrote
            first, count = rows[0] - base, len(rows)
            consecutive = rows == list(range(rows[0], rows[0] + count))
            if consecutive and table[first : first + count].count(None) == count:  # one slice assignment
                table[first : first + count] = values
            else:
                for row, value in zip(rows, values, strict=True):
                    if table[row - base] is None:
                        table[row - base] = value
        return table


def _by_bucket(rows: Sequence[int], values: list[bytes]) -> Iterator[tuple[int, Sequence[int], list[bytes]]]:
    """A batch's predictions, bucket by bucket. A batch in row order (each of Azure ML's mini-batches is)
    is cut at the bucket boundaries with slices; only a shuffled one is sorted out row by row."""
    if not rows:
        return
    if all(map(operator.le, rows, islice(rows, 1, None))):
        start = bisect.bisect_left(rows, 0)  # negative indices are no input's rows
        while start < len(rows) and rows[start] < _ROW_LIMIT:
            bucket = rows[start] // BUCKET_ROWS
            end = bisect.bisect_left(rows, (bucket + 1) * BUCKET_ROWS, lo=start)
            yield bucket, rows[start:end], values[start:end]
            start = end
        return
    buckets: dict[int, tuple[list[int], list[bytes]]] = {}
    for row, value in zip(rows, values, strict=True):
        if 0 <= row < _ROW_LIMIT:
            kept_rows, kept_values = buckets.setdefault(row // BUCKET_ROWS, ([], []))
            kept_rows.append(row)
            kept_values.append(value)
    for bucket, (kept_rows, kept_values) in buckets.items():
        yield bucket, kept_rows, kept_values
