"""The streamed join: the input's header plus a prediction column, then each input row with its prediction.

Linear in the input and flat in memory: the input is read in blocks of whole lines (INPUT_BLOCK bytes),
each block's rows take their predictions as one run, and each block's output is yielded as soon as it
is made. Plain blocks (no quotes; nearly every block of a real file) are joined as bytes, the rest
through the csv module; both give the same bytes (tests/unit/test_csvjoin_reference.py checks it).
Rows are numbered as in csvfiles (Azure ML's rules): blank lines are not rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from shared.csvfiles import is_blank_line
from shared.csvjoin.blocks import PlainLines, RecordReader, line_blocks
from shared.csvjoin.index import PredictionIndex
from shared.csvjoin.predictions import MergeCursor, Prediction, PredictionStream, Taken, batches_of

#: Input bytes joined at once: the output comes in chunks of about this size.
INPUT_BLOCK = 128 * 1024
_NEEDS_QUOTES = (b",", b'"', b"\n", b"\r")


@dataclass
class JoinStats:
    rows_in: int = 0
    rows_out: int = 0
    rows_missing: int = 0
    extra_predictions: int = 0
    columns: list[str] = field(default_factory=list)


class JoinObserver(Protocol):
    """Sees every row the join reads, once, in file order (the drift profiler): no second read of the input."""

    def header(self, columns: list[str]) -> None: ...

    def plain(self, lines: list[bytes], values: list[bytes]) -> None: ...

    def records(self, records: list[list[str]], values: list[bytes]) -> None: ...


class _Lookup(Protocol):
    def take(self, start: int, count: int) -> Taken: ...

    def rest(self) -> int: ...


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
    observer: JoinObserver | None = None,
) -> Iterator[bytes]:
    """Yield the output CSV: the input's header plus a prediction column, each row with its prediction.

    `predictions` is either an ascending stream (merge join: PredictionsOutOfOrder when it is not) or a
    lookup by row index (a PredictionIndex). Rows Azure ML did not score (failed mini-batches under the
    error threshold) get an empty prediction and are counted in `stats.rows_missing`. An `observer` is shown
    the header, then each block's rows (plain blocks as their output lines) with their predictions.
    """
    blocks = line_blocks(input_chunks, size=INPUT_BLOCK)
    records_of = RecordReader(blocks, delimiter=delimiter)
    plain = PlainLines(delimiter)
    output = _Output()
    lookup: _Lookup | None = None  # predictions are read only once the input has a header
    for block in blocks:
        if lookup is not None and (lines := plain.lines(block)) is not None:
            values = _take(lookup, stats, len(lines)).values
            if observer is not None:
                observer.plain(lines, values)
            yield output.plain(lines, values)
            continue
        records = [record for record in records_of.records(block) if not is_blank_line(record)]
        if lookup is None:
            if not records:
                continue  # blank lines before the header
            header = records.pop(0)
            stats.columns = [*header, prediction_column(header)]
            output.write(stats.columns)
            lookup = _lookup(predictions)
            if observer is not None:
                observer.header(header)
        values = _take(lookup, stats, len(records)).values
        if observer is not None:
            observer.records(records, values)
        yield output.records(records, values)
    if lookup is not None:
        stats.extra_predictions += lookup.rest()


def _take(lookup: _Lookup, stats: JoinStats, count: int) -> Taken:
    taken = lookup.take(stats.rows_in, count)
    stats.rows_in += count
    stats.rows_missing += taken.missing
    stats.rows_out += count - taken.missing
    return taken


def _lookup(predictions: Iterable[Prediction] | Callable[[int], str | None]) -> _Lookup:
    if isinstance(predictions, PredictionIndex):
        return predictions
    if callable(predictions):
        return _RowByRow(predictions)
    if isinstance(predictions, PredictionStream):
        return MergeCursor(predictions.batches(), lower_row_ahead=predictions.lower_row_ahead)
    return MergeCursor(batches_of(predictions))


class _RowByRow:
    """Any other lookup by row index, asked one row at a time."""

    def __init__(self, lookup: Callable[[int], str | None]) -> None:
        self._lookup = lookup

    def take(self, start: int, count: int) -> Taken:
        found = [self._lookup(row) for row in range(start, start + count)]
        return Taken([b"" if value is None else value.encode("utf-8") for value in found], found.count(None))

    def rest(self) -> int:
        return 0


class _Output:
    """Output rows as the csv module writes them: minimal quoting, LF line endings."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")
        # Python < 3.12 leaves a cell holding a lone \r unquoted when the line terminator is \n: such a
        # row would come back split in two. Rows with a \r in a cell are written fully quoted.
        self._quoted = csv.writer(self._buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def write(self, cells: list[str]) -> None:
        (self._quoted if "\r" in "".join(cells) else self._writer).writerow(cells)

    def records(self, records: list[list[str]], values: list[bytes]) -> bytes:
        for record, value in zip(records, values, strict=True):
            self.write([*record, value.decode("utf-8")])
        return self._flush()

    def plain(self, lines: list[bytes], values: list[bytes]) -> bytes:
        """Plain lines are output lines already: each gets a comma and its prediction."""
        if not lines:
            return b""
        everything = b"".join(values)
        if not any(special in everything for special in _NEEDS_QUOTES):
            # line, comma, value, LF for every row: list slice assignments, then one join
            parts = [b","] * (4 * len(lines))
            parts[0::4] = lines
            parts[2::4] = values
            parts[3::4] = [b"\n"] * len(lines)
            return b"".join(parts)
        return b"".join(self._plain_line(line, value) for line, value in zip(lines, values, strict=True))

    def _plain_line(self, line: bytes, value: bytes) -> bytes:
        if b"\r" in value:  # the whole row quoted, as `write` does
            self.write([*next(csv.reader([line.decode("utf-8")])), value.decode("utf-8")])
            return self._flush()
        if any(special in value for special in _NEEDS_QUOTES):
            value = b'"' + value.replace(b'"', b'""') + b'"'
        return line + b"," + value + b"\n"

    def _flush(self) -> bytes:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text.encode("utf-8")
