"""Drift during completion: the job's reference profile read, the scored file profiled as the join streams
it, the report written beside the predictions (`<input>.drift.json`), its summary for the ledger and the
events, its scores sent as metrics.

No reference for the job's route (DRIFT_REFERENCE or the route's `driftReference`): nothing is read or
computed, and JobCompleted carries `drift: null`. A reference that cannot be used never fails the job: the
report says why nothing was compared, and the warning is logged once per reference version per worker.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.core.naming import drift_report_name
from shared.errors import BlobChanged, BlobMissing, ReferenceInvalid
from shared.models import Job
from shared.usecases.deps import Deps

if TYPE_CHECKING:  # numpy and the profile code load only when a job has a reference
    from shared.drift.compare import DriftReport
    from shared.drift.profile import Profile
    from shared.drift.stream import Profiler

log = logging.getLogger("dropscore")
#: A reference profile is a few KB; anything near this is not one.
REFERENCE_MAX_BYTES = 4 * 1024 * 1024
_warned: set[tuple[str, str]] = set()  # (reference path, ETag) already warned about, in this worker


@dataclass
class DriftWatch:
    """One job's drift work: its reference (or why it has none usable) and the profiler of the current join."""

    path: str
    etag: str = ""
    reference: Profile | None = None
    problem: str | None = None
    profiler: Profiler | None = field(default=None, repr=False)

    def fresh(self, *, size: int, sample_mb: int) -> Profiler | None:
        """A new profiler for a join that starts (the join may run twice: merge, then through an index)."""
        if self.reference is None:
            return None
        from shared.drift.stream import Profiler, sample_every

        self.profiler = Profiler(self.reference, sample_every=sample_every(size, sample_mb=sample_mb))
        return self.profiler


def reference_path(deps: Deps, job: Job) -> str:
    """`container/path` of the job's reference profile; "" when its route has none."""
    return deps.route_of(job).drift_reference


def watch(deps: Deps, job: Job) -> DriftWatch | None:
    """The job's reference, read; None when drift is off for its route."""
    path = reference_path(deps, job)
    if not path:
        return None
    container, name = path.split("/", 1)
    info = deps.blobs.properties(container, name)
    if info is None:
        return _unusable(DriftWatch(path=path), f"no reference profile at {path}")
    found = DriftWatch(path=path, etag=info.etag)
    if info.size > REFERENCE_MAX_BYTES:
        return _unusable(found, f"the reference at {path} is {info.size:,} bytes: not a profile (at most 4 MiB)")
    from shared.drift.profile import profile_from_bytes

    try:
        content = b"".join(deps.blobs.chunks(container, name, etag=info.etag))
    except (BlobMissing, BlobChanged):  # replaced or removed while read: the next completion run reads it again
        return _unusable(found, f"the reference at {path} changed while it was read")
    try:
        found.reference = profile_from_bytes(content)
    except ReferenceInvalid as exc:
        return _unusable(found, f"the reference at {path} cannot be used: {exc.message}")
    return found


def _unusable(found: DriftWatch, problem: str) -> DriftWatch:
    found.problem = problem
    if (found.path, found.etag) not in _warned:
        _warned.add((found.path, found.etag))
        log.warning("drift: %s; jobs complete without a drift comparison until it is fixed", problem)
    return found


def report(deps: Deps, job: Job, found: DriftWatch, *, rows_in: int) -> dict[str, Any]:
    """Compare, write `<input>.drift.json` beside the predictions, send the metrics; the summary for events."""
    from shared.drift.compare import Thresholds, compare, not_computed

    settings = deps.settings
    thresholds = Thresholds(psi=settings.drift_psi_threshold, share=settings.drift_share_threshold)
    if found.reference is None or found.profiler is None:
        drift = not_computed(found.problem or "no reference", thresholds=thresholds, rows_seen=rows_in)
    else:
        drift = compare(found.reference, found.profiler.result(), thresholds=thresholds)
        _warn_columns(found, drift)
    name = drift_report_name(job.name)
    body = {
        **drift.to_json(),
        "jobId": job.job_id,
        "input": {"container": job.container, "name": job.name, "etag": job.blob_etag},
        "reference": _reference_json(found),
    }
    deps.blobs.write(
        settings.output_container,
        name,
        json.dumps(body, indent=1).encode("utf-8") + b"\n",
        content_type="application/json",
    )
    summary = drift.summary()
    summary["report"] = {"container": settings.output_container, "name": name}
    # every compared feature's scores, not only the summary's top ones
    deps.metrics.record({**summary, "features": drift.features}, job_id=job.job_id, route=job.route or "default")
    _log_verdict(job, drift)
    return summary


def _reference_json(found: DriftWatch) -> dict[str, Any]:
    container, name = found.path.split("/", 1)
    described: dict[str, Any] = {"container": container, "name": name, "etag": found.etag or None}
    if found.reference is not None:
        described.update(source=found.reference.source, rows=found.reference.rows)
    return described


def _warn_columns(found: DriftWatch, drift: DriftReport) -> None:
    """Columns left out of the comparison: a warning once per reference version (a schema that moved on)."""
    skipped = [item for item in drift.not_compared if item["reason"] != "not in the reference"]
    if skipped and (found.path, found.etag) not in _warned:
        _warned.add((found.path, found.etag))
        listed = ", ".join(f"{item['column']} ({item['reason']})" for item in skipped)
        log.warning("drift: the reference at %s does not fit the inputs: not compared: %s", found.path, listed)


def _log_verdict(job: Job, drift: DriftReport) -> None:
    if drift.verdict == "drift":
        log.warning(
            "job %s: drift in %d of %d features (%s)",
            job.job_id,
            len(drift.drifted),
            len(drift.features),
            ", ".join(drift.drifted),
        )
    else:
        log.info("job %s: drift verdict %s%s", job.job_id, drift.verdict, f" ({drift.reason})" if drift.reason else "")
