"""Azure ML's predictions file, read in batches, and the merge that hands each input row its prediction.

The file has no header: `row,prediction,file_name` per line. A batch is two lists, the row indices and
the predictions as UTF-8 bytes, so the join takes thousands of rows at once with list operations.
"""

from __future__ import annotations

import bisect
import operator
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice

from shared.csvjoin.blocks import RecordReader, check_utf8, line_blocks
from shared.errors import InputInvalid

#: Rows and their predictions (UTF-8), in file order.
Batch = tuple[list[int], list[bytes]]
#: How much of the predictions file is parsed at once.
PREDICTIONS_BLOCK = 256 * 1024
#: How far the merge reads ahead when rows have no prediction, looking for a sign that the file is out of
#: order (Azure ML appends mini-batches as they finish): found early, the join switches to the index before
#: it has joined most of the input for nothing.
LOOKAHEAD_BYTES = 4 * 1024 * 1024
# Every byte but the comma and LF, for the check that each line of a block has exactly three fields.
_NOT_COMMA_OR_LF = bytes(byte for byte in range(256) if byte not in b",\n")
_EMPTY_LINES = re.compile(rb"\n\n+")


@dataclass(frozen=True)
class Prediction:
    row: int
    value: str


class PredictionsOutOfOrder(Exception):
    """The merge join met a row index lower than the one before; use the indexed join."""


class PredictionStream:
    """The predictions of a file's byte chunks, lazily: iterate for `Prediction`s, or take `batches()`.

    A prediction that itself holds the delimiter (list outputs) is kept whole: the first field
    is the row and the last the file name, everything between is the prediction.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self._blocks: Iterator[bytes] = iter(())
        self._ahead: deque[bytes] = deque()  # blocks read by `lower_row_ahead`, not parsed yet
        self._ahead_bytes = 0

    def __iter__(self) -> Iterator[Prediction]:
        for rows, values in self.batches():
            for row, value in zip(rows, values, strict=True):
                yield Prediction(row, value.decode("utf-8"))

    def batches(self) -> Iterator[Batch]:
        self._blocks = line_blocks(self._chunks, size=PREDICTIONS_BLOCK)
        blocks = self._next_blocks()
        reader = RecordReader(blocks, delimiter=",")
        for block in blocks:
            yield _plain_batch(block) or _batch_of_records(reader.records(block))

    def lower_row_ahead(self, last_row: int) -> bool:
        """Whether the next LOOKAHEAD_BYTES of the file hold a block that starts with a row index lower than
        `last_row`, or than the block before it: the file is out of row order. A hint read from each block's
        first line (a block may start inside a quoted cell), so a wrong answer costs time, never rows. The
        blocks read stay for `batches`."""
        lowest_next = last_row
        for block in chain(self._ahead, self._read_ahead()):
            first = self._first_row(block)
            if first is not None:
                if first < lowest_next:
                    return True
                lowest_next = first
        return False

    def _read_ahead(self) -> Iterator[bytes]:
        while self._ahead_bytes < LOOKAHEAD_BYTES:
            block = next(self._blocks, None)
            if block is None:
                return
            self._ahead.append(block)
            self._ahead_bytes += len(block)
            yield block

    def _first_row(self, block: bytes) -> int | None:
        """The row index of the block's first line, or None when it does not start with one."""
        return _first_row(block)

    def _next_blocks(self) -> Iterator[bytes]:
        while True:
            while self._ahead:
                block = self._ahead.popleft()
                self._ahead_bytes -= len(block)
                yield block
            following = next(self._blocks, None)
            if following is None:
                return
            yield following


def _first_row(block: bytes) -> int | None:
    comma = block.find(b",", 0, 24)
    try:
        return int(block[:comma]) if comma > 0 else None
    except ValueError:
        return None


def parse_predictions(chunks: Iterable[bytes]) -> PredictionStream:
    """Azure ML MLflow output: no header, `row,prediction,file_name` per line."""
    return PredictionStream(chunks)


def _plain_batch(block: bytes) -> Batch | None:
    """The batch of a plain block whose lines all have exactly three fields, or None for the csv module
    to read (and to raise on, when a line is not `row,prediction,file_name`)."""
    fields = plain_fields(block)
    if fields is None:
        return None
    try:
        rows = list(map(int, islice(fields, 0, len(fields) - 1, 3)))
    except ValueError:  # int() of bytes takes fewer spellings than int() of str: let the csv path judge
        return None
    return rows, fields[1::3]


