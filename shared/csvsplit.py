"""A CSV input split into parts at row boundaries, for sharding: each part is the input's header line plus a
contiguous run of its records, so Azure ML scores the parts on several workers at once and the join numbers
a part's predictions in the whole input (the part's first row plus the row within the part).

Rows are numbered as the join numbers them (csvfiles' rules, pandas'): the records after the header; a blank
line (empty, or only spaces and tabs) is no row; a quoted cell may hold LF, CR or CRLF; a CR that no LF
follows ends a line (old Mac files). Every byte is kept as the input has it (CRLF stays CRLF), except that a
BOM, the blank lines before the header and those between the header and the first row are left out (they
hold no row). An input without data rows (empty, header only, ...) gives no parts and `infos` == []; blank
lines after the last row stay in the last part, so every part has rows.

The input is read in blocks of whole lines (`block_bytes`). Lines without a quote or a lone CR (nearly all
of a real file) are counted with byte operations: line breaks, minus blank lines. Lines with quotes are
counted as the csv module reads them: when quotes are few and each opens or ends a whole quoted cell (RFC
4180), by making each such cell one character; otherwise by the csv module itself. Quote parity alone would
not do: the csv module (and pandas) reads a quote inside an unquoted cell (`5'10"`) as a character. A block
with an odd count of quotes is counted with the next ones (a quoted cell most likely runs on), and when the
csv module finds a cell still open at the end, as much again is read. A part is cut only between such runs,
before one where a row starts, once it holds `part_bytes`. Memory: a few blocks, or one record longer than
that (several times over while the csv module reads it).

Block ends depend on the bytes only, never on the chunks they came in, so an input always splits into the
same parts. The blocks are pieces of the chunks, and a part hands on the chunks themselves: only a chunk a
part boundary falls in, a line that runs from one chunk into the next, and lines with quotes are copied.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class PartInfo:
    index: int
    #: The whole input's index of the part's first data row (0-based, as the join numbers rows).
    first_row: int
    rows: int
    #: Bytes in the part file, its header line included.
    size: int


class _Segment(NamedTuple):
    """Blocks that end outside any quoted cell: their length, and the rows that start in them."""

    length: int
    rows: int


class _Split(NamedTuple):
    """What every part of one input reads from."""

    header: bytes
    segments: Iterator[_Segment]
    output: _Output
    part_bytes: int


class Part:
    """One part file: the header line, then whole records. Its `info` is known once `chunks()` is read out."""

    def __init__(self, index: int, *, first_row: int, start: int, opening: _Segment, split: _Split) -> None:
        self.index = index
        self._first_row = first_row
        self._start = start  # the input offset of the part's first record
        self._opening: _Segment | None = opening
        self._split = split
        self._info: PartInfo | None = None
        self._next_opening: _Segment | None = None

    @property
    def info(self) -> PartInfo:
        if self._info is None:
            raise RuntimeError(f"part {self.index}'s info is known once its chunks() have been read to the end")
        return self._info

    def chunks(self) -> Iterator[bytes]:
        """The header line, then the input's chunks (cut where the part starts or ends). Read once, to the end."""
        segment, self._opening = self._opening, None
        if segment is None:
            raise RuntimeError(f"part {self.index}'s chunks() can be read only once")
        return self._chunks(segment)

    def _chunks(self, segment: _Segment) -> Iterator[bytes]:
        header, segments, output, part_bytes = self._split
        yield header
        end, rows = self._start, 0
        while True:
            end += segment.length
            rows += segment.rows
            yield from output.until(end, whole_chunks_only=True)
            following = next(segments, None)
            if following is None:
                break
            if len(header) + end - self._start >= part_bytes and following.rows:
                self._next_opening = following
                break
            segment = following
        yield from output.until(end, whole_chunks_only=False)
        self._info = PartInfo(self.index, self._first_row, rows, len(header) + end - self._start)


class CsvSplitter:
    """`parts()` of the CSV in `chunks`, each about `part_bytes`; `infos` once they have all been read.

    Each part's chunks() must be read to the end before the next part is taken. Reading the parts raises
    InputInvalid: UnclosedQuote, or NotUtf8 in text the csv module reads.
    """

    def __init__(
        self, chunks: Iterable[bytes], *, part_bytes: int, delimiter: str = ",", block_bytes: int = BLOCK_BYTES
    ) -> None:
        if part_bytes < 1 or block_bytes < 1:
            raise ValueError("part_bytes and block_bytes must be positive")
        if len(delimiter) != 1:
            raise ValueError(f"the delimiter must be one character, not {delimiter!r}")
        self._chunks = chunks
        self._part_bytes = part_bytes
        self._delimiter = delimiter
        self._block_bytes = block_bytes
        self._infos: list[PartInfo] = []
        self._taken = False
        self._done = False

    @property
    def infos(self) -> list[PartInfo]:
        if not self._done:
            raise RuntimeError("the parts' infos are known once parts() has been read to the end")
        return list(self._infos)

    def parts(self) -> Iterator[Part]:
        if self._taken:
            raise RuntimeError("parts() can be read only once")
        self._taken = True
        return self._parts()

    def _parts(self) -> Iterator[Part]:
        output = _Output()
        blocks = _blocks(output.held(self._chunks), size=self._block_bytes)
        found = _split_off_header(blocks, self._delimiter)
        if found is not None:
            header, start, first_block = found
            for _ in output.until(start, whole_chunks_only=False):
                pass  # what precedes the first row is in no part
            segments = _segments(itertools.chain([first_block], blocks), self._delimiter, size=self._block_bytes)
            split = _Split(header, segments, output, self._part_bytes)
            opening: _Segment | None = next(segments)
            first_row = 0
            while opening is not None:
                part = Part(len(self._infos), first_row=first_row, start=start, opening=opening, split=split)
                yield part
                if part._info is None:
                    raise RuntimeError(
                        f"part {part.index} was not read to its end before the next part was taken: "
                        "read each part's chunks() to the end first"
                    )
                self._infos.append(part._info)
                first_row += part._info.rows
                start += part._info.size - len(header)
                opening = part._next_opening
        self._done = True


class _Output:
    """The chunks the blocks were read from, held until a part hands them on: whole, or cut at a part's
    start or end (the only copies)."""

    def __init__(self) -> None:
        self._held: deque[bytes] = deque()
        self._offset = 0  # the input offset of the first byte not handed on
        self._skip = 0  # bytes of _held[0] already handed on

    def held(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if chunk:
                self._held.append(chunk)
                yield chunk

    def until(self, end: int, *, whole_chunks_only: bool) -> Iterator[bytes]:
        """The bytes before input offset `end`: whole chunks, then the start of the chunk `end` falls in
        unless `whole_chunks_only`."""
        while self._held and self._offset < end:
            chunk = self._held[0]
            taken = min(len(chunk) - self._skip, end - self._offset)
            if taken < len(chunk) - self._skip and whole_chunks_only:
                return
            yield chunk if taken == len(chunk) else chunk[self._skip : self._skip + taken]
            self._offset += taken
            self._skip += taken
            if self._skip == len(chunk):
                self._held.popleft()
                self._skip = 0


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
