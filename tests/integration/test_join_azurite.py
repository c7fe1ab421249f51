"""The join on real storage (Azurite): ranged reads ahead, staged blocks committed at once, and the output
bytes at every kind of chunk boundary, as complete_job runs it (shared/usecases/complete.py, _write_joined).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobServiceClient

from localdev.azurite import Azurite
from shared.adapters.blobs import AzureBlobStore
from shared.adapters.transfers import TransferLimits
from shared.csvjoin import JoinStats, PredictionIndex, PredictionsOutOfOrder, join_predictions, parse_predictions
from shared.csvjoin import join as join_module
from shared.errors import BlobChanged, BlobMissing, InputInvalid

pytestmark = pytest.mark.integration


@pytest.fixture
def service(azurite: Azurite) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(azurite.connection_string)


@pytest.fixture
def container(service: BlobServiceClient) -> str:
    name = f"join{uuid.uuid4().hex[:10]}"
    service.create_container(name)
    return name


def store(service: BlobServiceClient, *, chunk: int, concurrency: int = 3) -> AzureBlobStore:
    return AzureBlobStore(service, transfer=TransferLimits(concurrency=concurrency, chunk_bytes=chunk))


def put(service: BlobServiceClient, container: str, name: str, data: bytes) -> str:
    return str(service.get_blob_client(container, name).upload_blob(data, overwrite=True)["etag"])


def read(service: BlobServiceClient, container: str, name: str) -> bytes:
    return bytes(service.get_blob_client(container, name).download_blob().readall())


def test_chunks_read_ahead_give_every_byte_in_order(service: BlobServiceClient, container: str) -> None:
    data = bytes(range(256)) * 41
    etag = put(service, container, "in.bin", data)
    for chunk in (1000, 4096, 1 << 20):
        chunks = list(store(service, chunk=chunk).chunks(container, "in.bin", etag=etag))
        assert b"".join(chunks) == data
        assert max(map(len, chunks)) <= chunk


def test_chunks_of_a_missing_or_overwritten_blob_raise(service: BlobServiceClient, container: str) -> None:
    blobs = store(service, chunk=1000)
    with pytest.raises(BlobMissing):
        list(blobs.chunks(container, "absent.csv"))
    etag = put(service, container, "in.csv", b"a\n" * 5000)
    put(service, container, "in.csv", b"b\n" * 5000)
    with pytest.raises(BlobChanged):
        list(blobs.chunks(container, "in.csv", etag=etag))


def test_a_blob_overwritten_while_it_is_read_raises_even_unpinned(service: BlobServiceClient, container: str) -> None:
    put(service, container, "in.csv", b"a\n" * 50_000)
    reads = store(service, chunk=1000, concurrency=1).chunks(container, "in.csv")
    first = next(reads)
    put(service, container, "in.csv", b"b\n" * 50_000)  # every later range is pinned to the version seen first
    with pytest.raises(BlobChanged):
        list(reads)
    assert first == b"a\n" * 500


def test_write_commits_staged_blocks_at_once(service: BlobServiceClient, container: str) -> None:
    blobs = store(service, chunk=1000)
    parts = [bytes([65 + i % 26]) * 333 for i in range(40)]
    blobs.write(container, "out.csv", iter(parts), content_type="text/csv")
    blob = service.get_blob_client(container, "out.csv")
    assert read(service, container, "out.csv") == b"".join(parts)
    assert blob.get_blob_properties().content_settings.content_type == "text/csv"
    committed, uncommitted = blob.get_block_list("all")
    assert len(committed) == 10  # four 333-byte parts make each block of 1000 bytes or more
    assert not uncommitted


def test_a_write_that_fails_midway_leaves_the_old_blob_or_none(service: BlobServiceClient, container: str) -> None:
    blobs = store(service, chunk=100)

    def failing() -> Iterator[bytes]:
        for _ in range(5):
            yield b"new\n" * 50
        raise InputInvalid("the file is not valid UTF-8 past its first MiB", code="NotUtf8")

    put(service, container, "existing.csv", b"old\n")
    for name in ("existing.csv", "absent.csv"):
        with pytest.raises(InputInvalid):
            blobs.write(container, name, failing(), content_type="text/csv")
    assert read(service, container, "existing.csv") == b"old\n"
    assert service.get_blob_client(container, "absent.csv").exists() is False
    blobs.write(container, "absent.csv", iter([b"whole\n"]), content_type="text/csv")  # a later run commits
    assert read(service, container, "absent.csv") == b"whole\n"


def test_an_empty_stream_is_an_empty_blob(service: BlobServiceClient, container: str) -> None:
    store(service, chunk=100).write(container, "empty.csv", iter([]), content_type="text/csv")
    assert read(service, container, "empty.csv") == b""


ROWS = 120
# Each line puts something the join must not break right at the chunk and block boundaries below.
INPUT = (
    "\ufeffcarat,cut,note\r\n"
    + "".join(
        f'{i}.5,Ideal,"line one\r\nline two, with ""quotes"""\r\n'
        if i % 7 == 3
        else f"{i}.25,Très bon,é中😀{i}\r\n"
        if i % 5 == 1
        else f"{i},Good,\r\n\r\n"
        for i in range(ROWS)
    )
).encode()
SCORED = [i for i in range(ROWS) if i % 11]  # every 11th row unscored (a failed mini-batch)


