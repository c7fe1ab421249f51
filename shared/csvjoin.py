"""The streamed join: each input row with its prediction, without holding either file in memory.

The join walks the input and Azure ML's predictions side by side and yields output chunks; predictions
out of row order go through an on-disk index instead. Rows are numbered as in csvfiles (Azure ML's rules).
"""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from shared.csvfiles import is_blank_line
from shared.errors import InputInvalid

_OUTPUT_CHUNK = 256 * 1024


class ChunkStream(io.RawIOBase):
    """A read-only binary stream over an iterator of byte chunks (e.g. a blob download)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def csv_rows(chunks: Iterable[bytes], delimiter: str = ",") -> Iterator[list[str]]:
    """Rows of a UTF-8 CSV (BOM allowed) read from byte chunks, without loading the whole file."""
    text = io.TextIOWrapper(io.BufferedReader(ChunkStream(chunks)), encoding="utf-8-sig", newline="")
    try:
        yield from csv.reader(text, delimiter=delimiter)
    except UnicodeDecodeError:
        # Validation reads only the first 1 MiB: a bad byte further on is found here, during the join.
        raise InputInvalid("the file is not valid UTF-8 past its first MiB", code="NotUtf8") from None


@dataclass(frozen=True)
class Prediction:
    row: int
    value: str


def parse_predictions(chunks: Iterable[bytes]) -> Iterator[Prediction]:
    """Azure ML MLflow output: no header, `row,prediction,file_name` per line.

    A prediction that itself holds the delimiter (list outputs) is kept whole: the first field
    is the row and the last the file name, everything between is the prediction.
    """
    for fields in csv_rows(chunks):
        if not fields:
            continue
        if len(fields) < 3:
            raise InputInvalid(
                f"the Azure ML output line {fields!r} is not `row,prediction,file_name`",
                code="BadPredictions",
            )
        try:
            row = int(fields[0])
        except ValueError:
            raise InputInvalid(
                f"the Azure ML output row index {fields[0]!r} is not an integer", code="BadPredictions"
            ) from None
        yield Prediction(row, ",".join(fields[1:-1]))


class PredictionsOutOfOrder(Exception):
    """The merge join met a row index lower than the one before; use the indexed join."""


@dataclass
class JoinStats:
    rows_in: int = 0
    rows_out: int = 0
    rows_missing: int = 0
    extra_predictions: int = 0
    columns: list[str] = field(default_factory=list)


def prediction_column(header: list[str]) -> str:
    """`prediction`, or a free variant when the input already has such a column."""
    name, number = "prediction", 1
    taken = {column.strip() for column in header}  # ` prediction` is the same column to validate_head
    while name in taken:
        number += 1
        name = f"prediction_{number}"
    return name


def join_predictions(
    input_chunks: Iterable[bytes],
    predictions: Iterable[Prediction] | Callable[[int], str | None],
    stats: JoinStats,
    *,
    delimiter: str = ",",
) -> Iterator[bytes]:
    """Yield the output CSV: the input's header plus a prediction column, each row with its prediction.

    `predictions` is either an ascending stream (merge join) or a lookup by row index.
    Rows Azure ML did not score (failed mini-batches under the error threshold) get an empty
    prediction and are counted in `stats.rows_missing`.
    """
    # Blank lines (before the header too) are not rows; every other record is, as Azure ML numbers them.
    rows = (row for row in csv_rows(input_chunks, delimiter) if not is_blank_line(row))
    header = next(rows, None)
    if header is None:
        return
    lookup: Callable[[int], str | None] = (
        predictions if callable(predictions) else _merge_lookup(iter(predictions), stats)
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    # Python < 3.12 leaves a cell holding a lone \r unquoted when the line terminator is \n: such a
    # row would come back split in two. Rows with a \r in a cell are written fully quoted.
    quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    stats.columns = [*header, prediction_column(header)]
    (quoted if "\r" in "".join(stats.columns) else writer).writerow(stats.columns)
    for row in rows:
        value = lookup(stats.rows_in)
        stats.rows_in += 1
        if value is None:
            stats.rows_missing += 1
            value = ""
        else:
            stats.rows_out += 1
        out = [*row, value]
        (quoted if "\r" in "".join(out) else writer).writerow(out)
        if buffer.tell() >= _OUTPUT_CHUNK:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    if isinstance(lookup, _merge_lookup):
        stats.extra_predictions += sum(1 for _ in lookup.rest())
    yield buffer.getvalue().encode("utf-8")


class _merge_lookup:  # noqa: N801 - used like a function
    """Walk an ascending prediction stream alongside the input rows."""

    def __init__(self, stream: Iterator[Prediction], stats: JoinStats) -> None:
        self._stream = stream
        self._stats = stats
        self._next: Prediction | None = next(stream, None)
        self._last = -1

    def __call__(self, row: int) -> str | None:
        while self._next is not None and self._next.row < row:
            self._advance()
        if self._next is not None and self._next.row == row:
            value = self._next.value
            self._advance()
            return value
        return None

    def _advance(self) -> None:
        current = self._next
        self._next = next(self._stream, None)
        if current is not None and self._next is not None and self._next.row < current.row:
            raise PredictionsOutOfOrder(f"row {self._next.row} after row {current.row}")

    def rest(self) -> Iterator[Prediction]:
        while self._next is not None:
            yield self._next
            self._advance()


class PredictionIndex:
    """Predictions keyed by row in a temporary SQLite file: bounded memory for any order."""

    def __init__(self, predictions: Iterable[Prediction]) -> None:
        handle, self._path = tempfile.mkstemp(prefix="dropscore-predictions-", suffix=".sqlite")
        os.close(handle)
        self._db = sqlite3.connect(self._path)
        self._db.execute("create table p (row integer primary key, value text)")
        self._db.executemany("insert or replace into p values (?, ?)", ((p.row, p.value) for p in predictions))
        self._db.commit()

    def __call__(self, row: int) -> str | None:
        found = self._db.execute("select value from p where row = ?", (row,)).fetchone()
        return None if found is None else str(found[0])

    def close(self) -> None:
        self._db.close()
        os.unlink(self._path)
