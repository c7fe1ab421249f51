"""What a transition returns: the next job, and the one thing the use case must do after writing it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.models import Job


class Action(StrEnum):
    WAIT = "wait"  # nothing more to do now: write the job (if it changed) and stop
    POST = "post"  # send the invoke the job's intent describes
    FINISH = "finish"  # the job has its outcome: finish it (queue its completion, or finalize it at once)
    CANCEL = "cancel"  # over its limit: ask Azure ML to cancel, then finish as TimedOut


@dataclass(frozen=True)
class Decision:
    action: Action
    job: Job
