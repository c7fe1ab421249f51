"""A sharded input: the input cut into part files, scored as one job, its one predictions file read back.

Azure ML numbers each line's row within the part its file_name names and writes the parts' lines in the order
their mini-batches finished. Joined against the original input, the output must be the bytes of the
unsharded job's: the same input, the same predictions numbered in the whole input.

Each case here really splits an input into part files (at record boundaries, each with the header), scores
the parts as Azure ML would (reading each part with the csv module, numbering its rows as pandas does), and
shuffles the parts into a completion order.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from shared.csvjoin import (
    JoinStats,
    PartPredictionStream,
    Prediction,
    PredictionIndex,
    PredictionsOutOfOrder,
    join_predictions,
    parse_part_predictions,
)
from shared.csvjoin import join as join_module
from shared.csvjoin import parts as parts_module
from shared.csvjoin.predictions import PREDICTIONS_BLOCK
from shared.errors import InputInvalid
from tests.unit.test_csv_properties import PROPERTY, VALUES, Table, expected_code, is_blank_line, split, tables

#: Scored: the part's file name, the row within the part, the prediction.
Line = tuple[str, int, str]


@dataclass
class Sharded:
    """An input cut into parts: each part's file (header included) and its row count, in input order."""

    files: dict[str, bytes]
    rows: dict[str, int]

    @property
    def first_rows(self) -> dict[str, int]:
        return dict(zip(self.rows, itertools.accumulate(self.rows.values(), initial=0), strict=False))

    @property
    def parts(self) -> dict[str, tuple[int, int]]:
        """As shared.usecases.shard.part_rows: file name -> (first row, rows)."""
        return {name: (first, self.rows[name]) for name, first in self.first_rows.items()}


def shard(table: Table, cuts: Iterable[int]) -> Sharded:
    """The table's records after the header cut into parts at the given record positions; each part file
    is the header plus its records, written as the input writes them."""
    records = list(table.records)
    header_at = next(i for i, record in enumerate(records) if not is_blank_line(record))
    header, body = records[header_at], records[header_at + 1 :]
    bounds = sorted({0, len(body), *(cut for cut in cuts if 0 < cut < len(body))})
    files, rows = {}, {}
    for number, (start, end) in enumerate(itertools.pairwise(bounds)):
        name = f"part-{number:05d}.csv"
        part = Table((header, *body[start:end]), table.delimiter, table.terminator, bom=False, final_newline=True)
        files[name] = part.data()
        rows[name] = sum(1 for record in body[start:end] if not is_blank_line(record))
    return Sharded(files, rows)


def score(sharded: Sharded, *, delimiter: str, predict: Callable[[list[str]], str]) -> dict[str, list[Line]]:
    """What Azure ML makes of each part: a prediction per row, rows numbered within the part as pandas
    reads it (blank lines are no rows)."""
    scored = {}
    for name, data in sharded.files.items():
        records = csv.reader(io.StringIO(data.decode("utf-8"), newline=""), delimiter=delimiter)
        rows = [record for record in records if not is_blank_line(record)][1:]
        scored[name] = [(name, row, predict(record)) for row, record in enumerate(rows)]
    return scored


def output_file(lines: Iterable[Line], *, prefix: str = "") -> bytes:
    """Azure ML's predictions file: no header, `row,prediction,file_name`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for name, row, value in lines:
        writer.writerow([row, value, prefix + name])
    return buffer.getvalue().encode()


def in_completion_order(scored: dict[str, list[Line]], order: Sequence[str]) -> list[Line]:
    return [line for name in order for line in scored[name]]


def global_predictions(sharded: Sharded, lines: Iterable[Line]) -> list[Prediction]:
    """The unsharded job's predictions: the same values, numbered in the whole input, in row order."""
    first = sharded.first_rows
    return sorted((Prediction(first[name] + row, value) for name, row, value in lines), key=lambda p: p.row)


