"""The app's Entra identity (azure-identity), and how storage clients authenticate.

In Azure: the Function App's user-assigned managed identity, named by its client id
(`AZURE_CLIENT_ID`, `AzureWebJobsStorage__clientId`), so nothing depends on
DefaultAzureCredential's probing order. With no client id: DefaultAzureCredential (a system-assigned
identity in Azure, your `az login` on a workstation). Locally against Azurite: the connection string.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from azure.core.credentials import TokenCredential

from shared.config import StorageSettings

Client = TypeVar("Client")
_lock = threading.Lock()
_credentials: dict[str | None, TokenCredential] = {}


def credential(client_id: str | None) -> TokenCredential:
    """One credential per identity and process: it caches tokens, so every client shares it."""
    with _lock:
        if client_id not in _credentials:
            _credentials[client_id] = _new_credential(client_id)
        return _credentials[client_id]


def _new_credential(client_id: str | None) -> TokenCredential:
    # Imported here: azure-identity is heavy and only needed when Azure is really used (cold start).
    if client_id:
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=client_id)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def storage_client(
    storage: StorageSettings,
    service_url: str | None,
    *,
    from_connection_string: Callable[[str], Client],
    from_url: Callable[[str, TokenCredential], Client],
    client_id: str | None,
) -> Client:
    """A connection string locally (Azurite); the service URL with the managed identity in Azure.

    `AzureWebJobsStorage__clientId` (what the host uses) wins over the app's own client id."""
    if storage.connection_string:
        return from_connection_string(storage.connection_string)
    return from_url(str(service_url), credential(storage.client_id or client_id))
