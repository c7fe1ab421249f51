"""Property tests: any CSV the stdlib csv module round-trips is either rejected with a documented code
or joined to exactly its rows, whatever the chunk boundaries.

What a row is follows Azure ML (pandas.read_csv), which numbers the rows the predictions refer to: an
empty line, or one of only spaces and tabs, is not a row; every other record is, even one whose cells
are all empty (`,,`). The join must number rows the same way, or predictions land on the wrong rows.
"""

from __future__ import annotations

import csv
import io
import itertools
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from shared.csvfiles import CsvHead, validate_head
from shared.csvjoin import JoinStats, Prediction, PredictionIndex, join_predictions, parse_predictions
from shared.errors import InputInvalid

#: Deterministic in CI (derandomize), no example database written into the repository, a few seconds in all.
PROPERTY = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

#: README "The event contract": the InputRejected codes.
DOCUMENTED_CODES = frozenset(
    {
        "NotCsv",
        "TooLarge",
        "Empty",
        "HeaderOnly",
        "HeaderTooLong",
        "NotUtf8",
        "WrongDelimiter",
        "EmptyColumnName",
        "DuplicateColumns",
        "MissingColumns",
        "RaggedRows",
    }
)
DELIMITERS = (",", ";", "\t", "|")
BOM = "\ufeff"

_SPECIAL = st.sampled_from([",", ";", "\t", "|", '"', "'", "\r", "\n", " ", "\x0c", "\x00", "\u2028", "\xa0", BOM])
_PLAIN = st.sampled_from(["a", "Z", "7", ".", "-", "é", "中", "😀", "\u200f"])
CHARS = st.one_of(_PLAIN, _SPECIAL, st.characters(codec="utf-8"))
CELLS = st.text(CHARS, max_size=5)
NAMES = st.one_of(st.sampled_from(["carat", "cut", " price ", "prediction", "prediction_2 ", "x y"]), CELLS)
VALUES = st.text(CHARS, max_size=4)


@dataclass(frozen=True)
class Table:
    """A CSV as the stdlib writer serializes it; `records` includes blank lines ([]) and the header."""

    records: tuple[tuple[str, ...], ...]
    delimiter: str
    terminator: str
    bom: bool
    final_newline: bool

    def text(self) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=self.delimiter, lineterminator=self.terminator).writerows(self.records)
        text = buffer.getvalue()
        return text if self.final_newline else text.removesuffix(self.terminator)

    def data(self) -> bytes:
        return ((BOM if self.bom else "") + self.text()).encode()

    def lines(self) -> list[list[str]]:
        """The records Azure ML reads: the header, then the data rows."""
        return [list(record) for record in self.records if not is_blank_line(record)]

    def record_ends(self) -> list[int]:
        """The byte offset just past each record (its line ending included) in `data()`."""
        ends, buffer = [], io.StringIO()
        writer = csv.writer(buffer, delimiter=self.delimiter, lineterminator=self.terminator)
        for record in self.records:
            writer.writerow(record)
            ends.append(len(((BOM if self.bom else "") + buffer.getvalue()).encode()))
        return ends


def is_blank_line(record: tuple[str, ...] | list[str]) -> bool:
    """pandas skips an empty line and one of only spaces/tabs; a quoted empty cell (`""`) is a row."""
    return not record or (len(record) == 1 and record[0] != "" and not record[0].strip(" \t"))


def has_cells(record: list[str]) -> bool:
    return any(cell.strip() for cell in record)


@st.composite
def tables(draw: st.DrawFn, *, valid: bool = False) -> Table:
    """Any table (most get rejected), or with `valid` one built to pass validation (a few still do not)."""
    width = draw(st.integers(1, 4))
    if valid:
        names = NAMES.filter(lambda name: bool(name.strip()))
        header = draw(st.lists(names, min_size=width, max_size=width, unique_by=str.strip))
    else:
        header = draw(st.lists(NAMES, min_size=width, max_size=width))
    row = st.lists(CELLS, min_size=width, max_size=width).map(tuple)
    ragged = st.lists(CELLS, max_size=width + 1).map(tuple)
    records = st.one_of(row, row, st.just(())) if valid else st.one_of(row, row, st.just(()), ragged)
    body = draw(st.lists(records, max_size=8))
    leading = draw(st.lists(st.just(()), max_size=2))
    table = Table(
        records=(*leading, tuple(header), *body),
        delimiter=draw(st.sampled_from(DELIMITERS)),
        terminator=draw(st.sampled_from(["\n", "\r\n"])),
        bom=draw(st.booleans()),
        final_newline=draw(st.booleans()) or not body or body[-1] == (),
    )
    # The premise: the stdlib reader gives back exactly what the writer was given. A leading U+FEFF
    # in the text is a byte order mark by definition, not part of the first cell.
    text = table.text()
    assume(not text.startswith(BOM))
    assume([tuple(r) for r in csv.reader(io.StringIO(text, newline=""), delimiter=table.delimiter)] == [*table.records])
    return table


def expected_code(table: Table, required: tuple[str, ...] = ()) -> str | None:
    """The specification of validate_head on a whole file: which rule rejects it, or None."""
    if not any(has_cells(list(record)) for record in table.records):
        return "Empty"
    lines = table.lines()
    header = [cell.strip() for cell in lines[0]]
    if len(header) == 1 and any(other != table.delimiter and other in header[0] for other in DELIMITERS):
        return "WrongDelimiter"
    if not all(header):
        return "EmptyColumnName"
    if len(set(header)) < len(header):
        return "DuplicateColumns"
    if any(column not in header for column in required):
        return "MissingColumns"
    if not any(has_cells(row) for row in lines[1:]):
        return "HeaderOnly"
    if any(len(row) != len(header) for row in lines[1:]):
        return "RaggedRows"
    return None


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    return [data[start:end] for start, end in itertools.pairwise([0, *sorted(cuts), len(data)])]