def expected_output() -> bytes:
    lines = [b"carat,cut,note,prediction\n"]
    for i in range(ROWS):
        value = f"{i * 2}.0" if i % 11 else ""
        if i % 7 == 3:  # a CR in the cell: the whole row quoted (join._Output)
            lines.append(f'"{i}.5","Ideal","line one\r\nline two, with ""quotes""","{value}"\n'.encode())
        elif i % 5 == 1:
            lines.append(f"{i}.25,Très bon,é中😀{i},{value}\n".encode())
        else:
            lines.append(f"{i},Good,,{value}\n".encode())
    return b"".join(lines)


def predictions(order: list[int]) -> bytes:
    return "".join(f"{row},{row * 2}.0,input.csv\r\n" for row in order).encode()


def join_as_completion_does(blobs: AzureBlobStore, container: str, *, etag: str) -> JoinStats:
    def join_into_target(lookup: object) -> JoinStats:
        stats = JoinStats()
        joined = join_predictions(blobs.chunks(container, "in.csv", etag=etag), lookup, stats)  # type: ignore[arg-type]
        blobs.write(container, "in.csv.predictions.csv", joined, content_type="text/csv")
        return stats

    try:
        return join_into_target(parse_predictions(blobs.chunks(container, "aml/predictions.csv")))
    except PredictionsOutOfOrder:
        index = PredictionIndex(parse_predictions(blobs.chunks(container, "aml/predictions.csv")))
        try:
            return join_into_target(index)
        finally:
            index.close()


@pytest.mark.parametrize("chunk", [13, 64, 4096])
@pytest.mark.parametrize("order", ["in order", "mini-batches shuffled"])
def test_the_join_writes_the_same_bytes_at_any_chunk_size(
    service: BlobServiceClient, container: str, chunk: int, order: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(join_module, "INPUT_BLOCK", 50)  # and many blocks
    rows = SCORED if order == "in order" else SCORED[80:] + SCORED[:40] + SCORED[40:80]  # Azure ML's append order
    etag = put(service, container, "in.csv", INPUT)
    put(service, container, "aml/predictions.csv", predictions(rows))
    blobs = store(service, chunk=chunk, concurrency=4)
    for _ in range(2):  # at-least-once: a second completion writes the same bytes
        stats = join_as_completion_does(blobs, container, etag=etag)
        assert read(service, container, "in.csv.predictions.csv") == expected_output()
        assert (stats.rows_in, stats.rows_out, stats.rows_missing) == (ROWS, len(SCORED), ROWS - len(SCORED))
