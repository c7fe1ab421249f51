"""Sharding (intake, completion): a big input split into parts beside the Azure ML outputs, so one job's
rows spread over every worker of the deployment; the parts' row offsets for the join; the parts removed.

The split streams the input once (read ahead in parallel, pinned to the job's blob version) and writes each
part as staged blocks committed at once, so memory stays flat and a part is never seen half written. Part
names are deterministic and a manifest (`<folder>.json`, written last, naming the blob version) says the
split is complete: a retried split of the same version is skipped, and an interrupted one is redone over the
same names.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from shared.core.sharding import MIB, ShardPlan, manifest_name, part_file, part_name, parts_folder
from shared.core.submission import Parts
from shared.csvsplit import CsvSplitter, PartInfo
from shared.errors import BlobChanged, BlobMissing, InputInvalid
from shared.models import Job
from shared.usecases.deps import Deps

log = logging.getLogger("dropscore")


@dataclass(frozen=True)
class Manifest:
    blob_etag: str
    parts: tuple[PartInfo, ...]


def shard_plan(deps: Deps, job: Job) -> ShardPlan:
    """The job's route's SHARD_THRESHOLD_MB and SHARD_PART_MB."""
    route = deps.route_of(job)
    return ShardPlan(threshold_bytes=route.shard_threshold_mb * MIB, part_bytes=route.shard_part_mb * MIB)


def parts_for(deps: Deps, job: Job, *, on_part: Callable[[], None] = lambda: None) -> Parts | None:
    """The parts to submit for `job`: None when it is sent whole; split now unless a complete split exists
    (`on_part` after each part written: a long split keeps its lease). Raises InputInvalid when the input cannot
    be cut at a row boundary; the parts already written are removed then."""
    plan = shard_plan(deps, job)
    if not plan.applies_to(job.size):
        return None
    folder = parts_folder(deps.settings.aml_output_prefix, job.job_id)
    manifest = read_manifest(deps, folder)
    if manifest is not None and manifest.blob_etag == job.blob_etag:
        log.info("job %s: reusing the %d parts already split into %s", job.job_id, len(manifest.parts), folder)
        return Parts(len(manifest.parts), folder)
    try:
        return _split(deps, job, folder, part_bytes=plan.part_size_for(job.size), on_part=on_part)
    except (InputInvalid, BlobChanged, BlobMissing):
        _remove_parts_from(deps, folder, first=0)  # the input ends without parts: none may be left behind
        raise


def _split(deps: Deps, job: Job, folder: str, *, part_bytes: int, on_part: Callable[[], None]) -> Parts:
    container = deps.settings.aml_output_container
    chunks = deps.blobs.chunks(job.container, job.name, etag=job.blob_etag)
    splitter = CsvSplitter(chunks, part_bytes=part_bytes, delimiter=deps.settings.csv_delimiter)
    done = 0
    for part in splitter.parts():
        deps.blobs.write(container, part_name(folder, part.index), part.chunks(), content_type="text/csv")
        done += part.info.size
        log.info("job %s: part %d written (%d of %d MiB split)", job.job_id, part.index, done // MIB, job.size // MIB)
        on_part()
    infos = tuple(splitter.infos)
    if not infos:
        raise InputInvalid("the file has a header but no rows to score", code="NoRows")
    _remove_parts_from(deps, folder, first=len(infos))  # left by an interrupted split with other settings
    manifest = {"blobEtag": job.blob_etag, "parts": [_info_json(info) for info in infos]}
    deps.blobs.write(container, manifest_name(folder), json.dumps(manifest).encode(), content_type="application/json")
    log.info("job %s: split into %d parts of about %d MiB in %s", job.job_id, len(infos), part_bytes // MIB, folder)
    return Parts(len(infos), folder)


def read_manifest(deps: Deps, folder: str) -> Manifest | None:
    container, name = deps.settings.aml_output_container, manifest_name(folder)
    if deps.blobs.properties(container, name) is None:
        return None
    try:
        body = json.loads(b"".join(deps.blobs.chunks(container, name)))
        parts = tuple(PartInfo(**_info_fields(item)) for item in body["parts"])
        return Manifest(str(body["blobEtag"]), parts)
    except BlobMissing:
        return None
    except (ValueError, KeyError, TypeError):
        log.warning("the parts manifest %s/%s is unreadable; the input is split again", container, name)
        return None


def part_rows(deps: Deps, job: Job) -> dict[str, tuple[int, int]]:
    """Each part's file name -> (its first row in the input, its rows): how the join maps predictions back."""
    manifest = read_manifest(deps, job.parts_folder)
    if manifest is None or manifest.blob_etag != job.blob_etag or len(manifest.parts) != job.parts:
        raise BlobMissing(f"the parts manifest of {job.parts_folder} is missing or not this input's")
    return {part_file(info.index): (info.first_row, info.rows) for info in manifest.parts}


def remove_parts(deps: Deps, job: Job) -> None:
    """Delete a finished job's parts and manifest (idempotent: a rerun finds nothing left). Also for a job that
    never recorded parts but is big enough to have been split (SHARD_THRESHOLD_MB is at least 1): a split its
    settings stopped asking for, or one cut short."""
    if not job.parts and job.size <= MIB:
        return
    folder = job.parts_folder or parts_folder(deps.settings.aml_output_prefix, job.job_id)
    _remove_parts_from(deps, folder, first=0, known=job.parts)
    if deps.blobs.delete(deps.settings.aml_output_container, manifest_name(folder)) or job.parts:
        log.info("job %s: its parts in %s removed", job.job_id, folder)


def _remove_parts_from(deps: Deps, folder: str, *, first: int, known: int = 0) -> None:
    """Delete parts `first`, `first`+1, ...: every one below `known`, then on until one is not there."""
    container, index = deps.settings.aml_output_container, first
    while deps.blobs.delete(container, part_name(folder, index)) or index < known:
        index += 1


def _info_json(info: PartInfo) -> dict[str, int]:
    return {"index": info.index, "firstRow": info.first_row, "rows": info.rows, "size": info.size}


def _info_fields(item: dict[str, int]) -> dict[str, int]:
    return {
        "index": int(item["index"]),
        "first_row": int(item["firstRow"]),
        "rows": int(item["rows"]),
        "size": int(item["size"]),
    }
