"""Bytes cut into blocks of whole lines, and the two ways the join reads a block's records.

Most blocks are plain: no quote and no lone CR. A plain block's records are its lines, split at the
delimiter and nothing else, so its output lines are made with byte operations on whole blocks
(`PlainLines`), never cell by cell. A block with a quote or a lone CR goes through the csv module
(`RecordReader`), which reads on into the next blocks while a quoted cell is open. Both give the bytes
the csv module's writer would: a comma between cells, LF after each record, a cell quoted only when it
holds a comma, a quote or a line break.
"""

from __future__ import annotations

import csv
import io
import re
from collections import deque
from collections.abc import Iterable, Iterator

from shared.errors import InputInvalid

BOM = b"\xef\xbb\xbf"


def line_blocks(chunks: Iterable[bytes], *, size: int) -> Iterator[bytes]:
    """`chunks` re-cut into blocks of about `size` bytes that end just after a line break (the last block
    may not). A line is never split, so neither is a CRLF nor a UTF-8 character; a line longer than `size`
    is one block. A BOM opening the first block is dropped, as the utf-8-sig codec does. Each byte is
    copied once or twice, whatever the chunks' size."""
    unfinished: list[bytes] = []  # the bytes after the last block's end: less than a block, or one line
    held = 0
    at_start = True
    for chunk in chunks:
        position = 0
        while len(chunk) - position + held > size:
            cut = _block_end(chunk, position, position + max(0, size - held))
            if cut <= position:
                break  # no line ends in the rest of this chunk
            block = chunk[position:cut]
            if unfinished:
                block, unfinished, held = b"".join([*unfinished, block]), [], 0
            if at_start:
                block, at_start = block.removeprefix(BOM), False
            yield block
            position = cut
        if position < len(chunk):
            unfinished.append(chunk[position:] if position else chunk)
            held += len(chunk) - position
    rest = b"".join(unfinished)
    if at_start:
        rest = rest.removeprefix(BOM)
    if rest:
        yield rest


def _block_end(chunk: bytes, start: int, limit: int) -> int:
    """The offset just past the last LF before `limit`, else past the first LF after it, else past the
    last CR (a file with CR line endings); `start` or less when the chunk has none of them after `start`."""
    return (
        chunk.rfind(b"\n", start, limit) + 1
        or chunk.find(b"\n", max(start, limit)) + 1
        or chunk.rfind(b"\r", start) + 1
    )


def check_utf8(block: bytes) -> None:
    """Validation reads only the first MiB: a bad byte further on is found here, during the join."""
    if not block.isascii():
        try:
            block.decode("utf-8")
        except UnicodeDecodeError:
            raise _not_utf8() from None


def _not_utf8() -> InputInvalid:
    return InputInvalid("the file is not valid UTF-8 past its first MiB", code="NotUtf8")


class PlainLines:
    """The output lines of a plain block of input: each line with its delimiters made commas and its CRLF
    made LF, blank lines left out (pandas skips them: see csvfiles.is_blank_line)."""

    def __init__(self, delimiter: str) -> None:
        encoded = delimiter.encode("utf-8")
        # A multi-byte delimiter would make byte-level splitting wrong: such files take the csv module.
        self._delimiter = encoded if len(encoded) == 1 else None
        cell = b"[^%s\n]" % re.escape(encoded)
        # A cell holding a comma, from its start (after a delimiter or a line break) to its end.
        self._cell_with_comma = re.compile(rb"(?<!%s)%s*,%s*" % (cell, cell, cell))

    def lines(self, block: bytes) -> list[bytes] | None:
        """The block's output lines, or None when it is not plain (the csv module must read it)."""
        if self._delimiter is None or b'"' in block:
            return None
        if b"\r" in block:
            block = block.replace(b"\r\n", b"\n")
            if b"\r" in block:  # a lone CR ends a record for the csv module: rare enough to leave to it
                return None
        check_utf8(block)
        if self._delimiter != b",":
            if b"," in block:  # a comma in a cell is data: the writer quotes that cell
                block = self._cell_with_comma.sub(rb'"\g<0>"', block)
            block = block.replace(self._delimiter, b",")
        lines = block.split(b"\n")
        if not lines[-1]:
            lines.pop()  # the block ended with its line break
        if _may_have_blank_lines(lines):
            lines = [line for line in lines if line.strip(b" \t")]
        return lines


def _may_have_blank_lines(lines: list[bytes]) -> bool:
    """A cheap test before the line-by-line one. A blank line is empty or starts with a space or a tab, so
    it sorts before any line that starts with a character above the space: one C-level pass finds out."""
    return not lines or min(lines)[:1] <= b" "


class RecordReader:
    """The csv module's records for blocks that are not plain.

    The reader takes lines as the old TextIOWrapper gave them (split at LF, CR and CRLF); when a quoted
    cell is still open at the end of a block it reads on into the blocks after it, taken from the same
    iterator the caller walks, so the caller resumes after them.
    """

    def __init__(self, blocks: Iterator[bytes], *, delimiter: str) -> None:
        self._pending: deque[str] = deque()
        # The line source refers to the deque and the blocks, not to self: no reference cycle, so a join
        # that stops early frees its downloads at once, not at the next garbage collection.
        self._reader = csv.reader(_lines(self._pending, blocks), delimiter=delimiter)

    def records(self, block: bytes) -> list[list[str]]:
        """Every record that starts in `block`, whole (even when it ends in a later block)."""
        self._pending.extend(_text_lines(block))
        records = []
        while self._pending:
            records.append(next(self._reader))
        return records


def _lines(pending: deque[str], blocks: Iterator[bytes]) -> Iterator[str]:
    while True:
        while pending:
            yield pending.popleft()
        following = next(blocks, None)  # reached only while a quoted cell is open
        if following is None:
            return
        pending.extend(_text_lines(following))


def _text_lines(block: bytes) -> list[str]:
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        raise _not_utf8() from None
    return list(io.StringIO(text, newline=""))
