"""Composition root: wires each port to its adapter, once, lazily, on first use (never at import).

Each adapter builds itself from the settings (its `from_settings`); adapter modules, and with them
the SDKs, are imported only here and only on first use, so `import function_app` stays cheap
(cold start) and works with no settings at all.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime

from shared.config import Settings
from shared.ports import ModelCatalog, ScoringEndpoint
from shared.usecases.deps import Deps
from shared.usecases.schema import ModelColumns

_lock = threading.Lock()
_deps: Deps | None = None


def utc_now() -> datetime:
    return datetime.now(UTC)


def deps() -> Deps:
    """The app's dependencies; raises ConfigError (listing every problem) if the settings are wrong."""
    global _deps  # noqa: PLW0603 - one composition per worker process, built on first use
    with _lock:
        if _deps is None:
            settings = Settings.from_env(os.environ)
            _deps = build_deps(settings)
            if settings.appinsights_connection_string:
                from shared.adapters.telemetry import configure

                configure(settings)
        return _deps


def reset() -> None:
    """Forget the built dependencies (tests change settings between cases)."""
    global _deps  # noqa: PLW0603
    with _lock:
        _deps = None


def build_deps(settings: Settings) -> Deps:
    from shared.adapters.arm import ArmResources
    from shared.adapters.azureml import AzureMLBatchEndpoint
    from shared.adapters.blobs import AzureBlobStore
    from shared.adapters.eventgrid import EventGridPublisher
    from shared.adapters.metrics import OtelDriftMetrics
    from shared.adapters.queues import StorageCompletionQueue
    from shared.adapters.slots import TableSlots
    from shared.adapters.tables import TableJobStore

    scorers: dict[str, ScoringEndpoint] = {}
    scorers_lock = threading.Lock()

    def scorer(endpoint: str) -> ScoringEndpoint:  # one adapter (and connection pool) per ROUTES endpoint
        with scorers_lock:
            if endpoint not in scorers:
                scorers[endpoint] = AzureMLBatchEndpoint.from_settings(settings, scoring_uri=endpoint)
            return scorers[endpoint]

    def model_catalog() -> ModelCatalog:  # built on first use: PyYAML is imported only for REQUIRED_COLUMNS=auto
        from shared.adapters.modelcatalog import AzureMLModelCatalog

        return AzureMLModelCatalog.from_settings(settings)

    return Deps(
        settings=settings,
        store=TableJobStore.from_settings(settings),
        blobs=AzureBlobStore.from_settings(settings),
        scoring=AzureMLBatchEndpoint.from_settings(settings),
        events=EventGridPublisher.from_settings(settings),
        completions=StorageCompletionQueue.from_settings(settings),
        resources=ArmResources.from_settings(settings),
        clock=utc_now,
        model_columns=ModelColumns(settings, model_catalog, utc_now),
        slots=TableSlots.from_settings(settings),
        scorers=scorer,
        metrics=OtelDriftMetrics.from_settings(settings),
    )
