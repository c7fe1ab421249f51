"""Azure ML's predictions for a sharded input: one `row,prediction,file_name` file for a folder of parts.

A large input is cut at row boundaries into part files (`part-00000.csv`, ...), each with the header, and
scored as one job. Azure ML writes one predictions file whose `row` is the row index within the part that
`file_name` names, the parts' lines in the order their mini-batches finished. `parse_part_predictions`
reads it as the predictions of the whole input: a part's row `row` is input row `first_row + row`. The
stream is a `PredictionStream`, so the join takes it as it takes a plain one: the merge while the parts
come in order, a `PredictionIndex` (fed in batches) when they do not.

A line is parsed as `predictions` parses it; only the file name is new, and it changes rarely (a part's
lines come together), so a block's file names are mapped to their parts once per run of equal names.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice

from shared.csvjoin.blocks import RecordReader, line_blocks
from shared.csvjoin.predictions import PREDICTIONS_BLOCK, Batch, PredictionStream, plain_fields, records_batch
from shared.errors import InputInvalid

#: How far into a block its first line is looked for, by the read-ahead's hint.
_FIRST_LINE_BYTES = 4096


@dataclass(frozen=True, slots=True)
class _Part:
    name: str
    first_row: int
    rows: int


def parse_part_predictions(chunks: Iterable[bytes], *, parts: Mapping[str, tuple[int, int]]) -> PartPredictionStream:
    """Azure ML's output for a folder of parts, as predictions for the whole input's rows.

    `parts` maps each part's file name (`part-00000.csv`) to (the input row its first row is, its row
    count), as `shared.usecases.shard.part_rows` gives them. A line whose file name (or, for a path, its
    last segment) names no part, or whose row the part does not have, is BadPredictions.
    """
    return PartPredictionStream(chunks, parts=parts)


class PartPredictionStream(PredictionStream):
    """A `PredictionStream` over a sharded job's output (see `parse_part_predictions`): rows are the whole
    input's. Each batch holds one run of lines from one part, so it is in row order when the part's
    mini-batch is, and the index cuts it into buckets with slices."""

    def __init__(self, chunks: Iterable[bytes], *, parts: Mapping[str, tuple[int, int]]) -> None:
        if any(first < 0 or rows < 0 for first, rows in parts.values()):
            raise ValueError("a part's first row and row count are never negative")
        super().__init__(chunks)
        self._parts = {name: _Part(name, first, rows) for name, (first, rows) in parts.items()}
        self._named: dict[bytes | str, _Part] = {}  # file names as the output spells them
        self._seen: set[str] = set()  # parts with a prediction in the batches parsed so far
        # the parts with rows, last first: the end of the list, once seen parts are dropped, is the lowest unseen
        self._unseen = sorted((p for p in self._parts.values() if p.rows), key=lambda p: p.first_row, reverse=True)

    def batches(self) -> Iterator[Batch]:
        self._blocks = line_blocks(self._chunks, size=PREDICTIONS_BLOCK)
        blocks = self._next_blocks()
        reader = RecordReader(blocks, delimiter=",")
        for block in blocks:
            fields = plain_fields(block)
            if fields is not None:
                try:
                    local = list(map(int, islice(fields, 0, len(fields) - 1, 3)))
                except ValueError:
                    fields = None  # as predictions' plain path: the csv path judges
            if fields is not None:
                yield from self._runs(local, fields[1::3], fields[2::3])
            else:
                yield from self._runs(*records_batch(reader.records(block)))

    def lower_row_ahead(self, last_row: int) -> bool:
        """The merge found rows without a prediction: a part before the current one that has had none yet
        either failed or is still to come; taken as still to come (an index join costs time, never rows).
        Otherwise the plain look ahead, with each block's first row mapped to the whole input's."""
        while self._unseen and self._unseen[-1].name in self._seen:
            self._unseen.pop()
        if self._unseen and self._unseen[-1].first_row < last_row:
            return True
        return super().lower_row_ahead(last_row)

    def _first_row(self, block: bytes) -> int | None:
        end = block.find(b"\n", 0, _FIRST_LINE_BYTES)
        line = block[: end if end >= 0 else _FIRST_LINE_BYTES].rstrip(b"\r")
        row, _, rest = line.partition(b",")
        _, comma, name = rest.rpartition(b",")
        part = self._part_or_none(name) if comma else None
        try:
            return part.first_row + int(row) if part is not None else None
        except ValueError:
            return None

    def _runs(self, local: list[int], values: list[bytes], names: Sequence[bytes | str]) -> Iterator[Batch]:
        """The batches of a block's lines, one per run of lines naming the same file, rows made global."""
        if not local:
            return
        if names.count(names[0]) == len(names):  # nearly every block: one part's lines
            yield self._global(local, values, names[0])
            return
        start = 0
        for name, run in itertools.groupby(names):
            end = start + sum(1 for _ in run)
            yield self._global(local[start:end], values[start:end], name)
            start = end

    def _global(self, local: list[int], values: list[bytes], name: bytes | str) -> Batch:
        part = self._part(name)
        lowest, highest = min(local), max(local)
        if lowest < 0 or highest >= part.rows:
            row = lowest if lowest < 0 else highest
            raise InputInvalid(
                f"the Azure ML output has row {row} of the part {part.name!r}, which has {part.rows} rows",
                code="BadPredictions",
            )
        self._seen.add(part.name)
        first = part.first_row
        return (list(map(first.__add__, local)) if first else local), values

    def _part(self, name: bytes | str) -> _Part:
        part = self._part_or_none(name)
        if part is None:
            shown = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
            raise InputInvalid(f"the Azure ML output names the file {shown!r}, which is no part", code="BadPredictions")
        return part

    def _part_or_none(self, name: bytes | str) -> _Part | None:
        part = self._named.get(name)
        if part is None:
            text = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
            part = self._parts.get(text) or self._parts.get(text.rsplit("/", 1)[-1].rsplit("\\", 1)[-1])
            if part is not None:
                self._named[name] = part
        return part
