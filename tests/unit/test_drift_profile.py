"""The column profile (shared/drift/profile.py) and the join's profiler (shared/drift/stream.py), by property.

- Profiles merge: the profile of any split of the rows, merged, is the profile of the whole (counts, nulls,
  invalid cells, unseen values exact; mean and squared deviations to 1e-9 of the values' magnitude).
- The profile of a file does not depend on how it is cut: the profiler, fed by the join whatever the download's
  chunks and the join's blocks (plain or through the csv module), gives the profile of the rows.
- The JSON form round-trips; a document that is not a profile is ReferenceInvalid, saying what is wrong.
- Sampling: with a stride of k, only every k-th block is profiled, while every row is seen.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.csvjoin import JoinStats, join_predictions
from shared.csvjoin import join as join_module
from shared.drift.profile import (
    UNSEEN_KEPT,
    CategoricalColumn,
    NumericColumn,
    Profile,
    empty_like,
    merge,
    profile_from_bytes,
    profile_from_json,
    profile_to_json,
)
from shared.drift.stream import Profiler, count_cells, sample_every
from shared.errors import PermanentError, ReferenceInvalid

REFERENCE = Profile(
    columns={
        "size": NumericColumn(edges=(-10.0, 0.0, 0.5, 100.0), counts=[0] * 5),
        "colour": CategoricalColumn(categories=("red", "green", "x,y"), counts=[0] * 3, complete=True),
        "city": CategoricalColumn(categories=("Oslo",), counts=[0], complete=False),
        "weight": NumericColumn(edges=(), counts=[0]),
    },
    prediction=NumericColumn(edges=(1.0,), counts=[0, 0]),
    source="train.csv",
)
NAMES = list(REFERENCE.columns)
#: The input's columns: the reference's in another order, and one the reference lacks.
INPUT_COLUMNS = ["city", "size", "extra", "colour", "weight"]
KIND = {"size": "numeric", "weight": "numeric", "colour": "categorical", "city": "categorical", "extra": "any"}

Row = dict[str, str]

numeric_cells = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(repr),
    st.integers(min_value=-1000, max_value=1000).map(str),
    st.sampled_from(["", " ", "NA", "nan", "NULL", "None", "n/a", "abc", "1,5", "inf", "-inf", "-10", "0", "0.5"]),
)
categorical_cells = st.one_of(
    st.sampled_from(["red", "green", "x,y", " red ", "Oslo", "blue", "", "NA", "n/a", "null", 'q"t', "é"]),
    st.text(alphabet="abcz ,\"'", max_size=4),
)
rows_strategy = st.lists(
    st.fixed_dictionaries(
        {name: numeric_cells if KIND[name] == "numeric" else categorical_cells for name in INPUT_COLUMNS}
    ),
    max_size=40,
)
prediction_values = st.one_of(st.none(), st.floats(-5, 5).map(repr), st.sampled_from(["", "nan", "oops", "1.0"]))


def profile_of(rows: list[Row], predictions: list[str | None], reference: Profile = REFERENCE) -> Profile:
    """The profile of these rows, counted in one go (no blocks, no merge)."""
    profile = empty_like(reference)
    for name in reference.columns:
        profile.columns[name] = count_cells(profile.columns[name], [row[name].encode() for row in rows])
    assert profile.prediction is not None
    profile.prediction = count_cells(profile.prediction, [(value or "").encode() for value in predictions])
    profile.rows = len(rows)
    return profile


def close(got: float, want: float, floor: float) -> bool:
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=floor)


def assert_same_profile(got: Profile, want: Profile) -> None:
    """Equal, but for mean and squared deviations: to 1e-9, relative to the values' magnitude."""
    got_json, want_json = profile_to_json(got), profile_to_json(want)
    got_columns = {**got_json.pop("columns"), "prediction": got_json.pop("prediction")}
    want_columns = {**want_json.pop("columns"), "prediction": want_json.pop("prediction")}
    assert got_json | {"source": ""} == want_json | {"source": ""}
    assert list(got_columns) == list(want_columns)
    for name, want_column in want_columns.items():
        got_column, exact = dict(got_columns[name]), dict(want_column)
        if want_column["kind"] == "numeric":
            magnitude = max(abs(want_column["min"] or 0.0), abs(want_column["max"] or 0.0))
            floor = 1e-9 * magnitude
            assert close(got_column.pop("mean"), exact.pop("mean"), floor), name
            assert close(got_column.pop("m2"), exact.pop("m2"), want_column["count"] * floor * floor), name
            assert close(got_column.pop("std"), exact.pop("std"), floor), name
        assert got_column == exact, name


