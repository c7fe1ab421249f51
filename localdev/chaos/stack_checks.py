"""The chaos run's checks of the stack as a whole: it converged, no poison, no leftovers, no strangers, no
duplicate event outside a crash or outage, every job in the job list, no unexplained traceback."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from localdev.chaos.journal import Journal
from localdev.chaos.observe import Snapshot


@dataclass(frozen=True)
class StackCheck:
    name: str
    passed: bool
    detail: str


def stack_checks(
    *,
    journal: Journal,
    snapshot: Snapshot,
    input_container: str,
    converged: str | None,
    unexplained: Sequence[str],
) -> list[StackCheck]:
    """`converged`: None when everything finished in time, else what had not."""
    versions = {(u.upload.name, u.etag) for u in journal.uploads}
    not_moved = {(r.name, r.etag) for r in snapshot.records if r.not_moved and not r.moved_to}
    incoming = snapshot.blobs.get(input_container, {})
    left = sorted(name for name, blob in incoming.items() if (name, blob.etag) not in not_moved)
    phantom = sorted(r.job_id for r in snapshot.records if (r.name, r.etag) not in versions)
    known_jobs = {r.job_id for r in snapshot.records}
    foreign = sorted({j.name for j in snapshot.aml_jobs if j.job_id not in known_jobs})
    foreign += snapshot.unattributed_aml_jobs
    poisoned = {queue: count for queue, count in snapshot.poison.items() if count}
    duplicates = {event_id: times for event_id, times in snapshot.received.items() if len(times) > 1}
    calm = sorted(event_id for event_id, times in duplicates.items() if not _disrupted_between(journal, times))
    # A crash may leave a list row too many (readers skip it), never one too few.
    unlisted = sorted(
        r.job_id
        for r in snapshot.records
        if ("all", r.job_id) not in snapshot.listed or (f"state-{r.state}", r.job_id) not in snapshot.listed
    )
    return [
        StackCheck("converged", converged is None, converged or "every job is Done; the active index is empty"),
        StackCheck("poison queues empty", not poisoned, _listed(poisoned) or _poison_detail(snapshot.poison)),
        StackCheck(
            "nothing left in the input container",
            not left,
            _listed(left) or "only inputs their records say were left in place",
        ),
        StackCheck("every ledger row is an uploaded version", not phantom, _listed(phantom) or "yes"),
        StackCheck("every Azure ML job belongs to a ledger job", not foreign, _listed(foreign) or "yes"),
        StackCheck(
            "the job list has every job, in its state", not unlisted, _listed(unlisted) or "yes (all + state rows)"
        ),
        StackCheck(
            "an event delivered twice follows a crash or outage",
            not calm,
            _listed(calm) or _duplicates_detail(len(duplicates)),
        ),
        StackCheck("no unexplained traceback in the logs", not unexplained, _listed(list(unexplained)) or "none"),
    ]


def _listed(items: Sequence[str] | dict[str, int]) -> str:
    if isinstance(items, dict):
        return ", ".join(f"{key}: {value}" for key, value in items.items())
    return "; ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")


def _poison_detail(queues: dict[str, int]) -> str:
    return f"{', '.join(sorted(queues))}: empty" if queues else "no poison queue was ever created"


#: A publish answered just before a part went down counts as before the outage.
DISRUPTION_SLACK_SECONDS = 1.0


def _disrupted_between(journal: Journal, times: Sequence[float]) -> bool:
    """Delivery is at least once, so a crash or an outage may repeat an event (README, "The event
    contract"); in a calm stretch the app must not (issue 10: no duplicates in normal operation)."""
    first, last = min(times), max(times)
    return any(first - DISRUPTION_SLACK_SECONDS <= window.start <= last for window in journal.windows)


def _duplicates_detail(count: int) -> str:
    return f"{count} ids delivered more than once, each across a crash or outage" if count else "no id delivered twice"