def parse_output(chunks: list[bytes]) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(chunks).decode("utf-8"), newline="")))


def judge(head: bytes, **options: Any) -> CsvHead | str:
    """validate_head's verdict: what it learned, or the code it rejected with. Any other exception escapes."""
    try:
        return validate_head(head, **options)
    except InputInvalid as exc:
        return exc.code


@PROPERTY
@given(table=tables(), data=st.data())
def test_validate_head_accepts_or_names_the_rule_that_rejects(table: Table, data: st.DataObject) -> None:
    """A whole file is accepted with its columns and row count, or rejected with the code of the first
    rule it breaks; never any other exception."""
    lines = table.lines()
    names = [cell.strip() for cell in lines[0]] if lines else []
    required = tuple(data.draw(st.lists(st.sampled_from([*names, "absent"]), max_size=2, unique=True)))
    verdict = judge(table.data(), truncated=False, delimiter=table.delimiter, required_columns=required)
    expected = expected_code(table, required)
    if isinstance(verdict, str):
        assert verdict in DOCUMENTED_CODES
        assert verdict == expected
    else:
        assert expected is None
        assert verdict == CsvHead(tuple(names), len(lines) - 1, truncated=False)


@PROPERTY
@given(table=tables(valid=True), data=st.data())
def test_a_head_cut_anywhere_is_judged_on_its_complete_records(table: Table, data: st.DataObject) -> None:
    """A valid file whose head is cut at any byte is accepted once its header is complete, HeaderTooLong
    before; the record the cut went through is never judged nor counted."""
    assume(expected_code(table) is None)
    raw = table.data()
    assume(len(raw) > 1)
    cut = data.draw(st.integers(1, len(raw) - 1), label="cut")
    # A record is known complete once its line ending began: after the \r of a \r\n, too.
    ends = [end - len(table.terminator) + 1 for end in table.record_ends()]
    header_at = next(i for i, record in enumerate(table.records) if not is_blank_line(record))
    complete_rows = sum(
        1 for i in range(header_at + 1, len(ends)) if ends[i] <= cut and not is_blank_line(table.records[i])
    )
    verdict = judge(raw[:cut], truncated=True, delimiter=table.delimiter)
    if cut < ends[header_at]:
        assert verdict == "HeaderTooLong"
    else:
        assert verdict == CsvHead(tuple(cell.strip() for cell in table.lines()[0]), complete_rows, truncated=True)


@PROPERTY
@given(table=tables(valid=True), data=st.data())
def test_the_join_gives_every_row_its_own_prediction_whatever_the_chunks(table: Table, data: st.DataObject) -> None:
    """An accepted file, cut into chunks anywhere, comes out as its header plus a prediction column, then
    each row, cells unchanged, with its own prediction or an empty one; in order (merge) or not (index)."""
    assume(expected_code(table) is None)
    raw = table.data()
    header, *rows = table.lines()
    scored = data.draw(st.dictionaries(st.integers(0, len(rows) - 1), VALUES), label="predictions")
    extras = data.draw(st.dictionaries(st.integers(len(rows), len(rows) + 3), VALUES), label="extras")
    expected_rows = [[*row, scored.get(index, "")] for index, row in enumerate(rows)]
    in_order = [Prediction(row, value) for row, value in sorted({**scored, **extras}.items())]
    shuffled = data.draw(st.permutations(in_order), label="shuffled")

    for lookup in ("merge", "index"):
        cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=6), label=f"{lookup} cuts")
        stats = JoinStats()
        if lookup == "merge":
            out = list(join_predictions(split(raw, cuts), in_order, stats, delimiter=table.delimiter))
        else:
            index = PredictionIndex(shuffled)
            try:
                out = list(join_predictions(split(raw, cuts), index, stats, delimiter=table.delimiter))
            finally:
                index.close()
        parsed = parse_output(out)
        column = parsed[0][-1] if parsed else None
        assert parsed == [[*header, column], *expected_rows]
        assert column is not None
        assert column.strip() not in {name.strip() for name in header}
        assert stats.columns == [*header, column]
        assert (stats.rows_in, stats.rows_out, stats.rows_missing) == (len(rows), len(scored), len(rows) - len(scored))
        assert stats.extra_predictions == (len(extras) if lookup == "merge" else 0)


_FILE_NAMES = st.one_of(st.sampled_from(["x.csv", "day/a b.csv", "q,1.csv"]), st.text(CHARS, min_size=1, max_size=4))


@PROPERTY
@given(
    lines=st.lists(
        st.tuples(st.integers(0, 10**12), st.lists(VALUES, min_size=1, max_size=3), _FILE_NAMES), max_size=8
    ),
    terminator=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
    data=st.data(),
)
def test_parse_predictions_reads_each_line_whatever_the_chunks(
    lines: list[tuple[int, list[str], str]], terminator: str, bom: bool, data: st.DataObject
) -> None:
    """Azure ML's headerless `row,prediction,file_name` lines; a list prediction spans several fields."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=terminator)
    for row, parts, file_name in lines:
        writer.writerow([row, *parts, file_name])
    # The premise again: the stdlib writer leaves a lone \r unquoted under a \n line terminator.
    written = [[str(row), *parts, file_name] for row, parts, file_name in lines]
    assume(list(csv.reader(io.StringIO(buffer.getvalue(), newline=""))) == written)
    raw = ((BOM if bom else "") + buffer.getvalue()).encode()
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=6), label="cuts")
    expected = [Prediction(row, ",".join(parts)) for row, parts, _ in lines]
    assert list(parse_predictions(split(raw, cuts))) == expected