@settings(max_examples=60, deadline=None)
@given(rows=rows_strategy, data=st.data())
def test_the_merged_profiles_of_two_halves_are_the_profile_of_the_whole(rows: list[Row], data: st.DataObject) -> None:
    predictions = data.draw(st.lists(prediction_values, min_size=len(rows), max_size=len(rows)))
    cut = data.draw(st.integers(min_value=0, max_value=len(rows)))
    halves = merge(profile_of(rows[:cut], predictions[:cut]), profile_of(rows[cut:], predictions[cut:]))
    assert_same_profile(halves, profile_of(rows, predictions))


def test_merge_needs_the_same_shape() -> None:
    other_bins = Profile(columns={**REFERENCE.columns, "size": NumericColumn(edges=(1.0,), counts=[0, 0])})
    other_bins.prediction = REFERENCE.prediction
    with pytest.raises(ValueError, match="different bins"):
        merge(REFERENCE, other_bins)
    with pytest.raises(ValueError, match="only one of the profiles has a prediction"):
        merge(REFERENCE, Profile(columns=dict(REFERENCE.columns)))
    with pytest.raises(ValueError, match="different columns"):
        merge(REFERENCE, Profile(columns={"size": REFERENCE.columns["size"]}, prediction=REFERENCE.prediction))


def csv_bytes(rows: list[Row], *, line_end: str) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator=line_end)
    writer.writerow(INPUT_COLUMNS)
    writer.writerows([row[name] for name in INPUT_COLUMNS] for row in rows)
    return text.getvalue().encode("utf-8")


@settings(max_examples=60, deadline=None)
@given(
    rows=rows_strategy,
    data=st.data(),
    block=st.sampled_from([1, 7, 64, 300, 1 << 20]),
    line_end=st.sampled_from(["\n", "\r\n"]),
)
def test_the_profile_does_not_depend_on_how_the_join_cuts_the_file(
    rows: list[Row], data: st.DataObject, block: int, line_end: str
) -> None:
    predictions = data.draw(st.lists(prediction_values, min_size=len(rows), max_size=len(rows)))
    content = csv_bytes(rows, line_end=line_end)
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=len(content)), max_size=4)))
    chunks = [content[start:end] for start, end in zip([0, *cuts], [*cuts, len(content)], strict=True)]
    profiler = Profiler(REFERENCE)
    with mock.patch.object(join_module, "INPUT_BLOCK", block):
        output = b"".join(join_predictions(chunks, predictions.__getitem__, JoinStats(), observer=profiler))
    assert output.count(b"\n") >= len(rows) + 1
    result = profiler.result()
    assert (result.rows_seen, result.rows_profiled, result.rows_skipped) == (len(rows), len(rows), 0)
    assert (result.columns_missing, result.columns_extra) == ([], ["extra"])
    assert_same_profile(result.profile, profile_of(rows, predictions))


