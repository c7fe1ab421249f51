"""Settings of the app for one test against the shared Azurite: every container, table and queue its own."""

from __future__ import annotations

import uuid

from shared.config import Settings


def isolated_settings(connection_string: str) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings.from_env(
        {
            "AzureWebJobsStorage": connection_string,
            "BATCH_ENDPOINT_URI": "http://127.0.0.1:9/jobs",
            "EVENTGRID_TOPIC_ENDPOINT": "http://127.0.0.1:9/api/events",
            "INPUT_CONTAINER": f"in-{tag}",
            "OUTPUT_CONTAINER": f"out-{tag}",
            "ARCHIVE_CONTAINER": f"done-{tag}",
            "FAILED_CONTAINER": f"failed-{tag}",
            "REJECTED_CONTAINER": f"rej-{tag}",
            "AML_OUTPUT_CONTAINER": f"aml-{tag}",
            "JOBS_TABLE": f"jobs{tag}",
            "ACTIVE_JOBS_TABLE": f"active{tag}",
            "JOB_LIST_TABLE": f"list{tag}",
            "COMPLETIONS_QUEUE": f"done-{tag}",
            "REQUIRED_COLUMNS": "carat,cut",
        }
    )
