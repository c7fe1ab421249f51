"""CSV validation (on a bounded head) and the streamed join of predictions to input rows."""

from __future__ import annotations

import pytest

from shared.csvfiles import (
    JoinStats,
    Prediction,
    PredictionIndex,
    PredictionsOutOfOrder,
    join_predictions,
    parse_predictions,
    validate_head,
    validate_name_and_size,
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
