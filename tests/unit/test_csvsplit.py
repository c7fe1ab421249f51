"""The split of an input into parts (shared/csvsplit/): each part the header line plus whole records, the
parts' row counts exactly the join's numbering of the input, whatever the chunks, blocks and part sizes.

The authority on rows is the join itself (`join_predictions`' `rows_in`), run with blocks of every size so
both its paths (plain bytes, the csv module) are the reference.
"""

from __future__ import annotations

import csv
import io
import itertools
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.csvjoin import JoinStats, join_predictions
from shared.csvjoin import join as join_module
from shared.csvsplit import CsvSplitter, PartInfo
from shared.errors import InputInvalid
from tests.unit.test_csv_properties import PROPERTY

BOM = b"\xef\xbb\xbf"


def split(
    data: bytes, *, part_bytes: int, block_bytes: int = 8, cuts: list[int] | None = None, delimiter: str = ","
) -> tuple[list[bytes], list[PartInfo]]:
    """Each part's bytes and the parts' infos, the input given in chunks cut at `cuts` (or in one)."""
    splitter = CsvSplitter(
        chunked(data, cuts or []), part_bytes=part_bytes, delimiter=delimiter, block_bytes=block_bytes
    )
    parts = [b"".join(part.chunks()) for part in splitter.parts()]
    return parts, splitter.infos


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cut for cut in cuts if 0 < cut < len(data)), len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


def join_rows(data: bytes, *, delimiter: str = ",", input_block: int | None = None) -> int:
    """The rows the join numbers in `data`, its blocks of `input_block` bytes (or its own size)."""
    stats = JoinStats()
    with mock.patch.object(join_module, "INPUT_BLOCK", input_block or join_module.INPUT_BLOCK):
        for _ in join_predictions([data], lambda row: None, stats, delimiter=delimiter):
            pass
    return stats.rows_in


def records(data: bytes, delimiter: str = ",") -> list[list[str]]:
    """The csv module's records of `data`, blank lines left out (pandas skips them, and so does the join)."""
    return [record for record in records_with_blanks(data, delimiter) if not _blank(record)]


def records_with_blanks(data: bytes, delimiter: str) -> list[list[str]]:
    text = data.decode("utf-8").removeprefix("\ufeff")
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


def _blank(record: list[str]) -> bool:
    return not record or (len(record) == 1 and record[0] != "" and not record[0].strip(" \t"))


def first_rows(infos: list[PartInfo]) -> list[int]:
    """What each part's first row must be: the rows of the parts before it."""
    return list(itertools.accumulate((info.rows for info in infos), initial=0))[:-1]


def test_each_part_is_the_header_then_whole_rows_numbered_as_in_the_input() -> None:
    data = b"id,name\n" + b"".join(b"%d,n%d\n" % (i, i) for i in range(10))
    parts, infos = split(data, part_bytes=20, block_bytes=1)  # 8 bytes of header, then 5 a row
    assert parts == [
        b"id,name\n" + b"".join(b"%d,n%d\n" % (i, i) for i in rows) for rows in ((0, 1, 2), (3, 4, 5), (6, 7, 8), (9,))
    ]
    assert [info.first_row for info in infos] == first_rows(infos) == [0, 3, 6, 9]
    assert [info.rows for info in infos] == [3, 3, 3, 1]
    assert [info.size for info in infos] == [len(part) for part in parts]
    assert [info.index for info in infos] == list(range(len(parts)))
    assert b"".join(part.removeprefix(b"id,name\n") for part in parts) == data.removeprefix(b"id,name\n")


def test_parts_hold_at_least_part_bytes_and_about_a_block_more() -> None:
    data = b"h\n" + b"row\n" * 1000
    parts, infos = split(data, part_bytes=100, block_bytes=10)
    assert all(100 <= len(part) <= 100 + 10 + 4 for part in parts[:-1])
    assert sum(info.rows for info in infos) == 1000


def test_a_quoted_line_break_is_never_a_cut_even_across_blocks_and_chunks() -> None:
    long_cell = b'"' + b"line\n" * 20 + b'and ""quotes"", too\r\nend"'
    data = b"id,text\n1,short\n2," + long_cell + b"\n3,after\n"
    for block_bytes, part_bytes in [(1, 1), (4, 10), (5, 16), (40, 1)]:
        parts, infos = split(data, part_bytes=part_bytes, block_bytes=block_bytes, cuts=[25, 26, 40, 77])
        assert sum(info.rows for info in infos) == 3
        assert any(b"2," + long_cell + b"\n" in part for part in parts)
        assert [row for part in parts for row in records(part)[1:]] == records(data)[1:]
    parts, infos = split(data, part_bytes=1, block_bytes=1000)  # one block: one part
    assert [info.rows for info in infos] == [3]