def test_plain_and_csv_blocks_profile_alike() -> None:
    """The same rows as a plain block (the join's output lines) and as the csv module's records."""
    lines = [b"Oslo,1.5,e,red,2", b"Bergen,abc,e,blue,", b"NA,-11,e,,nan", b"Oslo,100,e,green,1e3"]
    values = [b"0.5", b"", b"2", b"oops"]
    plain, records = Profiler(REFERENCE), Profiler(REFERENCE)
    plain.header(INPUT_COLUMNS)
    records.header(INPUT_COLUMNS)
    plain.plain(lines, values)
    records.records([line.decode().split(",") for line in lines], values)
    assert plain.result() == records.result()
    size = plain.result().profile.columns["size"]
    assert isinstance(size, NumericColumn)
    assert (size.counts, size.count, size.invalid, size.nulls) == ([1, 0, 0, 1, 1], 3, 1, 0)


def test_lines_of_other_widths_are_skipped_even_when_they_add_up() -> None:
    """A short and a long line in a plain block have as many cells as two whole lines: both are skipped, as the
    csv module's path skips them, not read as two rows with shifted cells."""
    lines = [b"Oslo,1.5,e,red,2", b"Oslo,2.5,e", b"Oslo,3.5,e,red,4,5,6", b"Oslo,4.5,e,red,5"]
    values = [b"1", b"2", b"3", b"4"]
    plain, records = Profiler(REFERENCE), Profiler(REFERENCE)
    plain.header(INPUT_COLUMNS)
    records.header(INPUT_COLUMNS)
    plain.plain(lines, values)
    records.records([line.decode().split(",") for line in lines], values)
    assert plain.result() == records.result()
    result = plain.result()
    assert (result.rows_seen, result.rows_profiled, result.rows_skipped) == (4, 2, 2)
    size = result.profile.columns["size"]
    assert isinstance(size, NumericColumn)
    assert (size.count, size.min, size.max) == (2, 1.5, 4.5)


def test_text_in_a_numeric_column_is_invalid_and_null_tokens_are_nulls() -> None:
    column = count_cells(
        NumericColumn(edges=(0.0,), counts=[0, 0]),
        [b"1.5", b"abc", b"", b"NA", b"nan", b"  ", b"null", b"N/A", b"inf", b"-2", b"1,5"],
    )
    assert isinstance(column, NumericColumn)
    assert (column.count, column.nulls, column.invalid, column.counts) == (2, 6, 3, [1, 1])
    # a block of numbers only takes the fast path: the same rules
    column = count_cells(NumericColumn(edges=(0.0,), counts=[0, 0]), [b"1", b"nan", b"", b"-inf", b"-1"])
    assert isinstance(column, NumericColumn)
    assert (column.count, column.nulls, column.invalid, column.mean) == (2, 2, 1, 0.0)


def test_unseen_values_of_a_complete_column_keep_the_smallest_few() -> None:
    values = [f"v{index:02d}".encode() for index in range(25, 0, -1)]
    complete = count_cells(REFERENCE.columns["colour"], [b"red", b" red ", *values, b"NA", b""])
    assert isinstance(complete, CategoricalColumn)
    assert (complete.counts, complete.other, complete.nulls) == ([2, 0, 0], 25, 2)
    assert complete.unseen == tuple(f"v{index:02d}" for index in range(1, UNSEEN_KEPT + 1))
    incomplete = count_cells(REFERENCE.columns["city"], [b"Oslo", *values])
    assert isinstance(incomplete, CategoricalColumn)
    assert (incomplete.counts, incomplete.other, incomplete.unseen) == ([1], 25, ())


@settings(max_examples=40, deadline=None)
@given(rows=rows_strategy, data=st.data())
def test_the_json_form_round_trips(rows: list[Row], data: st.DataObject) -> None:
    predictions = data.draw(st.lists(prediction_values, min_size=len(rows), max_size=len(rows)))
    profile = profile_of(rows, predictions)
    profile.source = data.draw(st.text(max_size=10))
    assert profile_from_json(profile_to_json(profile)) == profile
    assert profile_from_bytes(json.dumps(profile_to_json(profile)).encode("utf-8")) == profile


def valid_document() -> dict[str, Any]:
    return copy.deepcopy(profile_to_json(REFERENCE))


def changed(change: Any) -> bytes:
    document = valid_document()
    change(document)
    return json.dumps(document).encode("utf-8")


