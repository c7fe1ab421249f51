"""The split itself: `CsvSplitter` hands out the `Part`s, each the header line plus the input's chunks from
one record boundary to a later one (cut where `records` finds a row starting), and each part's `PartInfo` once
it has been read.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from shared.csvsplit.records import BLOCK_BYTES, _blocks, _Segment, _segments, _split_off_header


@dataclass(frozen=True)
class PartInfo:
    index: int
    #: The whole input's index of the part's first data row (0-based, as the join numbers rows).
    first_row: int
    rows: int
    #: Bytes in the part file, its header line included.
    size: int


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
