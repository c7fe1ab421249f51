"""The block join gives the bytes of the plain csv-module join it replaced, on any text cut anywhere.

The reference below is the earlier implementation's logic on the whole file at once: csv.reader over the
decoded text, blank lines skipped, each row written by csv.writer with its prediction (the first one in the
file when a row has several: the merge took the first, the earlier SQLite index the last; now both take the
first). The join under test reads blocks of whole lines, takes plain blocks as bytes and the rest through
the csv module; here its block, bucket, spill and read-ahead sizes are shrunk to a few bytes or rows, so
every boundary (a CRLF, a quoted newline, a multi-byte character, a bucket) falls between blocks somewhere.
"""

from __future__ import annotations

import csv
import io
import itertools
import random
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from unittest import mock

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from shared.csvfiles import is_blank_line
from shared.csvjoin import (
    JoinStats,
    Prediction,
    PredictionIndex,
    PredictionsOutOfOrder,
    join_predictions,
    parse_predictions,
    prediction_column,
)
from shared.csvjoin import index as index_module
from shared.csvjoin import join as join_module
from shared.csvjoin import predictions as predictions_module
from shared.errors import InputInvalid

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: Pieces of text that matter to a CSV reader, and characters of one to four UTF-8 bytes.
TOKENS = ["a", "b7", " ", "\t", ",", ";", "|", '"', '""', "\r", "\n", "\r\n", "é", "中", "😀", "\x00", "\ufeff"]
TEXT = st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)
VALUES = st.lists(st.sampled_from(["1.5", "x", " ", ",", '"', "\r", "\n", "é", ""]), max_size=3).map("".join)
DELIMITERS = st.sampled_from([",", ";", "\t", "|", "é"])

Outcome = tuple[bytes, tuple[int, int, int, int]] | str


