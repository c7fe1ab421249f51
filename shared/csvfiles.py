"""CSV validation: check an input's head (a bounded ranged read) before any compute is spent.

The row rules here (what a blank line is) are Azure ML's, and the join in shared/csvjoin/ follows them too.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from shared.errors import InputInvalid

#: How much of an input is read to validate it (a ranged read).
HEAD_BYTES = 1024 * 1024
_OTHER_DELIMITERS = (";", "\t", "|", ",")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
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
    columns_source: str = "REQUIRED_COLUMNS",
) -> CsvHead:
    """Check the first bytes of a CSV: encoding, header, delimiter, required columns, data rows.

    `truncated` says the file goes on past `head`; then the record the cut went through is not judged.
    Rows are what Azure ML (pandas) reads, as in the join: see `is_blank_line`.
    """
    records = _complete_records(_decode_head(head, truncated), delimiter, truncated)
    if not any(_has_cells(record) for record in records):
        if truncated:  # blank lines, then a record longer than the head: no complete header in sight
            raise InputInvalid(f"no complete header line in the first {len(head)} bytes", code="HeaderTooLong")
        raise InputInvalid("the file is empty (no header, no rows)", code="Empty")
    # The header is the first record that is not a blank line, even one of empty cells (`,,`): pandas
    # takes it as the header too, so skipping it would shift every row and prediction by one.
    lines = [record for record in records if not is_blank_line(record)]
    header = tuple(cell.strip() for cell in lines[0])
    if any("\x00" in column for column in header):  # valid UTF-8, but no CSV header holds NULs
        raise InputInvalid(
            "the header holds NUL characters: is the file UTF-16 without a byte-order mark, or binary?",
            code="NotUtf8",
        )
    _check_delimiter(header, delimiter)
    _check_header(header, tuple(required_columns), columns_source)
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


def is_blank_line(row: list[str]) -> bool:
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


def _check_header(header: tuple[str, ...], required: tuple[str, ...], source: str) -> None:
    if any(not column for column in header):
        position = next(index for index, column in enumerate(header) if not column) + 1
        raise InputInvalid(f"column {position} of the header has no name", code="EmptyColumnName")
    duplicates = sorted(column for column, count in Counter(header).items() if count > 1)  # linear: 20,000 columns
    if duplicates:
        raise InputInvalid(f"duplicate column names: {', '.join(duplicates)}", code="DuplicateColumns")
    missing = [column for column in required if column not in header]
    if missing:
        raise InputInvalid(
            f"missing required columns: {', '.join(missing)} ({source}); the header has: {_listing(header)}",
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
