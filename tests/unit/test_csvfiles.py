"""CSV validation (on a bounded head) and the streamed join of predictions to input rows."""

from __future__ import annotations

import csv
import io
import time

import pytest

from shared.csvfiles import validate_head, validate_name_and_size
from shared.csvjoin import (
    JoinStats,
    Prediction,
    PredictionIndex,
    PredictionsOutOfOrder,
    join_predictions,
    parse_predictions,
)
from shared.errors import InputInvalid


def chunked(data: bytes, size: int = 5) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def rejects(code: str, head: bytes, **kwargs: object) -> str:
    with pytest.raises(InputInvalid) as caught:
        validate_head(head, truncated=bool(kwargs.pop("truncated", False)), **kwargs)  # type: ignore[arg-type]
    assert caught.value.code == code
    return caught.value.message


def test_a_good_csv_passes_and_reports_its_columns() -> None:
    head = validate_head(b"carat,cut\n0.3,Ideal\n0.4,Good\n", truncated=False, required_columns=["cut"])
    assert head.columns == ("carat", "cut")
    assert head.rows_in_head == 2


def test_a_utf8_bom_is_fine() -> None:
    assert validate_head("\ufeffa,b\n1,2\n".encode(), truncated=False).columns == ("a", "b")


def test_empty_and_whitespace_only() -> None:
    rejects("Empty", b"")
    rejects("Empty", b"\n\n  \n")


def test_header_only() -> None:
    assert "no data rows" in rejects("HeaderOnly", b"a,b,c\n")


def test_not_utf8_names_the_offset() -> None:
    message = rejects("NotUtf8", "a,b\n1,caf\xe9\n".encode("latin-1"))
    assert "offset 9" in message


def test_a_multibyte_character_cut_by_the_head_limit_is_not_an_error() -> None:
    data = "a,b\n1,é\n2,é\n".encode()
    head = validate_head(data[:-2], truncated=True)  # ends inside the last two-byte é
    assert (head.columns, head.rows_in_head) == (("a", "b"), 1)
    rejects("NotUtf8", data[:-2], truncated=False)


def test_wrong_delimiter_is_named() -> None:
    assert "semicolon" in rejects("WrongDelimiter", b"a;b;c\n1;2;3\n")
    assert "comma" in rejects("WrongDelimiter", b"a,b\n1,2\n", delimiter=";")


def test_duplicate_and_empty_column_names() -> None:
    assert "a" in rejects("DuplicateColumns", b"a,b,a\n1,2,3\n")
    assert "column 2" in rejects("EmptyColumnName", b"a,,c\n1,2,3\n")


def test_missing_required_columns_lists_them() -> None:
    message = rejects("MissingColumns", b"carat,cut\n1,Ideal\n", required_columns=["carat", "color", "clarity"])
    assert "color, clarity" in message


def test_ragged_rows() -> None:
    assert "row 2" in rejects("RaggedRows", b"a,b\n1,2\n3\n")


def test_a_truncated_head_ignores_the_partial_last_line() -> None:
    head = validate_head(b"a,b\n1,2\n3,", truncated=True)
    assert head.rows_in_head == 1


def test_a_header_longer_than_the_head() -> None:
    rejects("HeaderTooLong", b"a" * 100, truncated=True)


def test_name_and_size_rules() -> None:
    with pytest.raises(InputInvalid, match=r"not a \.csv"):
        validate_name_and_size("data.parquet", 10, 100)
    with pytest.raises(InputInvalid, match="over the 100-byte limit"):
        validate_name_and_size("data.CSV", 101, 100)
    validate_name_and_size("dir/data.CSV", 100, 100)


def test_parse_predictions_keeps_delimiters_inside_the_prediction() -> None:
    lines = b'0,12.5,x.csv\n1,"[1, 2]",x.csv\n2,a,b,x.csv\n'
    assert list(parse_predictions(chunked(lines))) == [
        Prediction(0, "12.5"),
        Prediction(1, "[1, 2]"),
        Prediction(2, "a,b"),
    ]


def test_parse_predictions_rejects_a_header_or_short_lines() -> None:
    with pytest.raises(InputInvalid, match="not an integer"):
        list(parse_predictions([b"row,prediction,file_name\n"]))
    with pytest.raises(InputInvalid, match="row,prediction,file_name"):
        list(parse_predictions([b"0,1\n"]))


