"""The join at chunk and block boundaries, byte for byte: wherever the download cuts the input, and wherever
the join cuts it into blocks, the output is the same bytes.

Chunks are what the download hands over (any size); blocks are what the join parses at once (INPUT_BLOCK,
shrunk here so a small file crosses many of them). Each case is cut at every byte offset, and at every
pair of offsets for the short ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from shared.csvjoin import (
    JoinStats,
    Prediction,
    PredictionIndex,
    PredictionsOutOfOrder,
    join_predictions,
    parse_predictions,
)
from shared.csvjoin import index as index_module
from shared.csvjoin import join as join_module
from shared.csvjoin.blocks import line_blocks
from shared.errors import InputInvalid
from shared.models import EventType, InvokeRequest, JobState, RemoteStatus
from shared.usecases import complete, intake, poll
from tests.fakes import World, make_world


def cuts_of(data: bytes, most: int = 2) -> Iterator[list[bytes]]:
    """`data` cut at every offset, then at every pair of offsets when it is short."""
    for cut in range(len(data) + 1):
        yield [data[:cut], data[cut:]]
    if most > 1 and len(data) <= 80:
        for a, b in itertools.combinations(range(1, len(data)), 2):
            yield [data[:a], data[a:b], data[b:]]


def join(chunks: list[bytes], predictions: object, *, delimiter: str = ",") -> tuple[bytes, JoinStats]:
    stats = JoinStats()
    out = b"".join(join_predictions(chunks, predictions, stats, delimiter=delimiter))  # type: ignore[arg-type]
    return out, stats


def in_order(*values: str) -> list[Prediction]:
    return [Prediction(row, value) for row, value in enumerate(values)]


@pytest.fixture(params=[1, 7, 64, 256 * 1024], ids=lambda size: f"block{size}")
def block_size(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(join_module, "INPUT_BLOCK", request.param)
    return int(request.param)


def test_a_crlf_split_between_chunks_is_one_line_ending(block_size: int) -> None:
    data = b"a,b\r\n1,2\r\n3,4\r\n"
    for chunks in cuts_of(data):
        out, stats = join(chunks, in_order("x", "y"))
        assert out == b"a,b,prediction\n1,2,x\n3,4,y\n", chunks
        assert (stats.rows_in, stats.rows_out, stats.rows_missing) == (2, 2, 0)


def test_a_quoted_newline_split_anywhere_stays_in_its_cell(block_size: int) -> None:
    data = b'id,text\n1,"two\nlines"\n2,"crlf\r\ninside, and ""quotes"""\n3,plain\n'
    # A row with a CR in a cell is written fully quoted (see join._Output).
    expected = b'id,text,prediction\n1,"two\nlines",x\n"2","crlf\r\ninside, and ""quotes""","y"\n3,plain,z\n'
    for chunks in cuts_of(data, most=1):
        out, stats = join(chunks, in_order("x", "y", "z"))
        assert out == expected, chunks
        assert stats.rows_in == 3


def test_a_multibyte_character_split_between_chunks_is_kept_whole(block_size: int) -> None:
    data = "name,city\nJosé,Zürich\n李,北京\n😀,ok\n".encode()
    expected = "name,city,prediction\nJosé,Zürich,1\n李,北京,2\n😀,ok,3\n".encode()
    for chunks in cuts_of(data):
        assert join(chunks, in_order("1", "2", "3"))[0] == expected, chunks


def test_a_bom_split_between_chunks_is_dropped(block_size: int) -> None:
    data = "\ufeffa\n1\n".encode()
    for chunks in cuts_of(data):
        assert join(chunks, in_order("p"))[0] == b"a,prediction\n1,p\n", chunks


def test_a_bad_byte_split_between_chunks_is_not_utf8(block_size: int) -> None:
    data = b"a\n1\n" + "é".encode()[:1] + b"\n"
    for chunks in cuts_of(data):
        with pytest.raises(InputInvalid) as caught:
            join(chunks, in_order("p", "q"))
        assert caught.value.code == "NotUtf8"


