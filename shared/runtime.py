"""Composition root: settings and adapters, built once, lazily, on first use (never at import).

Heavy SDK modules are imported inside the factories so `import function_app` stays cheap
(cold start) and works with no settings at all.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from shared.config import Settings
from shared.ports import BlobStore, CompletionQueue, EventPublisher, JobStore, ScoringEndpoint

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.services import Deps

C = TypeVar("C")
_lock = threading.Lock()
_deps: Deps | None = None
_credential: TokenCredential | None = None


def utc_now() -> datetime:
    return datetime.now(UTC)


def deps() -> Deps:
    """The app's dependencies; raises ConfigError (listing every problem) if the settings are wrong."""
    global _deps  # noqa: PLW0603 - one composition per worker process, built on first use
    with _lock:
        if _deps is None:
            _deps = build_deps(Settings.from_env(os.environ))
        return _deps


def reset() -> None:
    """Forget the built dependencies (tests change settings between cases)."""
    global _deps  # noqa: PLW0603
    with _lock:
        _deps = None


def build_deps(settings: Settings) -> Deps:
    from shared.services import Deps

    return Deps(
        settings=settings,
        store=_job_store(settings),
        blobs=_blob_store(settings),
        scoring=_scoring(settings),
        events=_publisher(settings),
        completions=_completions(settings),
        clock=utc_now,
    )


def _credential_once() -> TokenCredential:
    """DefaultAzureCredential: the managed identity in Azure, your `az login` on a workstation."""
    global _credential  # noqa: PLW0603
    if _credential is None:
        from azure.identity import DefaultAzureCredential

        _credential = DefaultAzureCredential()
    return _credential


def _storage_client(
    settings: Settings,
    url: str | None,
    from_connection_string: Callable[[str], C],
    from_url: Callable[[str, TokenCredential], C],
) -> C:
    """A connection string locally (Azurite); the service URL with the managed identity in Azure."""
    connection = settings.storage.connection_string
    if connection:
        return from_connection_string(connection)
    return from_url(str(url), _credential_once())


def _job_store(settings: Settings) -> JobStore:
    from azure.data.tables import TableServiceClient

    from shared.adapters.tables import TableJobStore

    service = _storage_client(
        settings,
        settings.storage.table_url,
        TableServiceClient.from_connection_string,
        lambda url, credential: TableServiceClient(url, credential=credential),
    )
    return TableJobStore(service, settings.jobs_table, settings.active_table)


def _blob_store(settings: Settings) -> BlobStore:
    from azure.storage.blob import BlobServiceClient

    from shared.adapters.blobs import AzureBlobStore

    service = _storage_client(
        settings,
        settings.storage.blob_url,
        BlobServiceClient.from_connection_string,
        lambda url, credential: BlobServiceClient(url, credential=credential),
    )
    return AzureBlobStore(service)


def _completions(settings: Settings) -> CompletionQueue:
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    from shared.adapters.queues import StorageCompletionQueue

    # The Functions host decodes queue messages as base64 (host.json messageEncoding).
    name, encode, decode = settings.completions_queue, TextBase64EncodePolicy(), TextBase64DecodePolicy()
    client = _storage_client(
        settings,
        settings.storage.queue_url,
        lambda connection: QueueClient.from_connection_string(
            connection, name, message_encode_policy=encode, message_decode_policy=decode
        ),
        lambda url, credential: QueueClient(
            url, name, credential=credential, message_encode_policy=encode, message_decode_policy=decode
        ),
    )
    return StorageCompletionQueue(client)


def _scoring(settings: Settings) -> ScoringEndpoint:
    from shared.adapters.azureml import AzureMLBatchEndpoint, CachedToken, retrying_session, static_token

    if settings.aml_local_token:
        token = static_token(settings.aml_local_token)
        management = token
    else:
        credential = _credential_once()
        token = CachedToken(credential, settings.aml_token_scope)
        management = CachedToken(credential, settings.aml_management_endpoint + "/.default")
    return AzureMLBatchEndpoint(
        settings.batch_endpoint_uri,
        token,
        session=retrying_session(settings.aml_max_retries),
        timeout=settings.aml_http_timeout,
        workspace_id=settings.aml_workspace_id,
        management_endpoint=settings.aml_management_endpoint,
        management_token=management,
    )


def _publisher(settings: Settings) -> EventPublisher:
    from azure.core.credentials import AzureKeyCredential
    from azure.eventgrid import EventGridPublisherClient

    from shared.adapters.eventgrid import EventGridPublisher

    credential: AzureKeyCredential | TokenCredential
    if settings.eventgrid_topic_key:
        credential = AzureKeyCredential(settings.eventgrid_topic_key)
    else:
        credential = _credential_once()
    client = EventGridPublisherClient(settings.eventgrid_topic_endpoint, credential)
    return EventGridPublisher(client, settings.event_schema)