def test_join_streams_rows_with_their_predictions() -> None:
    source = '\ufeffcarat,cut\n0.3,Ideal\n0.4,"Very, Good"\n'.encode()
    stats = JoinStats()
    out = b"".join(join_predictions(chunked(source), [Prediction(0, "512.5"), Prediction(1, "733")], stats))
    assert out == b'carat,cut,prediction\n0.3,Ideal,512.5\n0.4,"Very, Good",733\n'
    assert (stats.rows_in, stats.rows_out, stats.rows_missing) == (2, 2, 0)


def test_join_marks_rows_without_a_prediction_and_counts_extras() -> None:
    source = b"a\n1\n2\n3\n"
    stats = JoinStats()
    out = b"".join(join_predictions([source], [Prediction(0, "x"), Prediction(2, "z"), Prediction(9, "?")], stats))
    assert out == b"a,prediction\n1,x\n2,\n3,z\n"
    assert (stats.rows_out, stats.rows_missing, stats.extra_predictions) == (2, 1, 1)


def test_join_names_the_column_freely_when_prediction_exists() -> None:
    out = b"".join(join_predictions([b"prediction\nold\n"], [Prediction(0, "new")], JoinStats()))
    assert out == b"prediction,prediction_2\nold,new\n"


def test_out_of_order_predictions_raise_then_join_through_the_index() -> None:
    source = b"a\n1\n2\n3\n"
    shuffled = [Prediction(2, "z"), Prediction(0, "x"), Prediction(1, "y")]
    with pytest.raises(PredictionsOutOfOrder):
        b"".join(join_predictions([source], shuffled, JoinStats()))
    index = PredictionIndex(shuffled)
    try:
        stats = JoinStats()
        out = b"".join(join_predictions([source], index, stats))
    finally:
        index.close()
    assert out == b"a,prediction\n1,x\n2,y\n3,z\n"
    assert stats.rows_out == 3


def test_join_output_comes_in_bounded_chunks() -> None:
    rows = 50_000
    source = b"value\n" + b"".join(b"%d\n" % i for i in range(rows))
    chunks = list(join_predictions(chunked(source, 4096), (Prediction(i, "p") for i in range(rows)), JoinStats()))
    assert len(chunks) > 1
    assert max(len(chunk) for chunk in chunks) < 300 * 1024


@pytest.mark.parametrize("data", [b",,,\n", b'""\n', b" , \n\n"])
def test_only_blank_cells_is_empty(data: bytes) -> None:
    rejects("Empty", data)


def test_form_feeds_and_line_separators_inside_fields_are_data() -> None:
    head = validate_head("a,b\n1,x\x0cy\n2,p\u2028q\n".encode(), truncated=False)
    assert head.rows_in_head == 2


def test_a_quoted_field_with_a_newline_is_one_row() -> None:
    assert validate_head(b'a,b\n1,"two\nlines"\n2,x\n', truncated=False).rows_in_head == 2


# Regressions found by the properties in test_csv_properties.py. Rows are what Azure ML (pandas.read_csv)
# numbers: an empty line or one of only spaces/tabs is not a row, any other record is.


def joined(source: bytes, predictions: dict[int, str], size: int = 3) -> tuple[bytes, JoinStats]:
    stats = JoinStats()
    out = b"".join(join_predictions(chunked(source, size), [Prediction(*p) for p in predictions.items()], stats))
    return out, stats


def test_a_row_of_empty_cells_keeps_its_index_and_its_prediction() -> None:
    # Was: the `,` row was dropped, so `3,4` got the prediction of row 1 (y) instead of its own (z).
    out, stats = joined(b"a,b\n1,2\n,\n3,4\n", {0: "x", 1: "y", 2: "z"})
    assert out == b"a,b,prediction\n1,2,x\n,,y\n3,4,z\n"
    assert (stats.rows_in, stats.rows_out, stats.rows_missing) == (3, 3, 0)
    out, _ = joined(b'a\n1\n""\n3\n', {0: "x", 1: "y", 2: "z"})  # a single empty cell, as csv.writer writes it
    assert out == b"a,prediction\n1,x\n,y\n3,z\n"
    assert validate_head(b"a,b\n1,2\n,\n3,4\n", truncated=False).rows_in_head == 3


def test_blank_lines_are_not_rows_anywhere() -> None:
    # Was: a blank line before the header became the header: the output had `prediction` as its only
    # column and the real header as data row 0, every prediction one row off.
    out, stats = joined(b"\r\n\na,b\n1,2\n  \n\t\n\n3,4\n", {0: "x", 1: "z"})
    assert out == b"a,b,prediction\n1,2,x\n3,4,z\n"
    assert stats.rows_in == 2
    assert validate_head(b"\na,b\n1,2\n", truncated=False).columns == ("a", "b")


