"""Sharding: when an input is split into parts, how big the parts are, and where they go (pure)."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024
#: At most this many parts: a bigger input gets bigger parts (a folder listing and a manifest stay small).
MAX_PARTS = 10_000


@dataclass(frozen=True, kw_only=True)
class ShardPlan:
    """SHARD_THRESHOLD_MB (0: never) and SHARD_PART_MB, in bytes."""

    threshold_bytes: int
    part_bytes: int

    def applies_to(self, size: int) -> bool:
        return self.threshold_bytes > 0 and size > self.threshold_bytes

    def part_size_for(self, size: int) -> int:
        return max(self.part_bytes, -(-size // MAX_PARTS))


def parts_folder(prefix: str, job_id: str) -> str:
    """The parts of one input, beside its Azure ML outputs (never in the input container: no trigger sees
    them). One folder per job, whatever the attempt: a new attempt reuses the parts already written."""
    return f"{prefix}/{job_id}/parts"


def part_name(folder: str, index: int) -> str:
    return f"{folder}/{part_file(index)}"


def part_file(index: int) -> str:
    """The part's file name, as Azure ML's predictions name it (`file_name`)."""
    return f"part-{index:05d}.csv"


def manifest_name(folder: str) -> str:
    """Beside the folder, not in it: Azure ML would try to score any file in the folder."""
    return f"{folder}.json"