INVALID = {
    "not JSON": (b"{not json", "not JSON"),
    "not UTF-8": (b"\xff\xfe{}", "not JSON"),
    "not an object": (b"[]", "at the document: [] is not of type 'object'"),
    "another format": (changed(lambda d: d.update(format="evidently")), "at format: 'dropscore.profile' was expected"),
    "another version": (changed(lambda d: d.update(version=2)), "at version"),
    "no columns": (changed(lambda d: d.pop("columns")), "'columns' is a required property"),
    "zero columns": (changed(lambda d: d.update(columns={})), "at columns"),
    "a negative count": (changed(lambda d: d["columns"]["size"]["counts"].__setitem__(0, -1)), "at columns/size"),
    "counts not matching edges": (
        changed(lambda d: d["columns"]["size"]["counts"].append(0)),
        "size has 4 edges but not one count more",
    ),
    "decreasing edges": (
        changed(lambda d: d["columns"]["size"].update(edges=[0.0, -10.0, 0.5, 100.0])),
        "the bin edges of size are not increasing",
    ),
    "repeated edges": (
        changed(lambda d: d["columns"]["size"].update(edges=[-10.0, 0.0, 0.0, 100.0])),
        "the bin edges of size are not increasing",
    ),
    "categories and counts": (
        changed(lambda d: d["columns"]["colour"]["counts"].pop()),
        "the categories and counts of colour do not match",
    ),
    "repeated categories": (
        changed(lambda d: d["columns"]["colour"].update(categories=["red", "red", "x,y"])),
        "the categories and counts of colour do not match",
    ),
    "the prediction's counts": (
        changed(lambda d: d["prediction"].update(counts=[0])),
        "the prediction has 1 edges but not one count more",
    ),
}


@pytest.mark.parametrize(("content", "message"), INVALID.values(), ids=INVALID.keys())
def test_a_document_that_is_not_a_profile_is_reference_invalid(content: bytes, message: str) -> None:
    with pytest.raises(ReferenceInvalid) as raised:
        profile_from_bytes(content)
    assert str(raised.value).startswith("not a dropscore profile: ")
    assert message in str(raised.value)
    assert isinstance(raised.value, PermanentError)
    assert raised.value.code == "ReferenceInvalid"


def test_the_valid_document_loads() -> None:
    assert profile_from_bytes(json.dumps(valid_document()).encode()) == REFERENCE


MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("size", "sample_mb", "stride"),
    [
        (0, 8, 1),
        (1, 8, 1),
        (8 * MIB, 8, 1),
        (8 * MIB + 1, 8, 2),
        (80 * MIB, 8, 10),
        (80 * MIB + 1, 8, 11),
        (MIB, 1, 1),
        (5 * MIB, 1, 5),
        (1024 * MIB, 1024, 1),
        (10_000 * MIB, 1024, 10),
    ],
)
def test_sample_every(size: int, sample_mb: int, stride: int) -> None:
    assert sample_every(size, sample_mb=sample_mb) == stride


@settings(max_examples=40, deadline=None)
@given(blocks=st.lists(rows_strategy.map(lambda rows: rows[:6]), max_size=12), stride=st.integers(1, 5))
def test_a_stride_profiles_every_kth_block_and_sees_every_row(blocks: list[list[Row]], stride: int) -> None:
    profiler = Profiler(REFERENCE, sample_every=stride)
    profiler.header(INPUT_COLUMNS)
    for rows in blocks:
        profiler.records([[row[name] for name in INPUT_COLUMNS] for row in rows], [b"1.5"] * len(rows))
    sampled = [row for index, rows in enumerate(blocks) if index % stride == 0 for row in rows]
    result = profiler.result()
    assert result.rows_seen == sum(map(len, blocks))
    assert result.rows_profiled == len(sampled) == result.profile.rows
    assert_same_profile(result.profile, profile_of(sampled, ["1.5"] * len(sampled)))