def test_cr_line_endings_and_blank_lines_anywhere(block_size: int) -> None:
    data = b"\r\na;b\r1;2\r\r \t\r3;4,5\r"
    for chunks in cuts_of(data, most=1):
        out, stats = join(chunks, in_order("x", "y"), delimiter=";")
        assert out == b'a,b,prediction\n1,2,x\n3,"4,5",y\n', chunks
        assert stats.rows_in == 2


def test_plain_blocks_with_other_delimiters_quote_cells_holding_commas(block_size: int) -> None:
    data = b"a|b\n1,5|x\n2|y z\n|\n"
    out, _ = join([data], in_order("p", "q", "r"), delimiter="|")
    assert out == b'a,b,prediction\n"1,5",x,p\n2,y z,q\n,,r\n'


def test_predictions_that_need_quotes_are_quoted(block_size: int) -> None:
    data = b"a\n1\n2\n3\n4\n"
    out, _ = join([data], in_order("[1, 2]", 'say "hi"', "two\nlines", "cr\rhere"))
    assert out == b'a,prediction\n1,"[1, 2]"\n2,"say ""hi"""\n3,"two\nlines"\n"4","cr\rhere"\n'


def test_out_of_order_predictions_join_through_the_index_at_any_cut(
    block_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_module, "BUCKET_ROWS", 2)  # rows 0-1, 2-3, 4-5: every bucket boundary crossed
    monkeypatch.setattr(index_module, "PENDING_ROWS", 3)  # and spilled in several writes
    data = b"a\n1\n2\n\n3\n4\n5\n"
    shuffled = [Prediction(4, "e"), Prediction(0, "a"), Prediction(3, "d"), Prediction(1, "b"), Prediction(9, "?")]
    expected = b"a,prediction\n1,a\n2,b\n3,\n4,d\n5,e\n"
    for chunks in cuts_of(data, most=1):
        with pytest.raises(PredictionsOutOfOrder):
            join(chunks, shuffled)
        index = PredictionIndex(shuffled)
        try:
            out, stats = join(chunks, index)
        finally:
            index.close()
        assert out == expected, chunks
        assert (stats.rows_in, stats.rows_out, stats.rows_missing) == (5, 4, 1)


def mini_batches(order: list[int], *, size: int = 5000) -> bytes:
    """Azure ML's output file: each mini-batch's rows in order, the mini-batches in `order`."""
    return b"".join(
        b"%d,p%d,f.csv\n" % (row, row) for start in order for row in range(start * size, (start + 1) * size)
    )


def test_the_merge_hands_over_to_the_index_before_joining_rows_for_nothing() -> None:
    """Azure ML appends mini-batches as they finish. Rows without a prediction make the merge read ahead
    (LOOKAHEAD_BYTES): a lower row index there means the file is out of order, so the merge stops before
    it joins, and uploads, the 35,000 rows that come before the file's first prediction."""
    data = b"a\n" + b"x\n" * 200_000
    stats = JoinStats()
    with pytest.raises(PredictionsOutOfOrder):
        for _ in join_predictions([data], parse_predictions([mini_batches([7, 8, 0, 1, 2, 3, 4, 5, 6])]), stats):
            pass
    assert stats.rows_in == 0


def test_rows_azure_ml_did_not_score_do_not_stop_the_merge() -> None:
    data = b"a\n" + b"x\n" * 45_000
    stats = JoinStats()
    out = b"".join(join_predictions([data], parse_predictions([mini_batches([0, 1, 3, 4, 5, 6, 7, 8])]), stats))
    assert (stats.rows_in, stats.rows_out, stats.rows_missing) == (45_000, 40_000, 5_000)
    assert out.startswith(b"a,prediction\nx,p0\nx,p1\n")
    assert b"\nx,p9999\nx,\n" in out
    assert b"\nx,\nx,p15000\n" in out


def test_the_index_keeps_the_first_prediction_of_a_row_as_the_merge_does() -> None:
    index = PredictionIndex([Prediction(2, "first"), Prediction(0, "x"), Prediction(2, "again"), Prediction(-1, "?")])
    try:
        assert (index(0), index(1), index(2), index(-1), index(10**9)) == ("x", None, "first", None, None)
    finally:
        index.close()


