"""The input read for the split: blocks of whole lines, the header record split off, and the rows of each run
of blocks counted, as the join numbers them (see the package's docstring).

The input is read in blocks of whole lines (`block_bytes`). Lines without a quote or a lone CR (nearly all
of a real file) are counted with byte operations: line breaks, minus blank lines. Lines with quotes are
counted as the csv module reads them: when quotes are few and each opens or ends a whole quoted cell (RFC
4180), by making each such cell one character; otherwise by the csv module itself. Quote parity alone would
not do: the csv module (and pandas) reads a quote inside an unquoted cell (`5'10"`) as a character. A block
with an odd count of quotes is counted with the next ones (a quoted cell most likely runs on), and when the
csv module finds a cell still open at the end, as much again is read. A part is cut only between such runs,
before one where a row starts, once it holds `part_bytes`. Memory: a few blocks, or one record longer than
that (several times over while the csv module reads it).
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections import deque
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from shared.csvfiles import is_blank_line
from shared.csvjoin.blocks import BOM, check_utf8
from shared.errors import InputInvalid

#: Bytes read as one block: about the most the split holds, beside one record longer than that.
BLOCK_BYTES = 1024 * 1024
# How many blocks a run with an odd count of quotes may take before it is counted anyway.
_MAX_PARITY_RUN = 8
_LONE_CR = re.compile(rb"\r[^\n]")
# A quoted cell of blanks: alone on its line, it makes the line blank.
_BLANK_QUOTED_CELL = re.compile(rb'"[ \t]+"')
_LF, _CR = ord("\n"), ord("\r")
#: bytes[start:end], without copying them.
_Piece = tuple[bytes, int, int]


class _Segment(NamedTuple):
    """Blocks that end outside any quoted cell: their length, and the rows that start in them."""

    length: int
    rows: int


def _blocks(chunks: Iterable[bytes], *, size: int) -> Iterator[list[_Piece]]:
    """The input in blocks, each the shortest run of whole lines that holds `size` bytes (or the input's
    end), whatever the chunks. A block is pieces of the chunks: only a line that runs from one chunk into
    the next is copied. A CRLF is never cut in two."""
    block: list[_Piece] = []
    length = 0
    unended: list[bytes] = []  # a line that began in an earlier chunk
    for chunk in chunks:
        position = 0
        if unended:
            end = (1 if chunk.startswith(b"\n") else 0) if unended[-1].endswith(b"\r") else _line_end(chunk, 0)
            if end < 0 or (end == len(chunk) and chunk.endswith(b"\r")):
                unended.append(chunk)
                continue
            line = b"".join([*unended, chunk[:end]])
            unended, position = [], end
            block.append((line, 0, len(line)))
            length += len(line)
            if length >= size:
                yield block
                block, length = [], 0
        while position < len(chunk):
            end = _line_end(chunk, position + max(0, size - length - 1))
            if end < 0 or (end == len(chunk) and chunk.endswith(b"\r")):  # the next chunk may start with an LF
                whole = max(position, chunk.rfind(b"\n", position) + 1, chunk.rfind(b"\r", position, -1) + 1)
                if whole > position:
                    block.append((chunk, position, whole))
                    length += whole - position
                if whole < len(chunk):
                    unended.append(chunk[whole:])
                break
            block.append((chunk, position, end))
            yield block
            block, length, position = [], 0, end
    if unended:
        line = b"".join(unended)
        block.append((line, 0, len(line)))
    if block:
        yield block


def _line_end(chunk: bytes, start: int) -> int:
    """The offset just past the first line break at or after `start`, -1 when there is none. A line ends
    at LF or at a CR that no LF follows (StringIO's newline="" rule, so the csv module's); a CR ending the
    chunk counts, and the caller looks at the next chunk. Searched with memchr, as fast as memory."""
    lf = chunk.find(b"\n", start)
    cr = chunk.find(b"\r", start, lf if lf >= 0 else len(chunk))
    if cr < 0 or cr + 1 == lf:
        return lf + 1 if lf >= 0 else -1
    return cr + 1


def _joined(block: list[_Piece]) -> bytes:
    if len(block) == 1 and block[0][1] == 0 and block[0][2] == len(block[0][0]):
        return block[0][0]
    return b"".join(data[start:end] for data, start, end in block)


def _split_off_header(blocks: Iterator[list[_Piece]], delimiter: str) -> tuple[bytes, int, list[_Piece]] | None:
    """The header record's bytes, the input offset of the first data row, and the block from that row to
    the end of the block it ends in; None when there is no data row. Blank lines before either are dropped."""
    source = _LineSource(map(_joined, blocks))
    header: bytes | None = None
    for record in csv.reader(source, delimiter=delimiter):
        if source.ended:  # the reader asked for more lines in the middle of a record: a quote is open
            raise _unclosed_quote()
        taken = source.take()
        if is_blank_line(record):
            continue
        if header is not None:
            rest, offset = source.rest_of_block()
            pieces = [(taken, 0, len(taken)), (rest, offset, len(rest))]
            return header, source.position - len(taken), [piece for piece in pieces if piece[1] < piece[2]]
        header = taken
    return None


class _LineSource:
    """The csv module's lines of `blocks` (split as StringIO does with newline=""), one at a time, with the
    bytes of the lines read since the last `take()`: what one record spans. Only the input's head, up to the
    first data row, is read this way."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._lines: deque[str] = deque()
        self._block = b""
        self._offset = 0  # where the next line starts in _block
        self._taken: list[_Piece] = []  # one piece a block, not a line: a record may have millions of lines
        self._new_block = False  # the next line taken starts a piece (blocks may be one cached object, b"\n")
        self.position = 0  # the input offset of the next line
        self.ended = False

    def __iter__(self) -> _LineSource:
        return self

    def __next__(self) -> str:
        while not self._lines:
            block = next(self._blocks, None)
            if block is None:
                self.ended = True
                raise StopIteration
            check_utf8(block)
            self._block, self._offset, self._new_block, text = block, 0, True, block.decode("utf-8")
            if self.position == 0 and block.startswith(BOM):  # opening the input: no text, in no part
                self._offset, self.position, text = len(BOM), len(BOM), text[1:]
            self._lines.extend(io.StringIO(text, newline=""))
        line = self._lines.popleft()
        end = self._offset + (len(line) if line.isascii() else len(line.encode("utf-8")))
        if self._taken and not self._new_block:
            self._taken[-1] = (self._block, self._taken[-1][1], end)
        else:
            self._taken.append((self._block, self._offset, end))
        self._new_block = False
        self.position += end - self._offset
        self._offset = end
        return line

    def take(self) -> bytes:
        taken, self._taken = _joined(self._taken), []
        return taken

    def rest_of_block(self) -> tuple[bytes, int]:
        return self._block, self._offset


