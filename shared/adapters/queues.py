"""The job-completions queue (azure-storage-queue), base64-encoded as the Functions host expects.

This module is the only one that imports azure-storage-queue.
"""

from __future__ import annotations

import contextlib
import threading

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.adapters.identity import storage_client
from shared.adapters.storage_errors import storage_errors_translated
from shared.config import Settings
from shared.core.naming import completion_message
from shared.errors import ResourceMissing

_PROBE_INVISIBLE_SECONDS = 300


class StorageCompletionQueue:
    @classmethod
    def from_settings(cls, settings: Settings) -> StorageCompletionQueue:
        # The Functions host decodes queue messages as base64 (host.json messageEncoding).
        name, encode, decode = settings.completions_queue, TextBase64EncodePolicy(), TextBase64DecodePolicy()
        client = storage_client(
            settings.storage,
            settings.storage.queue_url,
            from_connection_string=lambda connection: QueueClient.from_connection_string(
                connection, name, message_encode_policy=encode, message_decode_policy=decode
            ),
            from_url=lambda url, credential: QueueClient(
                url, name, credential=credential, message_encode_policy=encode, message_decode_policy=decode
            ),
            client_id=settings.client_id,
        )
        return cls(client)

    def __init__(self, client: QueueClient) -> None:
        self._client = client
        self._ready = False
        self._lock = threading.Lock()

    @storage_errors_translated
    def enqueue(self, job_id: str) -> None:
        self._ensure_queue()
        self._client.send_message(completion_message(job_id))

    @storage_errors_translated
    def probe(self) -> None:
        try:
            self._client.get_queue_properties()
        except ResourceNotFoundError:
            raise ResourceMissing(f"queue {self._client.queue_name} does not exist") from None
        # Invisible for its whole short life: complete_job never sees it.
        sent = self._client.send_message("dropscore health probe", visibility_timeout=_PROBE_INVISIBLE_SECONDS)
        self._client.delete_message(sent.id, sent.pop_receipt)

    def _ensure_queue(self) -> None:
        if self._ready:
            return
        with self._lock:
            with contextlib.suppress(ResourceExistsError):
                self._client.create_queue()
            self._ready = True
