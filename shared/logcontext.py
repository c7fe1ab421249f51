"""The job a log line is about, as a dimension (`job_id`) on every record of the "dropscore" logger.

Application Insights shows it as a custom dimension, so one query finds every line of one job
across triggers and instances. Pure stdlib: the use cases set it, the logger's filter reads it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

LOGGER = "dropscore"
_current_job: ContextVar[str] = ContextVar("dropscore_job_id", default="")


@contextmanager
def about_job(job_id: str) -> Iterator[None]:
    """Every record logged inside the block (in this thread or task) carries `job_id`."""
    token = _current_job.set(job_id)
    try:
        yield
    finally:
        _current_job.reset(token)


class JobIdFilter(logging.Filter):
    """Adds `record.job_id` (empty outside a job), which OpenTelemetry exports as an attribute."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = _current_job.get()
        return True


def install() -> None:
    """Idempotent: the filter is added to the app's logger once."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(existing, JobIdFilter) for existing in logger.filters):
        logger.addFilter(JobIdFilter())