def _segments(blocks: Iterator[list[_Piece]], delimiter: str, *, size: int) -> Iterator[_Segment]:
    """The input's blocks, from a record boundary on, in runs that end outside any quoted cell."""
    counter = _RowCounter(delimiter)
    for first in blocks:
        run, length, quotes = first, _length(first), _quotes(first)
        # An odd count of quotes: a quoted cell most likely runs on past the block (not for sure: a quote in an
        # unquoted cell is a character). Read on while it stays odd, a few blocks at most, then count once.
        while quotes % 2 and length < _MAX_PARITY_RUN * size and (following := next(blocks, None)) is not None:
            run, length, quotes = run + following, length + _length(following), quotes + _quotes(following)
        while (rows := counter.rows(run)) is None:  # a quoted cell does run on: read as much again, count again
            read = 0
            for following in blocks:
                run, read = run + following, read + _length(following)
                if read >= length:
                    break
            if not read:
                raise _unclosed_quote()
            length += read
        yield _Segment(length, rows)


def _length(block: list[_Piece]) -> int:
    return sum(end - start for _, start, end in block)


def _quotes(block: list[_Piece]) -> int:
    return sum(data.count(b'"', start, end) for data, start, end in block if data.find(b'"', start, end) >= 0)


class _RowCounter:
    """The rows that start in a block; None when a quoted cell is still open at its end."""

    def __init__(self, delimiter: str) -> None:
        self._delimiter = delimiter
        encoded = delimiter.encode("utf-8")
        # A line of spaces and tabs is blank unless one of them is the delimiter: then it holds cells.
        self._blank = b" \t".replace(encoded, b"") if len(encoded) == 1 else b" \t"
        # A blank line starts with a line break or a blank character, at a piece's start or after an LF. A
        # regular expression with a literal first byte: one pass, several times faster than an `in` per pair.
        self._blank_starts = b"\n\r" + self._blank
        self._blank_line = re.compile(b"\n[%s]" % re.escape(self._blank_starts))
        # A character that is no delimiter: the last line of the text the csv module reads (a record of its
        # own only when the text ended outside a quoted cell, as in csvfiles), and what a quoted cell is made.
        self._end = "x" if delimiter != "x" else "y"
        # A whole quoted cell: a quote where a cell starts, its text, the quote that ends the cell. (Not for a
        # delimiter of several bytes: a byte class cannot say where a cell starts.)
        cut = re.escape(encoded) + rb"\r\n"
        quoted_cell = rb'"(?<![^%s]")[^"]*+(?:""[^"]*+)*+"(?![^%s])' % (cut, cut)
        self._quoted_cell = re.compile(quoted_cell) if len(encoded) == 1 else None

    def rows(self, block: list[_Piece]) -> int | None:
        rows = self._plain(block)
        if rows is None:
            data = _joined(block)
            rows = self._rfc(data)
            if rows is None:
                rows = self._parsed(data)
        return rows

    def _rfc(self, data: bytes) -> int | None:
        """The rows of `data` when each quote in it opens or ends a whole quoted cell (RFC 4180, as nearly every
        file): each such cell made one character, the lines are plain. None when a quote is something else (in
        an unquoted cell, a cell left open), or a line may be one blank quoted cell. With more than a few
        quotes, the cells' replacing would take longer than the csv module."""
        if self._quoted_cell is None or data.count(b'"') * 12 > len(data) or _BLANK_QUOTED_CELL.search(data):
            return None
        cells_replaced = self._quoted_cell.sub(self._end.encode(), data)
        return None if b'"' in cells_replaced else self._plain([(cells_replaced, 0, len(cells_replaced))])

    def _plain(self, block: list[_Piece]) -> int | None:
        """The rows of pieces that each start and end at a line's ends; None when one holds a quote or a lone CR."""
        lines, maybe_blank = 0, False
        for data, start, end in block:
            if data.find(b'"', start, end) >= 0:
                return None
            if data.find(b"\r", start, end) >= 0 and (data[end - 1] == _CR or _LONE_CR.search(data, start, end)):
                return None  # a lone CR ends a line: left to the csv module, as in the join
            maybe_blank = (
                maybe_blank or data[start] in self._blank_starts or bool(self._blank_line.search(data, start, end))
            )
            lines += data.count(b"\n", start, end)
        if maybe_blank:
            return sum(1 for line in _joined(block).replace(b"\r\n", b"\n").split(b"\n") if line.strip(self._blank))
        data, _, end = block[-1]
        return lines + (data[end - 1] != _LF)  # the input's last line may have no line break

    def _parsed(self, data: bytes) -> int | None:
        """The rows of `data` as the csv module reads them; None when it ends inside a quoted cell. Counted in
        one C-level loop and none kept: a list of the records would cost more than parsing them."""
        check_utf8(data)
        text = data.decode("utf-8")
        text += self._end if text.endswith(("\n", "\r")) else "\n" + self._end
        records = csv.reader(io.StringIO(text, newline=""), delimiter=self._delimiter)
        numbered = zip(filter(_is_row, records), itertools.count())
        ((record, index),) = deque(numbered, maxlen=1)
        return index if record == [self._end] else None


def _is_row(record: list[str]) -> bool:
    return not is_blank_line(record)


def _unclosed_quote() -> InputInvalid:
    return InputInvalid(
        "a quoted cell is never closed: the file ends inside it, so it cannot be split at a row boundary",
        code="UnclosedQuote",
    )
