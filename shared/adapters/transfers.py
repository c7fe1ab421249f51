"""Bounded, overlapped blob transfers for the join: reads ahead and staged writes, memory set by limits.

A blob is read as ranged reads of `chunk_bytes`, up to `concurrency` of them in flight while the caller
works on the chunk before (the SDK's `download_blob(...).chunks()` reads one chunk at a time and only
when asked; its `max_concurrency` applies to `readall`/`readinto`, which hold or seek the whole blob). A
blob is written as blocks staged up to `concurrency` at once while the caller makes the next one, then
committed as one block list. The SDK calls themselves stay in blobs.py, the only importer of the SDK.
"""

from __future__ import annotations

import base64
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice

_MIB = 1024 * 1024
_ALIGN = 64 * 1024
#: Requests smaller than this cost more in round trips than they save in memory.
MIN_CHUNK_BYTES = _MIB // 4
#: The SDK's default download chunk (max_chunk_get_size): a ranged read up to it comes back in one piece.
MAX_CHUNK_BYTES = 4 * _MIB


@dataclass(frozen=True)
class TransferLimits:
    """How many transfers of one blob run at once, and how large each is (the defaults are the app's)."""

    concurrency: int = 2
    chunk_bytes: int = MAX_CHUNK_BYTES

    @classmethod
    def within(cls, *, memory_bytes: int, concurrency: int) -> TransferLimits:
        """Chunks sized so the join's transfers fit in `memory_bytes`. Each of the two reads (input,
        predictions) holds the chunk its caller works on plus two per read in flight (the SDK joins the
        pieces it received); the write holds one per upload in flight plus the block being made, twice
        while it is joined: 2 * (2c + 1) + (c + 2) = 5c + 4 chunks."""
        chunk = memory_bytes // (5 * concurrency + 4) // _ALIGN * _ALIGN
        return cls(concurrency=concurrency, chunk_bytes=max(MIN_CHUNK_BYTES, min(MAX_CHUNK_BYTES, chunk)))


def read_ahead(read_range: Callable[[int, int], bytes], size: int, limits: TransferLimits) -> Iterator[bytes]:
    """Bytes [0, size) in order, as `read_range(offset, length)` calls of `chunk_bytes`, up to `concurrency`
    of them in flight ahead of the chunk the caller holds."""
    offsets = iter(range(0, size, limits.chunk_bytes))
    pool = ThreadPoolExecutor(max_workers=limits.concurrency, thread_name_prefix="blob-read")

    def read_from(offset: int) -> Future[bytes]:
        return pool.submit(read_range, offset, min(limits.chunk_bytes, size - offset))

    try:
        window = deque(read_from(offset) for offset in islice(offsets, limits.concurrency))
        while window:
            chunk = window.popleft().result()
            following = next(offsets, None)
            if following is not None:
                window.append(read_from(following))
            yield chunk
    finally:  # also when the caller stops early: no read keeps running for nobody
        pool.shutdown(wait=True, cancel_futures=True)


def stage_blocks(stage: Callable[[str, bytes], object], data: Iterable[bytes], limits: TransferLimits) -> list[str]:
    """Stage `data` as blocks of about `chunk_bytes`, up to `concurrency` uploads in flight while the next
    block is made; return the block ids in order, for the one commit that makes them the blob."""
    run = uuid.uuid4().hex  # ids unique to this run: a concurrent run of the same job stages its own blocks
    block_ids: list[str] = []
    in_flight: deque[Future[object]] = deque()
    pool = ThreadPoolExecutor(max_workers=limits.concurrency, thread_name_prefix="blob-write")
    try:
        for block in _blocks(data, limits.chunk_bytes):
            if len(in_flight) >= limits.concurrency:
                in_flight.popleft().result()
            # 48 bytes, so 64 characters in base64 like the SDK's own ids: Azure refuses a block id whose
            # length differs from the uncommitted blocks a crashed earlier run may have left on the blob.
            block_id = base64.b64encode(f"{run}{len(block_ids):016d}".encode()).decode()
            in_flight.append(pool.submit(stage, block_id, block))
            block_ids.append(block_id)
        while in_flight:
            in_flight.popleft().result()
    finally:  # a failure (of the join making `data`, or of an upload) leaves staged blocks, never a blob
        pool.shutdown(wait=True, cancel_futures=True)
    return block_ids


def _blocks(data: Iterable[bytes], size: int) -> Iterator[bytes]:
    pieces: list[bytes] = []
    held = 0
    for piece in data:
        pieces.append(piece)
        held += len(piece)
        if held >= size:
            yield b"".join(pieces)
            pieces, held = [], 0
    if held:
        yield b"".join(pieces)
