"""The columns every input must have: REQUIRED_COLUMNS as listed, or (`auto`) the deployed model's own.

`auto` reads the batch deployment's MLflow signature through the ModelCatalog port and keeps it for
REQUIRED_COLUMNS_REFRESH_SECONDS, so intake costs one lookup per refresh, not per file. When the
lookup fails:
- Azure cannot answer now (TransientError): the last columns known are kept; with none known yet the
  error reaches intake, which leaves the job Received for the poller to validate again later.
- The columns cannot be known at all (ModelSchemaUnavailable, or a missing resource or role): inputs are
  not checked against the model until the next refresh, with a warning in the log; Azure ML still
  rejects a file that does not fit, and the health check says what to fix.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.config import Settings
from shared.errors import PermanentError, TransientError
from shared.models import ModelInputs
from shared.ports import ModelCatalog
from shared.routing import Route

log = logging.getLogger("dropscore")
#: After a transient failure with columns already known, how long before the next lookup is tried.
RETRY_AFTER_FAILURE = timedelta(seconds=30)


@dataclass(frozen=True)
class RequiredColumns:
    """Columns an input must have, and where that rule comes from (for the rejection message)."""

    names: tuple[str, ...]
    source: str


class ModelColumns:
    """REQUIRED_COLUMNS, resolved for each ROUTES route; one per worker process (it lives in Deps)."""

    def __init__(self, settings: Settings, catalog: Callable[[], ModelCatalog], clock: Callable[[], datetime]) -> None:
        self._settings = settings
        self._catalog_factory = catalog
        self._catalog: ModelCatalog | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._known: dict[str, RequiredColumns] = {}
        self._next_lookup: dict[str, datetime] = {}

    def _route(self, route: Route | None) -> Route:
        return route or self._settings.routes.default

    def current(self, route: Route | None = None) -> RequiredColumns:
        """The rule for the route's next input; raises TransientError only when `auto` has never had an answer."""
        route = self._route(route)
        if not route.discover_required_columns:
            source = "REQUIRED_COLUMNS" if route.prefix == "" else f"requiredColumns of route {route.name}"
            return RequiredColumns(route.required_columns, source)
        with self._lock:
            now = self._clock()
            due = self._next_lookup.get(route.name)
            if route.name not in self._known or due is None or now >= due:
                self._refresh(route, now)
            return self._known[route.name]  # _refresh sets it or raises

    def look_up(self, route: Route | None = None) -> ModelInputs:
        """Ask the catalog now, bypassing the cache (the health check)."""
        route = self._route(route)
        return self.catalog().input_columns(endpoint_name=route.endpoint_name or "", deployment=route.deployment)

    def catalog(self) -> ModelCatalog:
        if self._catalog is None:
            self._catalog = self._catalog_factory()
        return self._catalog

    def _refresh(self, route: Route, now: datetime) -> None:
        refresh = timedelta(seconds=self._settings.required_columns_refresh_seconds)
        known = self._known.get(route.name)
        try:
            inputs = self.look_up(route)
        except TransientError as exc:
            if known is None:
                raise
            log.warning("model input columns: lookup failed (%s); keeping the last known ones", exc.message)
            self._next_lookup[route.name] = now + RETRY_AFTER_FAILURE
            return
        except PermanentError as exc:
            log.warning(
                "model input columns of route %s unknown (REQUIRED_COLUMNS=auto): %s; inputs are not checked against "
                "the model until the next lookup (GET /api/health says what to fix)",
                route.name,
                exc.message,
            )
            self._known[route.name] = RequiredColumns((), "REQUIRED_COLUMNS=auto: unknown")
        else:
            if known is None or known.names != inputs.columns:
                log.info("model %s requires the input columns: %s", inputs.model, ", ".join(inputs.columns))
            self._known[route.name] = RequiredColumns(inputs.columns, f"the input signature of model {inputs.model}")
        self._next_lookup[route.name] = now + refresh