def test_a_first_row_over_many_blocks_of_one_line_break_each_is_kept_whole() -> None:
    data = b'h,i\n\n\xc3\xa9,,"\n\n\n"\n2,b\n'  # its blocks `\n` may be one object (CPython caches b"\n")
    parts, infos = split(data, part_bytes=1, block_bytes=1)
    assert parts == [b'h,i\n\xc3\xa9,,"\n\n\n"\n', b"h,i\n2,b\n"]
    assert [info.rows for info in infos] == [1, 1]


def test_crlf_stays_crlf_and_is_never_cut_in_two() -> None:
    data = b"a,b\r\n1,2\r\n3,4\r\n"
    for cut in range(1, len(data)):
        parts, infos = split(data, part_bytes=1, block_bytes=1, cuts=[cut])
        assert parts == [b"a,b\r\n1,2\r\n", b"a,b\r\n3,4\r\n"]
        assert [info.rows for info in infos] == [1, 1]


def test_the_bom_and_blank_lines_before_the_header_and_the_first_row_are_left_out() -> None:
    data = BOM + b"\n  \r\nid,x\r\n\r\n \t\n1,a\r\n\n2,b\r\n"
    parts, infos = split(data, part_bytes=1000)
    assert parts == [b"id,x\r\n1,a\r\n\n2,b\r\n"]
    assert infos == [PartInfo(index=0, first_row=0, rows=2, size=len(parts[0]))]


def test_blank_lines_after_the_last_row_stay_in_the_last_part() -> None:
    data = b"id\n1\n2\n" + b"\n \n\t\n" * 50
    parts, infos = split(data, part_bytes=1, block_bytes=1)
    assert [info.rows for info in infos] == [1, 1]
    assert parts[-1] == b"id\n2\n" + b"\n \n\t\n" * 50


def test_a_last_record_without_a_line_break_keeps_none() -> None:
    parts, infos = split(b'id,t\n1,a\n2,"b\nc"', part_bytes=1, block_bytes=1)
    assert parts == [b"id,t\n1,a\n", b'id,t\n2,"b\nc"']
    assert [info.rows for info in infos] == [1, 1]


@pytest.mark.parametrize(
    "data", [b"", BOM, b"\n\r\n  \n", b"id,name", b"id,name\n", BOM + b"id\r\n\r\n \r\n", b'"multi\nline",h\n\n']
)
def test_an_input_without_data_rows_gives_no_parts(data: bytes) -> None:
    parts, infos = split(data, part_bytes=1)
    assert parts == []
    assert infos == []
    assert join_rows(data) == 0


@pytest.mark.parametrize(
    "data",
    [
        b'id,t\n1,"open\n2,b\n',
        b'"id,t\n1,2\n',
        b'id\n1\n2\n"3\n' + b"4\n" * 20,
        b"id,t\n" + b'1,"a, b",%s\n' % (b"p" * 40) * 50 + b'2,"open\n' + b"3,c\n" * 50,
    ],
)
@pytest.mark.parametrize("block_bytes", [2, 10**6])
def test_a_file_ending_inside_a_quoted_cell_cannot_be_split(data: bytes, block_bytes: int) -> None:
    with pytest.raises(InputInvalid, match="cannot be split at a row boundary") as raised:
        split(data, part_bytes=1, block_bytes=block_bytes)
    assert raised.value.code == "UnclosedQuote"


def test_lone_cr_line_endings_are_rows_as_the_join_numbers_them() -> None:
    data = b'id,t\r1,a\r\r2,"b\rc"\r3,d\r  \r4,e\n5,f\r'
    parts, infos = split(data, part_bytes=1, block_bytes=3, cuts=[5, 6, 12])
    assert [info.rows for info in infos] == [1, 1, 1, 1, 1]
    assert sum(info.rows for info in infos) == join_rows(data) == join_rows(data, input_block=1) == 5
    assert parts[1] == b'id,t\r\r2,"b\rc"\r'  # a blank line before a row goes with it


def test_a_record_longer_than_a_part_makes_a_bigger_part() -> None:
    big = b"x" * 5000
    parts, infos = split(b"id,v\n1,a\n2," + big + b"\n3,c\n", part_bytes=1, block_bytes=1, cuts=[1000, 3000])
    assert [info.rows for info in infos] == [1, 1, 1]
    assert parts[1] == b"id,v\n2," + big + b"\n"


def test_a_quote_inside_an_unquoted_cell_is_a_character_as_for_the_csv_module() -> None:
    """Quote parity would see a quoted cell open from `5'10"` to the next quote; the join does not."""
    data = b'name,height\nann,5\'10"\nbob,6\'1"\ncy,"5\'2"""\ndee,x\n'
    parts, infos = split(data, part_bytes=1, block_bytes=1)
    assert parts[:2] == [b"name,height\nann,5'10\"\n", b"name,height\nbob,6'1\"\n"]
    assert [info.rows for info in infos] == [1, 1, 1, 1]
    assert join_rows(data, input_block=1) == join_rows(data) == 4


