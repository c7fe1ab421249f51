"""The join's transfers (shared/adapters/transfers.py): reads ahead and staged writes, in order, bounded.

The read and stage functions here are plain callables that record what they were asked; the SDK calls
they stand for are exercised against Azurite in tests/integration/test_join_azurite.py.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator

import pytest

from shared.adapters.transfers import MAX_CHUNK_BYTES, MIN_CHUNK_BYTES, TransferLimits, read_ahead, stage_blocks


class InFlight:
    """Counts calls running at once."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self.lock = threading.Lock()

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *_: object) -> None:
        with self.lock:
            self.now -= 1


DATA = bytes(range(256)) * 40  # 10,240 bytes


def test_read_ahead_gives_every_byte_in_order_with_at_most_concurrency_reads_at_once() -> None:
    flight, asked = InFlight(), []

    def read_range(offset: int, length: int) -> bytes:
        with flight:
            asked.append((offset, length))
            time.sleep(0.002)
            return DATA[offset : offset + length]

    chunks = list(read_ahead(read_range, len(DATA), TransferLimits(concurrency=3, chunk_bytes=1000)))
    assert b"".join(chunks) == DATA
    assert [len(chunk) for chunk in chunks] == [1000] * 10 + [240]
    assert sorted(asked) == [(offset, min(1000, len(DATA) - offset)) for offset in range(0, len(DATA), 1000)]
    assert 1 < flight.most <= 3


def test_read_ahead_of_an_empty_blob_reads_nothing() -> None:
    assert list(read_ahead(lambda offset, length: pytest.fail("read"), 0, TransferLimits())) == []


def test_read_ahead_stops_reading_when_the_caller_stops() -> None:
    asked: list[int] = []

    def read_range(offset: int, length: int) -> bytes:
        asked.append(offset)
        return DATA[offset : offset + length]

    reads = read_ahead(read_range, len(DATA), TransferLimits(concurrency=2, chunk_bytes=100))
    assert next(reads) == DATA[:100]
    reads.close()  # the join failed: the rest of the blob is not wanted
    assert len(asked) <= 3  # the chunk handed over and at most two read ahead


def test_a_failed_read_reaches_the_caller() -> None:
    def read_range(offset: int, length: int) -> bytes:
        if offset >= 300:
            raise ConnectionError("reset")
        return DATA[offset : offset + length]

    reads = read_ahead(read_range, len(DATA), TransferLimits(concurrency=2, chunk_bytes=100))
    with pytest.raises(ConnectionError):
        list(reads)


def pieces(size: int, count: int) -> Iterator[bytes]:
    for index in range(count):
        yield bytes([index % 251]) * size


def test_stage_blocks_stages_every_byte_as_blocks_with_ids_of_one_length_in_order() -> None:
    flight, staged = InFlight(), {}

    def stage(block_id: str, block: bytes) -> None:
        with flight:
            time.sleep(0.002)
            staged[block_id] = block

    ids = stage_blocks(stage, pieces(300, 40), TransferLimits(concurrency=3, chunk_bytes=1000))
    assert b"".join(staged[block_id] for block_id in ids) == b"".join(pieces(300, 40))
    assert all(len(staged[block_id]) >= 1000 for block_id in ids[:-1])
    assert len(set(ids)) == len(ids) == 10
    assert {len(block_id) for block_id in ids} == {64}  # as the SDK's own: Azure wants one length per blob
    assert [int(base64.b64decode(block_id)[32:]) for block_id in ids] == list(range(10))
    assert 1 < flight.most <= 3


def test_two_runs_stage_different_ids() -> None:
    def ignore(block_id: str, block: bytes) -> None:
        pass

    limits = TransferLimits(concurrency=1, chunk_bytes=10)
    assert not set(stage_blocks(ignore, pieces(10, 3), limits)) & set(stage_blocks(ignore, pieces(10, 3), limits))


def test_a_failure_while_making_the_data_stages_no_more_and_reaches_the_caller() -> None:
    staged: list[str] = []

    def failing() -> Iterator[bytes]:
        yield b"x" * 100
        yield b"y" * 100
        raise ValueError("the join failed")

    with pytest.raises(ValueError, match="the join failed"):
        stage_blocks(lambda block_id, block: staged.append(block_id), failing(), TransferLimits(1, 100))
    assert len(staged) <= 2  # staged blocks are never a blob: only the commit, which never comes, makes one


def test_a_failed_upload_reaches_the_caller() -> None:
    def stage(block_id: str, block: bytes) -> None:
        raise ConnectionError("reset")

    with pytest.raises(ConnectionError):
        stage_blocks(stage, pieces(100, 5), TransferLimits(concurrency=2, chunk_bytes=100))


def test_limits_fit_the_memory_given() -> None:
    limits = TransferLimits.within(memory_bytes=56 * 1024 * 1024, concurrency=2)  # the defaults
    assert (limits.concurrency, limits.chunk_bytes) == (2, 4 * 1024 * 1024)  # 5c + 4 = 14 chunks of 4 MiB
    assert TransferLimits.within(memory_bytes=48 * 1024 * 1024, concurrency=4).chunk_bytes == 2 * 1024 * 1024
    assert TransferLimits.within(memory_bytes=1024, concurrency=16).chunk_bytes == MIN_CHUNK_BYTES
    assert TransferLimits.within(memory_bytes=1024**3, concurrency=1).chunk_bytes == MAX_CHUNK_BYTES
