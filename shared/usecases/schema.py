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

log = logging.getLogger("dropscore")
#: After a transient failure with columns already known, how long before the next lookup is tried.
RETRY_AFTER_FAILURE = timedelta(seconds=30)


@dataclass(frozen=True)
class RequiredColumns:
    """Columns an input must have, and where that rule comes from (for the rejection message)."""

    names: tuple[str, ...]
    source: str


class ModelColumns:
    """REQUIRED_COLUMNS, resolved; one per worker process (it lives in Deps)."""

    def __init__(self, settings: Settings, catalog: Callable[[], ModelCatalog], clock: Callable[[], datetime]) -> None:
        self._settings = settings
        self._catalog_factory = catalog
        self._catalog: ModelCatalog | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._known: RequiredColumns | None = None
        self._next_lookup: datetime | None = None

    @property
    def discovered(self) -> bool:
        return self._settings.discover_required_columns

    def current(self) -> RequiredColumns:
        """The rule for the next input; raises TransientError only when `auto` has never had an answer."""
        if not self.discovered:
            return RequiredColumns(self._settings.required_columns, "REQUIRED_COLUMNS")
        with self._lock:
            now = self._clock()
            if self._known is None or self._next_lookup is None or now >= self._next_lookup:
                self._refresh(now)
            assert self._known is not None  # _refresh sets it or raises
            return self._known

    def look_up(self) -> ModelInputs:
        """Ask the catalog now, bypassing the cache (the health check)."""
        settings = self._settings
        return self.catalog().input_columns(
            endpoint_name=settings.batch_endpoint_name or "", deployment=settings.batch_deployment
        )

    def catalog(self) -> ModelCatalog:
        if self._catalog is None:
            self._catalog = self._catalog_factory()
        return self._catalog

    def _refresh(self, now: datetime) -> None:
        refresh = timedelta(seconds=self._settings.required_columns_refresh_seconds)
        try:
            inputs = self.look_up()
        except TransientError as exc:
            if self._known is None:
                raise
            log.warning("model input columns: lookup failed (%s); keeping the last known ones", exc.message)
            self._next_lookup = now + RETRY_AFTER_FAILURE
            return
        except PermanentError as exc:
            log.warning(
                "model input columns unknown (REQUIRED_COLUMNS=auto): %s; inputs are not checked against the "
                "model until the next lookup (GET /api/health says what to fix)",
                exc.message,
            )
            self._known = RequiredColumns((), "REQUIRED_COLUMNS=auto: unknown")
        else:
            if self._known is None or self._known.names != inputs.columns:
                log.info("model %s requires the input columns: %s", inputs.model, ", ".join(inputs.columns))
            self._known = RequiredColumns(inputs.columns, f"the input signature of model {inputs.model}")
        self._next_lookup = now + refresh