def join_like_completion(
    data: bytes, predictions: Callable[[], PartPredictionStream], *, delimiter: str = ","
) -> tuple[bytes, JoinStats, str]:
    """As complete._write_joined: the merge, and on PredictionsOutOfOrder the index (a fresh stream each)."""
    stats = JoinStats()
    try:
        return b"".join(join_predictions([data], predictions(), stats, delimiter=delimiter)), stats, "merge"
    except PredictionsOutOfOrder:
        pass
    stats = JoinStats()
    index = PredictionIndex(predictions())
    try:
        return b"".join(join_predictions([data], index, stats, delimiter=delimiter)), stats, "index"
    finally:
        index.close()


def unsharded(data: bytes, predictions: list[Prediction], *, delimiter: str = ",") -> tuple[bytes, JoinStats]:
    stats = JoinStats()
    return b"".join(join_predictions([data], predictions, stats, delimiter=delimiter)), stats


def counts(stats: JoinStats) -> tuple[int, int, int]:
    return stats.rows_in, stats.rows_out, stats.rows_missing


def input_table(rows: int, *, seed: int = 0) -> Table:
    """An input with an id column (so a prediction on the wrong row shows), quoted cells now and then (so
    the join takes the csv path too) and a blank line or two (no rows)."""
    pick = random.Random(seed)
    records: list[tuple[str, ...]] = [("id", "text", "amount")]
    for number in range(rows):
        text = pick.choice(["plain", "a, comma", 'a "quote"', "two\nlines", "x"])
        records.append((f"id{number}", text, str(pick.randint(0, 999))))
        if pick.random() < 0.01:
            records.append(())
    return Table(tuple(records), ",", "\n", bom=False, final_newline=True)


def predict(record: list[str]) -> str:
    return f"p-{record[0]}"


CASE = input_table(3000)
CASE_PARTS = shard(CASE, [400, 401, 1700, 2500])  # one part of a single row


