"""Translate azure-core's storage failures (Blob, Table, Queue) into the app's error tree.

Each adapter catches the specific outcomes it expects (not found, exists, precondition failed)
itself; whatever else escapes an adapter method passes through here and leaves as a typed error.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.errors import StorageAuthError, StorageRequestError, TransientError

P = ParamSpec("P")
R = TypeVar("R")

_RETRYABLE_STATUSES = frozenset({408, 429})
STORAGE_ROLE_HINT = (
    "give the Function App's identity 'Storage Blob Data Owner', 'Storage Queue Data Contributor' and "
    "'Storage Table Data Contributor' on the storage account"
)


def translated(exc: AzureError) -> TransientError | StorageAuthError | StorageRequestError:
    """The app's error for a storage failure azure-core has already retried."""
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return TransientError(f"storage unreachable: {type(exc).__name__}")
    if isinstance(exc, ClientAuthenticationError) and exc.status_code is None:
        # No HTTP status: the credential could not get a token and storage never answered (retry later).
        return TransientError(f"could not get an Entra token for storage ({type(exc).__name__}); is the identity on?")
    if isinstance(exc, ClientAuthenticationError) or (
        isinstance(exc, HttpResponseError) and exc.status_code in {401, 403}
    ):
        return StorageAuthError(f"storage refused the request (HTTP {_status(exc)}): {STORAGE_ROLE_HINT}")
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        if exc.status_code >= 500 or exc.status_code in _RETRYABLE_STATUSES:
            return TransientError(f"storage answered HTTP {exc.status_code}")
        code = getattr(exc, "error_code", None) or exc.reason or "no error code"
        return StorageRequestError(f"storage rejected the request (HTTP {exc.status_code}: {code})")
    return TransientError(f"storage failed: {type(exc).__name__}")


def _status(exc: AzureError) -> str:
    return str(getattr(exc, "status_code", None))


def storage_errors_translated(func: Callable[P, R]) -> Callable[P, R]:
    """Decorate an adapter method so no azure-core exception escapes it."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except AzureError as exc:
            raise translated(exc) from exc

    return wrapper