@pytest.mark.parametrize("block_bytes", [1, 1000])
def test_a_line_of_one_blank_quoted_cell_is_blank_and_one_of_an_empty_quoted_cell_a_row(block_bytes: int) -> None:
    data = b'id,t\n"  "\n1,"a"\n""  \n""\n" \t"\n2,b\n'
    _, infos = split(data, part_bytes=1, block_bytes=block_bytes)
    assert sum(info.rows for info in infos) == join_rows(data) == join_rows(data, input_block=1) == 3


@pytest.mark.parametrize(
    "odd_line",
    [b'1,"a ""b""\nc"', b'1,x"y', b'1,"ab"c"d', b'"  "', b'""  ', b'""', b'1,"a\rb"', b"1\r2"],
)
def test_rare_quotes_in_a_big_block_are_read_as_the_join_reads_them(odd_line: bytes) -> None:
    lines = [b'%d,"a, b",%s' % (i, b"p" * 40) for i in range(100)]
    data = b"id,t,pad\n" + b"\n".join([*lines[:50], odd_line, *lines[50:]]) + b"\n"
    _, infos = split(data, part_bytes=10**6, block_bytes=10**6)
    assert sum(info.rows for info in infos) == join_rows(data) == join_rows(data, input_block=7)


def test_a_quoted_cell_in_a_big_block_with_blank_lines_around_it() -> None:
    plain = b"".join(b"%d,x\n" % i for i in range(100))
    for data in [b"id,t\n" + plain + b'1,"a\nb"\n' + plain, b"id,t\n" + plain + b'1,"a\n \n"\n\n \n' + plain + b" \n"]:
        _, infos = split(data, part_bytes=10**6, block_bytes=10**6)
        assert sum(info.rows for info in infos) == join_rows(data) == join_rows(data, input_block=7) == 201


def test_other_delimiters_a_line_of_only_delimiters_is_a_row() -> None:
    data = b"a\tb\n1\t2\n\t\n \t \n  \n3\t4\n"
    _, infos = split(data, part_bytes=1, block_bytes=1, delimiter="\t")
    assert sum(info.rows for info in infos) == join_rows(data, delimiter="\t", input_block=4) == 4
    data = data.replace(b"\t", b";")
    _, infos = split(data, part_bytes=1, block_bytes=1, delimiter=";")
    assert sum(info.rows for info in infos) == join_rows(data, delimiter=";", input_block=4) == 4


def test_the_input_chunks_are_handed_on_not_copied() -> None:
    chunks = chunked(b"id\n" + b"1234567\n" * 4096, [1000 * n for n in range(1, 33)])
    splitter = CsvSplitter(chunks, part_bytes=10_000, block_bytes=500)
    handed = [chunk for part in splitter.parts() for chunk in part.chunks()]
    identical = [chunk for chunk in handed if any(chunk is original for original in chunks)]
    assert len(identical) >= len(chunks) - 2 * len(splitter.infos) - 1


def test_a_part_must_be_read_out_before_the_next_is_taken() -> None:
    splitter = CsvSplitter([b"id\n1\n2\n3\n"], part_bytes=1, block_bytes=1)
    parts = splitter.parts()
    first = next(parts)
    with pytest.raises(RuntimeError, match="info is known once"):
        _ = first.info
    chunks = first.chunks()
    next(chunks)
    with pytest.raises(RuntimeError, match="chunks\\(\\) can be read only once"):
        first.chunks()
    with pytest.raises(RuntimeError, match="not read to its end"):
        next(parts)
    with pytest.raises(RuntimeError, match="once parts\\(\\) has been read"):
        _ = splitter.infos


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        CsvSplitter([], part_bytes=0)
    with pytest.raises(ValueError, match="one character"):
        CsvSplitter([], part_bytes=1, delimiter=";;")


# --- properties -------------------------------------------------------------------------------------------

