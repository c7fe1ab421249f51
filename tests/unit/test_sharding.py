"""Sharding against fakes: a big input split into parts, sent as one folder, joined back in input order."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

from shared.core.sharding import manifest_name
from shared.csvjoin import JoinStats, Prediction, join_predictions
from shared.models import InvokeRequest, JobState, RemoteStatus
from shared.usecases import complete, intake, poll
from tests.fakes import SimulatedCrash, World, make_world

HEADER = b"carat,cut,note\n"
MIB = 1024 * 1024


def big_csv(rows: int) -> bytes:
    """About 31 bytes a row; every 7th row has a quoted newline, so parts must be cut at true row ends."""
    lines = [HEADER]
    for i in range(rows):
        note = f'"line one\nline two {i}"' if i % 7 == 0 else f"plain {i}"
        lines.append(f"{i / 100:.2f},Ideal,{note}\r\n".encode())
    return b"".join(lines)


def sharded_world(**settings: str) -> World:
    world = make_world(SHARD_THRESHOLD_MB="1", SHARD_PART_MB="1", **settings)
    world.scoring.script = [RemoteStatus.COMPLETED]
    return world


def drop(world: World, data: bytes, name: str = "big/day.csv") -> str:
    etag = world.blobs.put("incoming", name, data)
    job = intake.accept_blob(world.deps, container="incoming", name=name, size=len(data), etag=etag, url="u")
    assert job is not None
    return job.job_id


def azure_ml_scores_parts(world: World, *, order: Callable[[list[str]], list[str]] = list, skip: str = "") -> None:
    """Azure ML's append_row output: each part's rows, grouped by part, parts in completion order."""

    def hook(request: InvokeRequest) -> None:
        folder = request.input_uri.split("/paths/", 1)[1]
        container = world.settings.aml_output_container
        names = sorted(
            name.rsplit("/", 1)[1] for c, name in world.blobs.blobs if c == container and name.startswith(folder + "/")
        )
        lines = []
        for part in order(names):
            if part == skip:
                continue  # a mini-batch that failed under the error threshold
            rows = world.blobs.data(container, f"{folder}/{part}").count(b"\r\n")  # every record ends in CRLF
            lines += [f"{row},{part}-{row},{part}\n" for row in range(rows)]
        path = request.output_uri.split("/paths/", 1)[1]
        world.blobs.put(container, path, "".join(lines).encode())

    world.scoring.on_complete = hook


def test_a_big_input_is_sent_as_a_folder_of_parts_one_per_mini_batch() -> None:
    world = sharded_world()
    data = big_csv(120_000)
    job_id = drop(world, data)
    job = world.store.rows[job_id]
    (post,) = world.scoring.posts
    assert (post.input_type, post.mini_batch_size) == ("UriFolder", 1)
    assert post.input_uri == f"azureml://datastores/dropscore_outputs/paths/dropscore/{job_id}/parts"
    assert job.parts == len(data) // MIB + 1
    assert job.parts_folder == f"dropscore/{job_id}/parts"
    container = world.settings.aml_output_container
    parts = [world.blobs.data(container, f"{job.parts_folder}/part-{i:05d}.csv") for i in range(job.parts)]
    assert all(part.startswith(HEADER) for part in parts)
    assert b"".join(part.removeprefix(HEADER) for part in parts) == data.removeprefix(HEADER)  # bytes kept, in order
    manifest = json.loads(world.blobs.data(container, manifest_name(job.parts_folder)))
    assert manifest["parts"][0]["firstRow"] == 0
    assert sum(part["rows"] for part in manifest["parts"]) == 120_000
    # nothing was written where the blob trigger looks
    assert world.blobs.names("incoming") == ["big/day.csv"]


def manifest_of(world: World, job_id: str) -> list[dict[str, int]]:
    folder = world.store.rows[job_id].parts_folder
    parts: list[dict[str, int]] = json.loads(
        world.blobs.data(world.settings.aml_output_container, manifest_name(folder))
    )["parts"]
    return parts


def expected_output(data: bytes, manifest: list[dict[str, int]], *, skip: int = -1) -> bytes:
    """The unsharded join of the same input, each row's prediction naming its part and its row in the part."""
    predictions = [
        Prediction(part["firstRow"] + row, f"part-{part['index']:05d}.csv-{row}")
        for part in manifest
        if part["index"] != skip
        for row in range(part["rows"])
    ]
    return b"".join(join_predictions([data], predictions, JoinStats()))


def finish(world: World) -> None:
    poll.poll(world.deps)
    for queued in world.queue.drain():
        complete.complete(world.deps, queued)


def parts_left(world: World) -> list[str]:
    container = world.settings.aml_output_container
    return [name for c, name in world.blobs.blobs if c == container and "/parts" in name]


