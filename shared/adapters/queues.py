"""The job-completions queue (azure-storage-queue), base64-encoded as the Functions host expects."""

from __future__ import annotations

import contextlib
import threading

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from shared.adapters.storage_errors import transient_on_outage
from shared.core import completion_message


class StorageCompletionQueue:
    def __init__(self, client: QueueClient) -> None:
        self._client = client
        self._ready = False
        self._lock = threading.Lock()

    @transient_on_outage
    def enqueue(self, job_id: str) -> None:
        self._ensure_queue()
        self._client.send_message(completion_message(job_id))

    def _ensure_queue(self) -> None:
        if self._ready:
            return
        with self._lock:
            with contextlib.suppress(ResourceExistsError):
                self._client.create_queue()
            self._ready = True