_CELL_CHARS = st.sampled_from(["a", "7", "é", " ", "\t", ",", ";", '"', "'", "\n", "\r", "\r\n"])


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[bytes, str]:
    """Any CSV the join reads: quoted cells with line breaks and doubled quotes, quotes inside unquoted cells,
    LF, CRLF, lone CR or mixed line endings, blank lines anywhere, a BOM, a last line with no line break."""
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    endings = draw(st.sampled_from([["\n"], ["\r\n"], ["\r"], ["\n", "\r\n", "\r"]]))

    def cell() -> str:
        text = "".join(draw(st.lists(_CELL_CHARS, max_size=6)))
        style = draw(st.sampled_from(["plain", "plain", "quoted", "stray quote", "after a quoted cell"]))
        unquoted = "".join(char for char in text if char not in (delimiter, "\n", "\r"))  # quotes stay
        if style == "stray quote":  # a quote inside an unquoted cell is a character
            return "x" + unquoted
        if style == "after a quoted cell":  # `"ab"c"d`: the csv module reads on, unquoted, to the delimiter
            return '"' + text.replace('"', '""') + '"y' + unquoted
        if style == "quoted" or any(char in text for char in (delimiter, '"', "\n", "\r")):
            return '"' + text.replace('"', '""') + '"'
        return text

    width = draw(st.integers(1, 3))
    # A long plain first cell makes quotes rare: the split then replaces whole quoted cells, not the csv module.
    padding = draw(st.sampled_from([[], ["p" * 40]]))

    def record() -> str:
        return delimiter.join([*padding, *(cell() for _ in range(width))])

    blank = st.sampled_from(["", " ", " \t "])
    # A blank quoted cell alone on its line is a blank line too (`"  "`, `""  `); an empty one (`""`) is a row.
    odd = st.sampled_from(["", " ", " \t ", '""', '"  "', '"" ', '" \t"'])
    lines = [
        *draw(st.lists(blank, max_size=2)),
        record(),
        *[draw(odd) if draw(st.integers(0, 4)) == 0 else record() for _ in range(draw(st.integers(0, 12)))],
    ]
    text = "".join(line + draw(st.sampled_from(endings)) for line in lines)
    if draw(st.booleans()):
        text = text.removesuffix("\r\n").removesuffix("\n").removesuffix("\r")
    return ("\ufeff" if draw(st.booleans()) else "").encode() + text.encode(), delimiter


@PROPERTY
@given(file=csv_files(), data=st.data())
def test_the_parts_rows_are_the_joins_rows_and_their_bytes_the_inputs(
    file: tuple[bytes, str], data: st.DataObject
) -> None:
    raw, delimiter = file
    part_bytes = data.draw(st.integers(1, 120), label="part_bytes")
    block_bytes = data.draw(st.one_of(st.integers(1, 40), st.integers(41, 1000)), label="block_bytes")
    cuts = st.lists(st.integers(1, max(1, len(raw) - 1)), max_size=6)
    parts, infos = split(raw, part_bytes=part_bytes, block_bytes=block_bytes, cuts=data.draw(cuts), delimiter=delimiter)

    # The rows: the join's count, with blocks of any size; each part's too (Azure ML numbers rows in it).
    rows = join_rows(raw, delimiter=delimiter, input_block=data.draw(st.integers(1, 64)))
    assert rows == join_rows(raw, delimiter=delimiter)
    assert sum(info.rows for info in infos) == rows
    assert all(info.rows > 0 for info in infos)
    assert [info.rows for info in infos] == [join_rows(part, delimiter=delimiter) for part in parts]
    assert [info.first_row for info in infos] == first_rows(infos)
    assert [(info.index, info.size) for info in infos] == [(index, len(part)) for index, part in enumerate(parts)]
    if not rows:
        assert parts == []
        return

    # Whole records: each part reads as the input's header, then its share of the input's data records.
    header, *rows_read = records(raw, delimiter)
    in_parts = [records(part, delimiter) for part in parts]
    assert all(part_records[0] == header for part_records in in_parts)
    assert [row for part_records in in_parts for row in part_records[1:]] == rows_read

    # The bytes: each part is the same header line, then a piece of the input, the first one starting with
    # a row; the pieces, one after another, are the input after the header less the blank lines before the
    # first row.
    header_line = _first_record(parts[0], delimiter)
    assert records(header_line, delimiter) == [header]
    assert all(part.startswith(header_line) for part in parts)
    first_row = _first_record(parts[0][len(header_line) :], delimiter)
    assert not _blank(records_with_blanks(first_row, delimiter)[0])  # later parts may start with blank lines
    rest = b"".join(part[len(header_line) :] for part in parts)
    input_text = raw.removeprefix(BOM)
    assert input_text.endswith(rest)
    before = input_text[: -len(rest)]
    assert header_line in before
    assert records(before, delimiter) == [header]  # the header line, and blank lines only

    # Deterministic: the same input in other chunks gives the same parts.
    again = split(raw, part_bytes=part_bytes, block_bytes=block_bytes, cuts=data.draw(cuts), delimiter=delimiter)
    assert again == (parts, infos)


def _first_record(data: bytes, delimiter: str) -> bytes:
    """The bytes of the first record in `data`: the lines the csv module reads for it."""
    reader = csv.reader(io.StringIO(data.decode(), newline=""), delimiter=delimiter)
    next(reader)
    return "".join(io.StringIO(data.decode(), newline="").readlines()[: reader.line_num]).encode()