def test_line_blocks_never_split_a_line_and_keep_every_byte() -> None:
    data = b"a,b\r\n" + b"x" * 50 + b"\n\r\n1,2\r3\n" + "é中😀\n".encode() * 5
    for size in (1, 3, 8, 64, 1000):
        for chunks in cuts_of(data, most=1):
            blocks = list(line_blocks(chunks, size=size))
            assert b"".join(blocks) == data
            assert all(block.endswith((b"\n", b"\r")) for block in blocks[:-1])
            assert all(len(block) <= size + 52 for block in blocks)  # at most a line (51 bytes) over


def test_the_output_comes_block_by_block() -> None:
    rows = 100_000
    data = b"value\n" + b"".join(b"%d\n" % i for i in range(rows))
    chunks = list(join_predictions([data], (Prediction(i, "p") for i in range(rows)), JoinStats()))
    assert len(chunks) > 1
    assert max(len(chunk) for chunk in chunks) < 2 * join_module.INPUT_BLOCK


def scored(world: World, data: bytes, predictions: bytes) -> str:
    """A job for `data` that Azure ML completed with `predictions` (its raw file), its completion queued."""
    world.scoring.script = [RemoteStatus.COMPLETED]

    def write(request: InvokeRequest) -> None:
        path = request.output_uri.split("/paths/", 1)[1]
        if world.blobs.properties(world.settings.aml_output_container, path) is None:
            world.blobs.put(world.settings.aml_output_container, path, predictions)

    world.scoring.on_complete = write
    etag = world.blobs.put("incoming", "batch/day1.csv", data)
    url = world.blobs.url("incoming", "batch/day1.csv")
    intake.accept_blob(world.deps, container="incoming", name="batch/day1.csv", size=len(data), etag=etag, url=url)
    poll.poll(world.deps)
    (job_id,) = world.queue.drain()
    return job_id


OUTPUT = ("predictions", "batch/day1.csv.predictions.csv")


def test_completion_joins_out_of_order_predictions_and_counts_the_missing_rows_exactly() -> None:
    world = make_world()
    data = b'carat,cut\r\n0.3,Ideal\r\n0.4,"Very\nGood"\r\n\r\n1.1,Premium\r\n2.0,Fair\r\n'
    job_id = scored(world, data, b"3,40.5,day1.csv\n0,5.5,day1.csv\n2,7.25,day1.csv\n")
    complete.complete(world.deps, job_id)
    assert world.blobs.data(*OUTPUT) == (
        b'carat,cut,prediction\n0.3,Ideal,5.5\n0.4,"Very\nGood",\n1.1,Premium,7.25\n2.0,Fair,40.5\n'
    )
    job = world.store.rows[job_id]
    assert (job.state, job.rows_in, job.rows_out, job.rows_missing) == (JobState.COMPLETED, 4, 3, 1)
    completed = world.events.published[-1]
    assert completed.type == EventType.JOB_COMPLETED.value
    assert (completed.data["output"]["rows"], completed.data["output"]["rowsMissing"]) == (3, 1)


def test_a_completion_run_twice_writes_the_same_bytes() -> None:
    world = make_world()
    data = "a,b\n" + "".join(f"{i},é{i}\n" for i in range(500))
    predictions = "".join(f"{i},{i / 3:.4f},day1.csv\n" for i in range(500) if i != 7)
    job_id = scored(world, data.encode(), predictions.encode())
    before = world.store.rows[job_id]
    complete.complete(world.deps, job_id)
    first = world.blobs.data(*OUTPUT)
    world.store.rows[job_id] = before  # the queue delivers the message again, as if the first run crashed
    world.blobs.put("incoming", "batch/day1.csv", data.encode())  # the input back where it was
    complete.complete(world.deps, job_id)
    assert world.blobs.data(*OUTPUT) == first
    assert first.count(b"\n") == 501
    assert world.store.rows[job_id].rows_missing == 1


def test_a_join_that_fails_midway_leaves_no_output() -> None:
    world = make_world()
    data = b"a\n" + b"1\n" * 600_000 + b"\xff\n"  # a bad byte far past the validated first MiB
    job_id = scored(world, data, b"".join(b"%d,p,day1.csv\n" % i for i in range(600_001)))
    complete.complete(world.deps, job_id)
    job = world.store.rows[job_id]
    assert (job.state, job.error_code) == (JobState.FAILED, "NotUtf8")
    assert world.blobs.names("predictions") == []