def plain_fields(block: bytes) -> list[bytes] | None:
    """The fields of a plain block whose lines all have exactly three, line after line (`fields[0::3]`
    rows, `fields[1::3]` predictions, `fields[2::3]` file names, and one empty field last), or None for the
    csv module to read."""
    if b'"' in block:
        return None
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n")
        if b"\r" in block:
            return None
    check_utf8(block)
    if block and not block.endswith(b"\n"):
        block += b"\n"  # the file's last line
    skeleton = block.translate(None, _NOT_COMMA_OR_LF)
    if b"\n\n" in skeleton or skeleton.startswith(b"\n"):  # empty lines are skipped, as the csv path does
        block = _EMPTY_LINES.sub(b"\n", block).lstrip(b"\n")
        skeleton = block.translate(None, _NOT_COMMA_OR_LF)
    if skeleton != b",,\n" * (len(skeleton) // 3):  # every line `row,prediction,file_name`
        return None
    return block.replace(b"\n", b",").split(b",")


def _batch_of_records(records: list[list[str]]) -> Batch:
    rows, values, _ = records_batch(records)
    return rows, values


def records_batch(records: list[list[str]]) -> tuple[list[int], list[bytes], list[str]]:
    """The rows, predictions and file names of the csv module's records (a list prediction spans fields)."""
    rows: list[int] = []
    values: list[bytes] = []
    names: list[str] = []
    for fields in records:
        if not fields:
            continue
        if len(fields) < 3:
            raise InputInvalid(
                f"the Azure ML output line {fields!r} is not `row,prediction,file_name`",
                code="BadPredictions",
            )
        try:
            rows.append(int(fields[0]))
        except ValueError:
            raise InputInvalid(
                f"the Azure ML output row index {fields[0]!r} is not an integer", code="BadPredictions"
            ) from None
        values.append(",".join(fields[1:-1]).encode("utf-8"))
        names.append(fields[-1])
    return rows, values, names


def batches_of(predictions: Iterable[Prediction], *, size: int = 4096) -> Iterator[Batch]:
    """Batches of any iterable of predictions (a stream is read in its own batches)."""
    if isinstance(predictions, PredictionStream):
        yield from predictions.batches()
        return
    iterator = iter(predictions)
    while chunk := list(islice(iterator, size)):
        yield [p.row for p in chunk], [p.value.encode("utf-8") for p in chunk]


@dataclass(slots=True)
class Taken:
    """The predictions of a run of rows: one UTF-8 value per row, empty where a row has none."""

    values: list[bytes]
    missing: int


class MergeCursor:
    """Walks predictions in ascending row order alongside the input rows (the merge join).

    A row takes the first prediction with its index; predictions for rows before it are passed over; a
    row index lower than the one before raises PredictionsOutOfOrder. Where the predictions are
    consecutive (Azure ML's output for one file) a whole run of rows is one list slice.
    """

    def __init__(self, batches: Iterator[Batch], *, lower_row_ahead: Callable[[int], bool] | None = None) -> None:
        self._batches = batches
        self._lower_row_ahead = lower_row_ahead
        self._rows: list[int] = []
        self._values: list[bytes] = []
        self._position = 0
        self._consecutive = False  # the current batch strictly ascends, so a run's ends prove the run
        self._last_row: int | None = None

    def take(self, start: int, count: int) -> Taken:
        values: list[bytes] = []
        missing = 0
        row, end = start, start + count
        while row < end:
            if self._position == len(self._rows) and not self._load():
                return Taken(values + [b""] * (end - row), missing + end - row)
            rows, position = self._rows, self._position
            found = rows[position]
            if found < row:  # predictions for rows already joined (a repeated index): passed over
                self._position = bisect.bisect_left(rows, row, lo=position)
            elif found > row:  # no prediction for the rows up to `found`: Azure ML did not score them...
                if self._lower_row_ahead is not None and self._lower_row_ahead(rows[-1]):
                    raise PredictionsOutOfOrder(f"rows after {rows[-1]} come later in the file")  # ...or not yet
                gap = min(end, found) - row
                values += [b""] * gap
                missing += gap
                row += gap
            else:
                run = self._run(row, min(end - row, len(rows) - position))
                values += self._values[position : position + run]
                self._position += run
                row += run
        return Taken(values, missing)

    def _run(self, row: int, most: int) -> int:
        """How many rows from `row` (whose prediction is next) have their predictions next, in order."""
        if not self._consecutive:
            return 1
        rows, position = self._rows, self._position
        if rows[position + most - 1] == row + most - 1:
            return most
        # rows[position + k] - k - row is 0 up to the first gap and positive after it
        return bisect.bisect_left(range(most), 1, key=lambda k: rows[position + k] - k - row)

    def rest(self) -> int:
        """How many predictions are left once every row was taken (rows the input does not have)."""
        left = len(self._rows) - self._position
        while self._load():
            left += len(self._rows)
        return left

    def _load(self) -> bool:
        """The next non-empty batch, checked for order; False at the end of the predictions."""
        for rows, values in self._batches:
            if not rows:
                continue
            self._consecutive = all(map(operator.lt, rows, islice(rows, 1, None)))
            in_order = self._consecutive or all(map(operator.le, rows, islice(rows, 1, None)))
            if not in_order or (self._last_row is not None and rows[0] < self._last_row):
                raise PredictionsOutOfOrder(f"a row index lower than the one before it, near row {rows[0]}")
            self._rows, self._values, self._position = rows, values, 0
            self._last_row = rows[-1]
            return True
        self._rows, self._values, self._position = [], [], 0
        return False