@pytest.fixture(params=[64, 4096, PREDICTIONS_BLOCK], ids=lambda size: f"block{size}")
def prediction_block(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Small blocks put several parts' lines in one block, and cut a part's lines across blocks."""
    monkeypatch.setattr(parts_module, "PREDICTIONS_BLOCK", request.param)
    return int(request.param)


@pytest.mark.parametrize("seed", range(4))
def test_parts_in_completion_order_join_to_the_unsharded_bytes(prediction_block: int, seed: int) -> None:
    scored = score(CASE_PARTS, delimiter=",", predict=predict)
    order = list(scored)
    random.Random(seed).shuffle(order)
    if order == sorted(order):
        order.reverse()
    file = output_file(in_completion_order(scored, order))
    expected, expected_stats = unsharded(
        CASE.data(), global_predictions(CASE_PARTS, in_completion_order(scored, order))
    )
    assert expected_stats.rows_missing == 0

    out, stats, path = join_like_completion(
        CASE.data(), functools.partial(parse_part_predictions, [file], parts=CASE_PARTS.parts)
    )
    assert (out, counts(stats), path) == (expected, counts(expected_stats), "index")


def test_parts_in_input_order_join_by_the_merge(prediction_block: int) -> None:
    scored = score(CASE_PARTS, delimiter=",", predict=predict)
    lines = in_completion_order(scored, list(scored))
    out, stats, path = join_like_completion(
        CASE.data(), lambda: parse_part_predictions([output_file(lines)], parts=CASE_PARTS.parts)
    )
    expected, expected_stats = unsharded(CASE.data(), global_predictions(CASE_PARTS, lines))
    assert (out, counts(stats), path) == (expected, counts(expected_stats), "merge")


def test_parts_in_input_order_with_single_rows_missing_stay_on_the_merge(prediction_block: int) -> None:
    """A row without a prediction makes the merge read ahead for a lower row: each block's first row is
    read in the whole input's numbering, so the next parts' rows (low within their parts) are no sign."""
    scored = score(CASE_PARTS, delimiter=",", predict=predict)
    lines = [line for line in in_completion_order(scored, list(scored)) if line[1] % 50 != 7]
    out, stats, path = join_like_completion(
        CASE.data(), lambda: parse_part_predictions([output_file(lines)], parts=CASE_PARTS.parts)
    )
    expected, expected_stats = unsharded(CASE.data(), global_predictions(CASE_PARTS, lines))
    assert (out, counts(stats), path) == (expected, counts(expected_stats), "merge")
    assert stats.rows_missing > 0


@pytest.mark.parametrize("order", [[0, 1, 3, 4], [4, 0, 3, 1], [0, 1, 2, 3]], ids=["in-order", "shuffled", "last"])
def test_a_part_without_predictions_counts_each_of_its_rows_missing(prediction_block: int, order: list[int]) -> None:
    """A failed mini-batch: one part has no line at all. Its rows come out with no prediction, counted."""
    scored = score(CASE_PARTS, delimiter=",", predict=predict)
    names = list(scored)
    lost = next(name for number, name in enumerate(names) if number not in order)
    lines = in_completion_order(scored, [names[number] for number in order])
    out, stats, _ = join_like_completion(
        CASE.data(),
        lambda: parse_part_predictions([output_file(lines)], parts=CASE_PARTS.parts),
    )
    expected, expected_stats = unsharded(CASE.data(), global_predictions(CASE_PARTS, lines))
    assert out == expected
    assert counts(stats) == counts(expected_stats)
    assert stats.rows_missing == CASE_PARTS.rows[lost] > 0


def test_single_rows_without_predictions_are_counted_exactly(prediction_block: int) -> None:
    scored = score(CASE_PARTS, delimiter=",", predict=predict)
    pick = random.Random(7)
    order = list(scored)
    pick.shuffle(order)
    lines = [line for line in in_completion_order(scored, order) if pick.random() > 0.05]
    out, stats, _ = join_like_completion(
        CASE.data(), lambda: parse_part_predictions([output_file(lines)], parts=CASE_PARTS.parts)
    )
    expected, expected_stats = unsharded(CASE.data(), global_predictions(CASE_PARTS, lines))
    assert out == expected
    assert counts(stats) == counts(expected_stats)
    assert stats.rows_missing == sum(CASE_PARTS.rows.values()) - len(lines) > 0


@pytest.mark.parametrize(
    "prefix", ["folder/", "azureml://datastores/workspaceblobstore/paths/job-1/parts/", "C:\\mnt\\inputs\\"]
)
def test_a_file_name_with_a_path_is_its_last_segment(prefix: str) -> None:
    scored = score(CASE_PARTS, delimiter=",", predict=predict)
    order = list(reversed(scored))
    lines = in_completion_order(scored, order)
    out, stats, _ = join_like_completion(
        CASE.data(),
        lambda: parse_part_predictions([output_file(lines, prefix=prefix)], parts=CASE_PARTS.parts),
    )
    expected, expected_stats = unsharded(CASE.data(), global_predictions(CASE_PARTS, lines))
    assert (out, counts(stats)) == (expected, counts(expected_stats))


PARTS = {"part-00000.csv": (0, 3), "part-00001.csv": (3, 2), "part-00002.csv": (5, 4)}


def parsed(data: bytes) -> list[Prediction]:
    return list(parse_part_predictions([data], parts=PARTS))


@pytest.mark.parametrize("value", [b"yes", b'"[1, 2]"'], ids=["plain", "csv"])
def test_a_file_name_that_names_no_part_is_bad_predictions(value: bytes) -> None:
    data = b"0,%s,part-00001.csv\n1,%s,part-00009.csv\n" % (value, value)
    with pytest.raises(InputInvalid, match=r"part-00009\.csv") as raised:
        parsed(data)
    assert raised.value.code == "BadPredictions"


@pytest.mark.parametrize(
    "line",
    [
        b"2,x,part-00001.csv\n",  # part 1 has rows 0 and 1
        b"4,x,part-00002.csv\n",  # the last part too
        b"-1,x,part-00001.csv\n",  # would be part 0's last row
        b'2,"[1, 2]",part-00001.csv\n',  # read by the csv module
    ],
)
def test_a_row_the_part_does_not_have_is_bad_predictions(line: bytes) -> None:
    with pytest.raises(InputInvalid, match=r"part-0000\d\.csv") as raised:
        parsed(b"0,a,part-00001.csv\n" + line + b"1,b,part-00000.csv\n")
    assert raised.value.code == "BadPredictions"


def test_rows_are_numbered_in_the_whole_input() -> None:
    data = (
        b'1,a,part-00002.csv\n0,b,part-00002.csv\r\n\n2,"c, d",part-00000.csv\n1,e,x/part-00001.csv\n3,f,part-00002.csv'
    )
    expected = [Prediction(6, "a"), Prediction(5, "b"), Prediction(2, "c, d"), Prediction(4, "e"), Prediction(8, "f")]
    assert parsed(data) == expected


def test_the_merge_hands_over_to_the_index_as_soon_as_a_part_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Part 2 finished first: row 0 has no prediction and part 0 has had none yet, so the merge stops
    before it joins a row, though nothing it has read ahead has a lower row."""
    monkeypatch.setattr(join_module, "INPUT_BLOCK", 1024)
    scored = score(CASE_PARTS, delimiter=",", predict=predict)
    names = list(scored)
    lines = in_completion_order(scored, [names[2], names[0], names[1], names[3], names[4]])
    stream = parse_part_predictions([output_file(lines)], parts=CASE_PARTS.parts)
    stats = JoinStats()
    with pytest.raises(PredictionsOutOfOrder):
        for _ in join_predictions([CASE.data()], stream, stats):
            pass
    assert stats.rows_in == 0


@PROPERTY
@given(table=tables(valid=True), data=st.data())
def test_any_sharding_in_any_completion_order_joins_like_the_unsharded_input(table: Table, data: st.DataObject) -> None:
    """Any valid input, cut into parts anywhere, its parts' predictions (some lost) in any completion order
    and its predictions file cut into chunks anywhere: the unsharded job's bytes and counts."""
    assume(expected_code(table) is None)
    body = len(table.records)
    sharded = shard(table, data.draw(st.lists(st.integers(1, body), max_size=4), label="part cuts"))
    values = iter(data.draw(st.lists(VALUES, min_size=body, max_size=body), label="values"))
    scored = score(sharded, delimiter=table.delimiter, predict=lambda _: next(values))
    order = data.draw(st.permutations(list(scored)), label="completion order")
    lost = data.draw(st.sets(st.sampled_from(order)), label="failed parts") if order else set()
    lines = [line for line in in_completion_order(scored, order) if line[0] not in lost]
    lines = [line for line in lines if data.draw(st.integers(0, 9), label="kept") > 0]
    prefix = data.draw(st.sampled_from(["", "out/", "azureml://x/parts/"]), label="prefix")
    file = output_file(lines, prefix=prefix)
    assume(
        [tuple(r) for r in csv.reader(io.StringIO(file.decode(), newline=""))]
        == [(str(row), value, prefix + name) for name, row, value in lines]
    )  # the stdlib writer leaves a lone \r unquoted under a \n line terminator
    cuts = data.draw(st.lists(st.integers(0, len(file)), max_size=4), label="output cuts")
    block = data.draw(st.sampled_from([16, 64, PREDICTIONS_BLOCK]), label="block")

    expected, expected_stats = unsharded(table.data(), global_predictions(sharded, lines), delimiter=table.delimiter)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parts_module, "PREDICTIONS_BLOCK", block)
        out, stats, _ = join_like_completion(
            table.data(),
            lambda: parse_part_predictions(split(file, cuts), parts=sharded.parts),
            delimiter=table.delimiter,
        )
    assert out == expected
    assert counts(stats) == counts(expected_stats)
    assert stats.rows_missing == sum(sharded.rows.values()) - len(lines)


def test_the_stream_feeds_the_index_in_batches() -> None:
    """The index reads a part stream in its batches, one per run of a part's lines, each in row order."""
    scored = score(CASE_PARTS, delimiter=",", predict=predict)
    stream = parse_part_predictions(
        [output_file(in_completion_order(scored, list(reversed(scored))))], parts=CASE_PARTS.parts
    )
    batches = list(stream.batches())
    assert len(batches) == len(scored)
    assert all(rows == list(range(rows[0], rows[0] + len(rows))) for rows, _ in batches)