def test_a_header_of_empty_cells_is_not_skipped() -> None:
    # Was: skipped, and the first data row taken as the header (pandas takes `,` as the header).
    assert "column 1" in rejects("EmptyColumnName", b",\na,b\n1,2\n")


def test_a_short_row_of_empty_cells_is_ragged() -> None:
    assert "row 2 has 2 fields" in rejects("RaggedRows", b"a,b,c\n1,2,3\n,\n")


def test_a_lone_carriage_return_in_a_cell_survives_the_join() -> None:
    # Was (Python 3.11): written unquoted under a \n terminator, so the row came back split in two.
    out, _ = joined(b'a,"b\rc"\r\n1,"x\ry"\r\n2,z\r\n', {0: "p\rq", 1: "r"})
    assert list(csv.reader(io.StringIO(out.decode(), newline=""))) == [
        ["a", "b\rc", "prediction"],
        ["1", "x\ry", "p\rq"],
        ["2", "z", "r"],
    ]


def test_a_field_over_128_kib_is_data() -> None:
    # Was: `_csv.Error: field larger than field limit (131072)`, neither a rejection nor a join.
    big = "x" * 200_000
    source = f'a,b\n1,"{big}"\n'.encode()
    assert validate_head(source, truncated=False).rows_in_head == 1
    out, _ = joined(source, {0: "p"}, size=65536)
    assert out == f"a,b,prediction\n1,{big},p\n".encode()


def test_a_head_cut_inside_the_first_data_row_is_not_judged() -> None:
    # Was: the partial quoted row was judged (RaggedRows), or the header alone made it HeaderOnly.
    data = b'a,b\n"x\ny",1\n2,3\n'
    for cut in (4, 7, 9):
        head = validate_head(data[:cut], truncated=True)
        assert (head.columns, head.rows_in_head) == (("a", "b"), 0)
    assert validate_head(data[:12], truncated=True).rows_in_head == 1


def test_a_head_without_a_complete_header_is_header_too_long() -> None:
    # Was: HeaderOnly for a quoted header cut after its inner newline; Empty for blank lines then a cut.
    rejects("HeaderTooLong", b'"a\nb",c\n1,2\n'[:3], truncated=True)
    assert "no complete header line" in rejects("HeaderTooLong", b"\n\n\na,", truncated=True)


def test_the_prediction_column_does_not_collide_with_a_padded_name() -> None:
    out, _ = joined(b" prediction ,b\n1,2\n", {0: "x"})
    assert out == b" prediction ,b,prediction_2\n1,2,x\n"


def test_twenty_thousand_columns_are_checked_fast_and_listed_briefly() -> None:
    header = ",".join(f"c{i}" for i in range(20_000)).encode() + b"\n" + b",".join(b"1" for _ in range(20_000)) + b"\n"
    started = time.perf_counter()
    with pytest.raises(InputInvalid) as caught:
        validate_head(header, truncated=False, delimiter=",", required_columns=("carat",))
    assert time.perf_counter() - started < 1.0  # was 4.7 s: a quadratic duplicate check
    assert caught.value.code == "MissingColumns"
    assert caught.value.message.endswith("c19, ... (20000 columns)")


def test_a_bad_utf8_byte_past_the_head_is_a_rejection_not_a_crash() -> None:
    data = b"a,b\n" + b"1,2\n" * 10 + b"3,\xff\n"
    stats = JoinStats()
    with pytest.raises(InputInvalid) as caught:
        b"".join(join_predictions([data], [], stats))
    assert caught.value.code == "NotUtf8"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("a,b\n1,2\n".encode("utf-16-le"), "NotUtf8"),  # UTF-16 without a BOM is valid UTF-8, full of NULs
        (b"\x00" * 64, "NotUtf8"),
        (b'a,b\n1,2\n3,"4\n', "UnclosedQuote"),
    ],
)
def test_content_that_would_fail_in_azure_ml_is_rejected_first(data: bytes, code: str) -> None:
    with pytest.raises(InputInvalid) as caught:
        validate_head(data, truncated=False)
    assert caught.value.code == code


def test_a_quote_open_at_the_cut_of_a_long_file_is_not_judged() -> None:
    assert validate_head(b'a,b\n1,2\n3,"4 and more', truncated=True).rows_in_head == 1


def test_a_file_named_only_by_its_extension_is_not_a_csv() -> None:
    with pytest.raises(InputInvalid, match=r"not a \.csv file"):
        validate_name_and_size("dir/.csv", 10, 100)
