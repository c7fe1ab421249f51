"""Streamed CSV work: validate an input's head before compute is spent, join predictions to rows.

Nothing here holds a whole file in memory: validation looks at a bounded head, and the
join walks the input and the predictions side by side, yielding output chunks.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from shared.errors import InputInvalid

#: How much of an input is read to validate it (a ranged read).
HEAD_BYTES = 1024 * 1024
_OTHER_DELIMITERS = (";", "\t", "|", ",")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_OUTPUT_CHUNK = 256 * 1024


@dataclass(frozen=True)
class CsvHead:
    """What validation learned from the head of a CSV."""

    columns: tuple[str, ...]
    rows_in_head: int
    truncated: bool


def validate_name_and_size(name: str, size: int, max_bytes: int) -> None:
    if not name.lower().endswith(".csv"):
        raise InputInvalid(f"'{name}' is not a .csv file; only .csv inputs are scored", code="NotCsv")
    if size > max_bytes:
        raise InputInvalid(
            f"the file is {size} bytes, over the {max_bytes}-byte limit (MAX_INPUT_BYTES); split it",
            code="TooLarge",
        )


def validate_head(
    head: bytes,
    *,
    truncated: bool,
    delimiter: str = ",",
    required_columns: Iterable[str] = (),
) -> CsvHead:
    """Check the first bytes of a CSV: encoding, header, delimiter, required columns, data rows.

    `truncated` says the file goes on past `head`; then the last partial line is not judged.
    """
    text = _decode_head(head, truncated)
    if truncated:
        # Judge complete lines only; the row cut by the head limit (maybe a quoted multi-line one) is dropped.
        cut = text.rfind("\n")
        if cut < 0:
            raise InputInvalid(f"the header line is longer than {len(head)} bytes", code="HeaderTooLong")
        text = text[: cut + 1]
    rows = [row for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if _has_cells(row)]
    if truncated and len(rows) > 2:
        rows = rows[:-1]
    if not rows:
        raise InputInvalid("the file is empty (no header, no rows)", code="Empty")
    header = tuple(cell.strip() for cell in rows[0])
    _check_delimiter(header, delimiter)
    _check_header(header, tuple(required_columns))
    data = rows[1:]
    if not data:
        raise InputInvalid("the file has a header but no data rows", code="HeaderOnly")
    _check_row_widths(header, data)
    return CsvHead(header, len(data), truncated)


def _has_cells(row: list[str]) -> bool:
    return any(cell.strip() for cell in row)


def _decode_head(head: bytes, truncated: bool) -> str:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    try:
        text = decoder.decode(head, final=not truncated)
    except UnicodeDecodeError as exc:
        raise InputInvalid(
            f"the file is not UTF-8 (invalid byte 0x{head[exc.start]:02x} at offset {exc.start}); save it as UTF-8",
            code="NotUtf8",
        ) from None
    return text.removeprefix("\ufeff")


def _check_delimiter(header: tuple[str, ...], delimiter: str) -> None:
    if len(header) > 1:
        return
    for other in _OTHER_DELIMITERS:
        if other != delimiter and other in header[0]:
            raise InputInvalid(
                f"the header has one column but contains the {_DELIMITER_NAMES[other]} character; "
                f"the file looks {_DELIMITER_NAMES[other]}-separated, expected "
                f"{_DELIMITER_NAMES.get(delimiter, repr(delimiter))}-separated (CSV_DELIMITER)",
                code="WrongDelimiter",
            )


def _check_header(header: tuple[str, ...], required: tuple[str, ...]) -> None:
    if any(not column for column in header):
        position = next(index for index, column in enumerate(header) if not column) + 1
        raise InputInvalid(f"column {position} of the header has no name", code="EmptyColumnName")
    duplicates = sorted({column for column in header if header.count(column) > 1})
    if duplicates:
        raise InputInvalid(f"duplicate column names: {', '.join(duplicates)}", code="DuplicateColumns")
    missing = [column for column in required if column not in header]
    if missing:
        raise InputInvalid(
            f"missing required columns: {', '.join(missing)} (REQUIRED_COLUMNS); the header has: {', '.join(header)}",
            code="MissingColumns",
        )


def _check_row_widths(header: tuple[str, ...], data: list[list[str]]) -> None:
    for number, row in enumerate(data, start=2):
        if len(row) != len(header):
            raise InputInvalid(
                f"data row {number - 1} has {len(row)} fields, the header has {len(header)}",
                code="RaggedRows",
            )


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
    yield from csv.reader(text, delimiter=delimiter)


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
    while name in header:
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
    rows = csv_rows(input_chunks, delimiter)
    header = next(rows, None)
    if header is None:
        return
    lookup: Callable[[int], str | None] = (
        predictions if callable(predictions) else _merge_lookup(iter(predictions), stats)
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    stats.columns = [*header, prediction_column(header)]
    writer.writerow(stats.columns)
    for row in rows:
        if not _has_cells(row):
            continue
        value = lookup(stats.rows_in)
        stats.rows_in += 1
        if value is None:
            stats.rows_missing += 1
            value = ""
        else:
            stats.rows_out += 1
        writer.writerow([*row, value])
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
