"""Logs (and the Azure SDKs' traces) to Application Insights through OpenTelemetry (azure-monitor-opentelemetry).

This module is the only one that imports azure-monitor-opentelemetry; it is imported only when
APPLICATIONINSIGHTS_CONNECTION_STRING is set, so a cold start without it pays nothing.
"""

from __future__ import annotations

import threading

from azure.monitor.opentelemetry import configure_azure_monitor

from shared.adapters.identity import credential
from shared.config import Settings
from shared.logcontext import LOGGER, install

_lock = threading.Lock()
_configured = False


def configure(settings: Settings) -> bool:
    """Send the "dropscore" logger's records to Application Insights, each line about a job with its `job_id`
    dimension (and `aml_job_name` once known): OpenTelemetry's logging handler exports a record's own attributes,
    which Application Insights shows as customDimensions.

    With a client id the exporter authenticates with the managed identity (the resource has local
    auth disabled); without one, with the connection string alone (local tries). Once per process."""
    global _configured  # noqa: PLW0603 - one exporter pipeline per worker process
    if not settings.appinsights_connection_string:
        return False
    with _lock:
        if _configured:
            return True
        install()
        configure_azure_monitor(
            connection_string=settings.appinsights_connection_string,
            credential=credential(settings.client_id) if settings.client_id else None,
            logger_name=LOGGER,
            enable_live_metrics=False,
        )
        _configured = True
        return True