def test_predictions_of_parts_in_completion_order_are_joined_back_in_input_order() -> None:
    world = sharded_world()
    data = big_csv(100_000)
    azure_ml_scores_parts(world, order=lambda names: list(reversed(names)))
    job_id = drop(world, data)
    manifest = manifest_of(world, job_id)
    assert len(manifest) >= 3
    finish(world)
    job = world.store.rows[job_id]
    assert job.state is JobState.COMPLETED
    assert (job.rows_in, job.rows_missing) == (100_000, 0)
    output = world.blobs.data("predictions", "big/day.csv.predictions.csv")
    assert output == expected_output(data, manifest)
    assert b'0.00,Ideal,"line one\nline two 0",part-00000.csv-0\n' in output
    assert parts_left(world) == []  # the parts and their manifest are gone once the job is done


def test_a_part_scored_by_no_one_counts_its_rows_missing() -> None:
    world = sharded_world()
    data = big_csv(100_000)
    azure_ml_scores_parts(world, skip="part-00001.csv")
    job_id = drop(world, data)
    manifest = manifest_of(world, job_id)
    finish(world)
    job = world.store.rows[job_id]
    assert job.state is JobState.COMPLETED
    assert job.rows_missing == manifest[1]["rows"] > 0
    assert (job.rows_in, job.rows_out) == (100_000, 100_000 - manifest[1]["rows"])
    assert world.blobs.data("predictions", "big/day.csv.predictions.csv") == expected_output(data, manifest, skip=1)
    assert parts_left(world) == []


def test_predictions_naming_no_part_fail_the_job_bad_predictions() -> None:
    world = sharded_world()

    def hook(request: InvokeRequest) -> None:
        path = request.output_uri.split("/paths/", 1)[1]
        world.blobs.put(world.settings.aml_output_container, path, b"0,1,someone-elses.csv\n")

    world.scoring.on_complete = hook
    job_id = drop(world, big_csv(50_000))
    finish(world)
    job = world.store.rows[job_id]
    assert (job.state, job.error_code) == (JobState.FAILED, "BadPredictions")
    assert "someone-elses.csv" in job.error_message


def test_a_split_interrupted_by_a_crash_is_reused_or_redone_never_doubled() -> None:
    world = sharded_world()
    world.store.crash_on_update = lambda job: job.state is JobState.SUBMITTING
    data = big_csv(80_000)
    with contextlib.suppress(SimulatedCrash):
        drop(world, data)
    world.store.crash_on_update = None
    container = world.settings.aml_output_container
    written = {name: world.blobs.blobs[(container, name)][1] for c, name in world.blobs.blobs if c == container}
    (job_id,) = world.store.rows
    intake.advance(world.deps, world.store.rows[job_id])  # the retry finds the manifest of this blob version
    assert world.store.rows[job_id].state is JobState.SUBMITTED
    after = {name: world.blobs.blobs[(container, name)][1] for c, name in world.blobs.blobs if c == container}
    assert after == written  # no part written again
    assert len(world.scoring.posts) == 1


def test_small_inputs_and_sharding_off_go_whole() -> None:
    world = make_world(SHARD_THRESHOLD_MB="0")
    drop(world, big_csv(80_000))
    (post,) = world.scoring.posts
    assert (post.input_type, post.mini_batch_size) == ("UriFile", None)


def test_a_split_that_meets_an_unclosed_quote_is_rejected_and_leaves_no_part_behind() -> None:
    world = sharded_world()
    job_id = drop(world, big_csv(80_000) + b'9.99,Ideal,"never closed\n')
    job = world.store.rows[job_id]
    assert (job.state, job.error_code) == (JobState.REJECTED, "UnclosedQuote")
    assert parts_left(world) == []
    assert world.scoring.posts == []


def test_a_long_split_keeps_its_lease_and_its_slot() -> None:
    world = sharded_world(MAX_JOBS_IN_FLIGHT="1", SUBMIT_LEASE_SECONDS="300")
    written = world.blobs.write

    def slow_write(container: str, name: str, data: object, *, content_type: str) -> None:
        written(container, name, data, content_type=content_type)  # type: ignore[arg-type]
        world.clock.advance(seconds=150)  # each part takes 150 s: the split outlasts the 300 s lease

    world.blobs.write = slow_write  # type: ignore[method-assign]
    job_id = drop(world, big_csv(80_000))
    job = world.store.rows[job_id]
    assert job.state is JobState.SUBMITTED
    (slot,) = world.slots.rows.values()
    assert slot.holder == job_id
    assert slot.taken_at is not None
    assert world.clock() - slot.taken_at < world.deps.submit_lease  # renewed while the parts were written
