"""Admission under MAX_JOBS_IN_FLIGHT: which of an endpoint's slots are open, and who may take one (pure).

An endpoint has `capacity` numbered slots. A job takes one (an ETag-conditional write of the slot's row)
before its submit intent is written, and gives it back when Azure ML is done with it. A slot whose holder no
longer needs it is open again, so a release lost in a crash costs nothing but a later read of the holder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from shared.models import IN_FLIGHT, Job, JobState, Slot

#: A holder that took its slot but has not yet written its submit intent (Received or Waiting still).
_ABOUT_TO_SUBMIT = frozenset({JobState.RECEIVED, JobState.WAITING})


def pool_key(endpoint: str) -> str:
    """The slots' partition for one endpoint: a hash, since Table keys forbid '/' and other URL characters."""
    return hashlib.sha256(endpoint.strip().rstrip("/").lower().encode("utf-8")).hexdigest()[:16]


def held_by(slots: Sequence[Slot], job_id: str) -> Slot | None:
    """The slot `job_id` already holds (a retried admission reuses it)."""
    return next((slot for slot in slots if slot.holder == job_id), None)


def holders_to_check(slots: Sequence[Slot], capacity: int) -> list[str]:
    """The jobs whose rows say whether their slots are still held (only slots within the capacity count)."""
    return sorted({slot.holder for slot in slots if slot.holder and slot.number < capacity})


def still_held(slot: Slot, holder: Job | None, now: datetime, lease: timedelta) -> bool:
    """A slot is held while its job is in flight, or for `lease` after it was taken by a job about to submit
    (the intent is written right after the slot is taken; a crash in between frees the slot after the lease)."""
    if not slot.holder:
        return False
    if holder is not None and holder.state in IN_FLIGHT:
        return True
    recent = slot.taken_at is not None and now - slot.taken_at < lease
    return recent and (holder is None or holder.state in _ABOUT_TO_SUBMIT)


def open_slots(
    slots: Sequence[Slot],
    capacity: int,
    holders: Mapping[str, Job | None],
    *,
    now: datetime,
    lease: timedelta,
) -> list[Slot]:
    """The slots a job may take now, lowest number first: never written, free, or no longer held.
    Slots numbered at or above `capacity` (left from a larger setting) are never handed out again."""
    stored = {slot.number: slot for slot in slots}
    result = []
    for number in range(capacity):
        slot = stored.get(number, Slot(number))
        if not still_held(slot, holders.get(slot.holder), now, lease):
            result.append(slot)
    return result