def reference(data: bytes, predictions: list[Prediction], *, delimiter: str) -> Outcome:
    """What complete_job wrote before: the merge join, or the index join when the rows are out of order."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return "NotUtf8"
    records = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if not is_blank_line(r)]
    if not records:
        return b"", (0, 0, 0, 0)
    header, *rows = records
    ordered = all(a.row <= b.row for a, b in itertools.pairwise(predictions))
    if ordered:
        found, extras = merged(predictions, len(rows))
    else:  # the index
        found, extras = {}, 0
        for p in predictions:
            found.setdefault(p.row, p.value)
    buffer = io.StringIO()
    plain = csv.writer(buffer, lineterminator="\n")
    quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    for out in [[*header, prediction_column(header)]] + [[*r, found.get(i, "")] for i, r in enumerate(rows)]:
        (quoted if "\r" in "".join(out) else plain).writerow(out)
    scored = sum(1 for i in range(len(rows)) if i in found)
    return buffer.getvalue().encode(), (len(rows), scored, len(rows) - scored, extras)


def merged(predictions: list[Prediction], rows: int) -> tuple[dict[int, str], int]:
    """The merge walk: each row takes the first prediction with its index, passing over lower ones; what is
    left after the last row counts as extra."""
    found, at = {}, 0
    for row in range(rows):
        while at < len(predictions) and predictions[at].row < row:
            at += 1
        if at < len(predictions) and predictions[at].row == row:
            found[row] = predictions[at].value
            at += 1
    return found, len(predictions) - at


def joined(chunks: list[bytes], predictions: Callable[[], Iterable[Prediction]], *, delimiter: str) -> Outcome:
    """complete_job's way: the merge join, and the index join when the merge finds the rows out of order;
    `predictions` gives them afresh each time, as a new download would."""
    try:
        try:
            return _run(chunks, predictions(), delimiter=delimiter)
        except PredictionsOutOfOrder:
            index = PredictionIndex(predictions())
            try:
                return _run(chunks, index, delimiter=delimiter)
            finally:
                index.close()
    except InputInvalid as exc:
        return exc.code


def _run(chunks: list[bytes], predictions: Iterable[Prediction] | PredictionIndex, *, delimiter: str) -> Outcome:
    stats = JoinStats()
    out = b"".join(join_predictions(chunks, predictions, stats, delimiter=delimiter))
    return out, (stats.rows_in, stats.rows_out, stats.rows_missing, stats.extra_predictions)


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    return [data[a:b] for a, b in itertools.pairwise([0, *sorted(cuts), len(data)])]


def tiny_blocks(data: st.DataObject) -> ExitStack:
    """Blocks of a few bytes and buckets of a few rows, so every boundary is crossed in a small file."""
    sizes = {  # drawn before anything is patched: a draw may end the example
        (join_module, "INPUT_BLOCK"): data.draw(st.integers(1, 24), "block"),
        (predictions_module, "PREDICTIONS_BLOCK"): data.draw(st.integers(1, 24), "predictions block"),
        (index_module, "BUCKET_ROWS"): data.draw(st.integers(1, 5), "bucket"),
        (index_module, "PENDING_ROWS"): data.draw(st.integers(1, 6), "pending"),
        (predictions_module, "LOOKAHEAD_BYTES"): data.draw(st.integers(1, 64), "lookahead"),
    }
    stack = ExitStack()
    for (module, name), size in sizes.items():
        stack.enter_context(mock.patch.object(module, name, size))
    return stack


@PROPERTY
@given(text=TEXT, bom=st.booleans(), delimiter=DELIMITERS, data=st.data())
def test_any_text_joins_to_the_reference_bytes(text: str, bom: bool, delimiter: str, data: st.DataObject) -> None:
    raw = ("\ufeff" if bom else "").encode() + text.encode()
    rows = st.integers(-1, 12)
    predictions = [Prediction(r, v) for r, v in data.draw(st.lists(st.tuples(rows, VALUES), max_size=14))]
    if data.draw(st.booleans(), "in order"):
        predictions.sort(key=lambda p: p.row)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=8), "cuts")
    with tiny_blocks(data):
        assert joined(cut(raw, cuts), lambda: predictions, delimiter=delimiter) == reference(
            raw, predictions, delimiter=delimiter
        )


@PROPERTY
@given(text=TEXT, delimiter=DELIMITERS, data=st.data())
def test_azure_ml_output_files_join_to_the_reference_bytes(text: str, delimiter: str, data: st.DataObject) -> None:
    """The same from the predictions file's bytes, cut anywhere, so the merge also reads ahead for rows out of
    order (a hint that may be wrong: it may only cost time, and the extra predictions' count, never rows)."""
    raw = text.encode()
    lines = data.draw(st.lists(st.tuples(st.integers(-1, 12), st.lists(VALUES, min_size=1, max_size=2))), "lines")
    if data.draw(st.booleans(), "in order"):
        lines.sort(key=lambda line: line[0])
    buffer = io.StringIO()
    for row, parts in lines:
        csv.writer(buffer, lineterminator=data.draw(st.sampled_from(["\n", "\r\n"]))).writerow([row, *parts, "f.csv"])
    file = buffer.getvalue().encode()
    predictions = reference_parse(buffer.getvalue())
    assume(not isinstance(predictions, str))  # a lone CR in a prediction: not a file Azure ML writes
    cuts = data.draw(st.lists(st.integers(0, len(file)), max_size=6), "cuts")
    with tiny_blocks(data):
        got = joined([raw], lambda: parse_predictions(cut(file, cuts)), delimiter=delimiter)
    expected = reference(raw, predictions, delimiter=delimiter)
    if isinstance(got, str) or isinstance(expected, str):
        assert got == expected
    else:
        assert got[0] == expected[0]
        assert got[1][:3] == expected[1][:3]


@PROPERTY
@given(text=TEXT, data=st.data())
def test_a_bad_byte_anywhere_is_not_utf8(text: str, data: st.DataObject) -> None:
    raw = text.encode()
    at = data.draw(st.integers(0, len(raw)), "at")
    broken = raw[:at] + data.draw(st.sampled_from([b"\xff", b"\xc3", b"\xe4\xb8", b"\xed\xa0\x80"])) + raw[at:]
    cuts = data.draw(st.lists(st.integers(0, len(broken)), max_size=6), "cuts")
    with tiny_blocks(data):
        assert joined(cut(broken, cuts), lambda: [], delimiter=",") == reference(broken, [], delimiter=",")


@PROPERTY
@given(
    lines=st.lists(st.tuples(st.integers(-3, 10**6), st.lists(VALUES, min_size=1, max_size=3)), max_size=12),
    terminator=st.sampled_from(["\n", "\r\n", "\r"]),
    noise=st.sampled_from(["", "\n", " \n", "x\n", "1,2\n", "a,b,c\n", "+4,p,f\n", "\u0663,p,f\n"]),
    data=st.data(),
)
def test_predictions_parse_like_the_csv_module(
    lines: list[tuple[int, list[str]]], terminator: str, noise: str, data: st.DataObject
) -> None:
    """Azure ML's lines through the byte path or the csv module give what the csv module alone gives, or
    the same rejection; so does a stray line among them."""
    written = []
    for row, parts in lines:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator=terminator).writerow([row, *parts, "part-1.csv"])
        written.append(buffer.getvalue())
    at = data.draw(st.integers(0, len(written)), "noise at")
    text = "".join([*written[:at], noise, *written[at:]])
    raw = text.encode()
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=6), "cuts")
    with tiny_blocks(data):
        assert parsed(cut(raw, cuts)) == reference_parse(text)


def parsed(chunks: list[bytes]) -> list[Prediction] | str:
    try:
        return list(parse_predictions(chunks))
    except InputInvalid as exc:
        return exc.code


def reference_parse(text: str) -> list[Prediction] | str:
    found = []
    for fields in csv.reader(io.StringIO(text, newline="")):
        if not fields:
            continue
        if len(fields) < 3:
            return "BadPredictions"
        try:
            found.append(Prediction(int(fields[0]), ",".join(fields[1:-1])))
        except ValueError:
            return "BadPredictions"
    return found


def test_a_large_shuffled_file_joins_through_buckets_like_the_reference() -> None:
    """Thousands of rows, predictions in mini-batches written in any order, a few rows unscored."""
    shuffle = random.Random(11)
    rows = 20_000
    data = b"carat,cut\n" + b"".join(b"%d.5,Ideal\n" % i for i in range(rows))
    predictions = [Prediction(i, f"{i * 3}") for i in range(rows) if i % 997]
    batches = [predictions[i : i + 700] for i in range(0, len(predictions), 700)]
    shuffle.shuffle(batches)
    shuffled = [p for batch in batches for p in batch]
    assert joined(cut(data, [4096 * k for k in range(1, 50)]), lambda: shuffled, delimiter=",") == reference(
        data, shuffled, delimiter=","
    )
