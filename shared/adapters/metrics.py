"""A job's drift scores as OpenTelemetry metrics (the metrics API only: `opentelemetry.metrics`).

With APPLICATIONINSIGHTS_CONNECTION_STRING set, telemetry.py's `configure_azure_monitor` installs the global
MeterProvider and these land in Application Insights' `customMetrics`; without it the API is a no-op. The
meter is taken on first use (OpenTelemetry's global proxy follows a provider set later), and `opentelemetry`
is imported only then: building the app's dependencies stays cheap, and so does a job without drift work.

Instruments of the meter "dropscore":

- `dropscore.drift.psi`, `dropscore.drift.js_distance`: one value per feature compared, dimensions `job_id`,
  `route`, `feature`; the prediction's as feature `<prediction>` (angle brackets: no CSV header cell of an
  input is taken for it, while `prediction` could well be one).
- `dropscore.drift.share`: the share of features that drifted, dimensions `job_id`, `route`.
- `dropscore.drift.detected`: a counter, +1 per file whose verdict is drift, dimension `route`.

The three scores are histograms of one value each, not gauges: Azure Monitor's exporter reads a synchronous
gauge cumulatively, so every gauge series (one per job and feature) would be exported again at every interval
for the life of the worker; a histogram is exported once, as its value (`value` = the score; `valueMin` and
`valueMax` the same). A "not_computed" summary has no scores: only what it has is sent (nothing, then).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.config import Settings

if TYPE_CHECKING:  # imported on first use only
    from opentelemetry.metrics import Counter, Histogram, MeterProvider

log = logging.getLogger("dropscore")

METER = "dropscore"
PSI = "dropscore.drift.psi"
JS_DISTANCE = "dropscore.drift.js_distance"
SHARE = "dropscore.drift.share"
DETECTED = "dropscore.drift.detected"
#: The `feature` dimension of the prediction column's scores.
PREDICTION_FEATURE = "<prediction>"
#: Bucket advice for back ends that keep buckets (Application Insights keeps the value): PSI's usual bands
#: (0.1 a shift, 0.2-0.25 a major one), Jensen-Shannon distance (natural log: at most √ln 2 ≈ 0.83), shares.
_PSI_BUCKETS = (0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0)
_JS_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
_SHARE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class _Instruments:
    psi: Histogram
    js_distance: Histogram
    share: Histogram
    detected: Counter


class OtelDriftMetrics:
    """DriftMetrics on OpenTelemetry's metrics API: the global MeterProvider, or the one passed (tests)."""

    def __init__(self, *, meter_provider: MeterProvider | None = None) -> None:
        self._provider = meter_provider
        self._instruments: _Instruments | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> OtelDriftMetrics:
        """No setting of its own: Application Insights (telemetry.py) decides where metrics go."""
        return cls()

    def record(self, summary: Mapping[str, Any], *, job_id: str, route: str) -> None:
        """Send one drift summary's scores. Never raises: a job does not fail for its metrics."""
        try:
            self._record(summary, job_id=job_id, route=route)
        except Exception as exc:  # the metrics API swallows its own errors; this guards a malformed summary
            log.warning("job %s: drift metrics not sent: %s: %s", job_id, type(exc).__name__, exc)

    def _record(self, summary: Mapping[str, Any], *, job_id: str, route: str) -> None:
        instruments = self._ready()
        for feature, psi, js_distance in scores(summary):
            dimensions = {"job_id": job_id, "route": route, "feature": feature}
            if psi is not None:
                instruments.psi.record(psi, dimensions)
            if js_distance is not None:
                instruments.js_distance.record(js_distance, dimensions)
        share = _number(summary.get("driftedShare"))
        if share is not None and summary.get("verdict") in {"drift", "no_drift"}:
            instruments.share.record(share, {"job_id": job_id, "route": route})
        if summary.get("verdict") == "drift":
            instruments.detected.add(1, {"route": route})

    def _ready(self) -> _Instruments:
        with self._lock:
            if self._instruments is None:
                from opentelemetry import metrics

                meter = metrics.get_meter(METER, meter_provider=self._provider)
                self._instruments = _Instruments(
                    psi=meter.create_histogram(
                        PSI,
                        description="Population stability index of a feature of a scored file against the reference",
                        explicit_bucket_boundaries_advisory=_PSI_BUCKETS,
                    ),
                    js_distance=meter.create_histogram(
                        JS_DISTANCE,
                        description="Jensen-Shannon distance (natural log) of a feature against the reference",
                        explicit_bucket_boundaries_advisory=_JS_BUCKETS,
                    ),
                    share=meter.create_histogram(
                        SHARE,
                        description="Share of a scored file's features that drifted",
                        explicit_bucket_boundaries_advisory=_SHARE_BUCKETS,
                    ),
                    detected=meter.create_counter(
                        DETECTED, unit="{file}", description="Scored files whose drift verdict is drift"
                    ),
                )
            return self._instruments


def scores(summary: Mapping[str, Any]) -> Iterator[tuple[str, float | None, float | None]]:
    """(feature, PSI, JS distance) of each feature in the summary, then of the prediction.

    The event's summary lists the `top` features only; a summary that also carries the report's `features`
    (every feature compared) sends them all."""
    features = summary.get("features")
    listed = features if isinstance(features, list) else summary.get("top")
    for item in listed if isinstance(listed, list) else []:
        if isinstance(item, Mapping) and isinstance(item.get("feature"), str):
            yield item["feature"], _number(item.get("psi")), _number(item.get("jsDistance"))
    prediction = summary.get("prediction")
    if isinstance(prediction, Mapping):
        yield PREDICTION_FEATURE, _number(prediction.get("psi")), _number(prediction.get("jsDistance"))


def _number(value: object) -> float | None:
    """A finite number (a bool is not one); None otherwise: an odd value is left out, never sent."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
