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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from shared.errors import InputInvalid

#: How much of an input is read to validate it (a ranged read).
HEAD_BYTES = 1024 * 1024
_OTHER_DELIMITERS = (";", "\t", "|", ",")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_OUTPUT_CHUNK = 256 * 1024
# The csv module refuses a field over 128 KiB with `_csv.Error`, which is no InputInvalid: validation and
# the join crashed on a file pandas (so Azure ML) reads fine. Lift the process-wide limit; 2**31 - 1 fits
# a C long everywhere, and no field can outgrow the input (MAX_INPUT_BYTES).
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))


@dataclass(frozen=True)
class CsvHead:
    """What validation learned from the head of a CSV."""

    columns: tuple[str, ...]
    rows_in_head: int
    truncated: bool


def validate_name_and_size(name: str, size: int, max_bytes: int) -> None:
    if not name.lower().endswith(".csv") or name.rsplit("/", 1)[-1].lower() == ".csv":
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

    `truncated` says the file goes on past `head`; then the record the cut went through is not judged.
    Rows are what Azure ML (pandas) reads, as in the join: see `_is_blank_line`.
    """
    records = _complete_records(_decode_head(head, truncated), delimiter, truncated)
    if not any(_has_cells(record) for record in records):
        if truncated:  # blank lines, then a record longer than the head: no complete header in sight
            raise InputInvalid(f"no complete header line in the first {len(head)} bytes", code="HeaderTooLong")
        raise InputInvalid("the file is empty (no header, no rows)", code="Empty")
    # The header is the first record that is not a blank line, even one of empty cells (`,,`): pandas
    # takes it as the header too, so skipping it would shift every row and prediction by one.
    lines = [record for record in records if not _is_blank_line(record)]
    header = tuple(cell.strip() for cell in lines[0])
    if any("\x00" in column for column in header):  # valid UTF-8, but no CSV header holds NULs
        raise InputInvalid(
            "the header holds NUL characters: is the file UTF-16 without a byte-order mark, or binary?",
            code="NotUtf8",
        )
    _check_delimiter(header, delimiter)
    _check_header(header, tuple(required_columns))
    data = lines[1:]
    # A head that ends inside the first data row (a row longer than the head) says nothing about the data.
    if not truncated and not any(_has_cells(row) for row in data):
        raise InputInvalid("the file has a header but no data rows", code="HeaderOnly")
    _check_row_widths(header, data)
    return CsvHead(header, len(data), truncated)


def _complete_records(text: str, delimiter: str, truncated: bool) -> list[list[str]]:
    """The records of `text`; when the head was cut, the last one only if it provably ended.

    Cutting at the last newline is not enough: the newline may sit inside a quoted cell. Appending a
    character tells: it starts a new record only if the last one was complete.
    """
    if not truncated:
        _check_quotes_close(text, delimiter)
    records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    if truncated and records:
        probe = text + ("x" if delimiter != "x" else "y")
        if sum(1 for _ in csv.reader(io.StringIO(probe, newline=""), delimiter=delimiter)) == len(records):
            records.pop()
    return records


def _check_quotes_close(text: str, delimiter: str) -> None:
    """The whole file was read: a quote still open at its end swallowed the rest of it (pandas refuses it)."""
    try:
        for _ in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True):
            pass
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise InputInvalid("a quoted cell is never closed: the file ends inside it", code="UnclosedQuote") from None


def _has_cells(row: list[str]) -> bool:
    return any(cell.strip() for cell in row)


def _is_blank_line(row: list[str]) -> bool:
    """What pandas.read_csv (Azure ML) skips: an empty line, or one of only spaces and tabs.

    Any other record is a row with an index in the predictions, even one of empty cells (`,,` or a
    quoted `""`): skipping it would give every later row the prediction of the row before it.
    """
    return not row or (len(row) == 1 and row[0] != "" and not row[0].strip(" \t"))


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
    duplicates = sorted(column for column, count in Counter(header).items() if count > 1)  # linear: 20,000 columns
    if duplicates:
        raise InputInvalid(f"duplicate column names: {', '.join(duplicates)}", code="DuplicateColumns")
    missing = [column for column in required if column not in header]
    if missing:
        raise InputInvalid(
            f"missing required columns: {', '.join(missing)} (REQUIRED_COLUMNS); the header has: {_listing(header)}",
            code="MissingColumns",
        )


def _listing(columns: tuple[str, ...], shown: int = 20) -> str:
    """The first columns of a header, so a 20,000-column file does not make a 20,000-column message."""
    listed = ", ".join(columns[:shown])
    return listed if len(columns) <= shown else f"{listed}, ... ({len(columns)} columns)"


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
    rows = (row for row in csv_rows(input_chunks, delimiter) if not _is_blank_line(row))
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
