"""The job a log line is about, as dimensions on every record of the "dropscore" logger: `job_id`, and
`aml_job_name` once the job has an Azure ML job.

Application Insights shows them as custom dimensions (OpenTelemetry exports a record's own attributes), so
one query finds every line of one job across triggers and instances. A record about no job carries neither,
and a job with no Azure ML job yet carries no `aml_job_name`: no empty dimensions. Pure stdlib: the use
cases set them, the logger's filter reads them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace

LOGGER = "dropscore"
#: The record attributes (custom dimensions in Application Insights).
JOB_ID = "job_id"
AML_JOB_NAME = "aml_job_name"


@dataclass(frozen=True)
class _About:
    job_id: str
    aml_job_name: str = ""


_current: ContextVar[_About | None] = ContextVar("dropscore_job", default=None)


@contextmanager
def about_job(job_id: str, *, aml_job_name: str = "") -> Iterator[None]:
    """Every record logged inside the block (in this thread or task) carries `job_id` (and `aml_job_name`
    when given, or once `note_aml_job` names it). ContextVars do not follow work into a thread pool:
    enter the block inside the worker function."""
    token = _current.set(_About(job_id, aml_job_name))
    try:
        yield
    finally:
        _current.reset(token)


def note_aml_job(name: str) -> None:
    """The job of the enclosing `about_job` block has an Azure ML job now: the rest of the block's records carry
    its name (a new attempt's name replaces the last one). Nothing outside a block, nothing for an empty name."""
    about = _current.get()
    if about is None or not name or about.aml_job_name == name:
        return
    _current.set(replace(about, aml_job_name=name))  # undone with the block: its reset restores the value before it


class JobIdFilter(logging.Filter):
    """Adds `record.job_id` and `record.aml_job_name` when known (never empty ones), which OpenTelemetry's
    logging handler exports as attributes."""

    def filter(self, record: logging.LogRecord) -> bool:
        about = _current.get()
        if about is not None:
            if about.job_id:
                setattr(record, JOB_ID, about.job_id)
            if about.aml_job_name:
                setattr(record, AML_JOB_NAME, about.aml_job_name)
        return True


def install() -> None:
    """Idempotent: the filter is added to the app's logger once."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(existing, JobIdFilter) for existing in logger.filters):
        logger.addFilter(JobIdFilter())
