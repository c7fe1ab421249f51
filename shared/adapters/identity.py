"""The app's Entra identity (azure-identity), and how storage clients authenticate.

In Azure: DefaultAzureCredential (the Function App's managed identity; AZURE_CLIENT_ID picks a
user-assigned one). On a workstation: your `az login`. Locally against Azurite: the connection string.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from azure.core.credentials import TokenCredential

from shared.config import StorageSettings

Client = TypeVar("Client")
_lock = threading.Lock()
_credential: TokenCredential | None = None


def credential() -> TokenCredential:
    """One credential per process: it caches tokens, so every client shares it."""
    global _credential  # noqa: PLW0603 - one per worker process, built on first use
    with _lock:
        if _credential is None:
            from azure.identity import DefaultAzureCredential  # heavy: only when Azure is really used

            _credential = DefaultAzureCredential()
        return _credential


def storage_client(
    storage: StorageSettings,
    service_url: str | None,
    *,
    from_connection_string: Callable[[str], Client],
    from_url: Callable[[str, TokenCredential], Client],
) -> Client:
    """A connection string locally (Azurite); the service URL with the managed identity in Azure."""
    if storage.connection_string:
        return from_connection_string(storage.connection_string)
    return from_url(str(service_url), credential())
