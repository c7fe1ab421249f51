"""REST over requests with one retry layer (urllib3 Retry), Entra bearer tokens, and transport
failures as the app's typed errors. The only module that imports requests and urllib3; the Azure ML
and Resource Manager adapters speak HTTP through it and see only `Reply`.

Connect failures are retried; read timeouts are not, because a POST whose response was lost may
have created something. A POST is re-sent only for answers that say it was not processed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from azure.core.credentials import AccessToken, TokenCredential
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NewConnectionError
from urllib3.util.retry import Retry

from shared.errors import ScoringUnavailable

RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
#: POSTs are re-sent only for answers that say the request was not processed.
POST_RETRY_STATUSES = frozenset({429, 503})
#: Longest Retry-After we sleep for inside one invocation; longer waits are left to the next tick.
MAX_RETRY_AFTER_SECONDS = 60.0
_TOKEN_MARGIN_SECONDS = 300


class CachedToken:
    """A bearer token from an azure-identity credential, reused until five minutes before expiry."""

    def __init__(self, credential: TokenCredential, scope: str, clock: Callable[[], float] = time.time) -> None:
        self._credential = credential
        self._scope = scope
        self._clock = clock
        self._lock = threading.Lock()
        self._token: AccessToken | None = None

    def __call__(self) -> str:
        with self._lock:
            if self._token is None or self._token.expires_on - self._clock() < _TOKEN_MARGIN_SECONDS:
                self._token = self._credential.get_token(self._scope)
            return self._token.token


def static_token(token: str) -> Callable[[], str]:
    """The local stack's fixed token (config allows it only for loopback endpoints)."""
    return lambda: token


class BoundedRetry(Retry):
    """urllib3 Retry that never re-sends a POST a 408/500/502/504 may have processed, and caps Retry-After."""

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if method.upper() == "POST" and status_code not in POST_RETRY_STATUSES:
            return False
        return bool(super().is_retry(method, status_code, has_retry_after))

    def get_retry_after(self, response: Any) -> float | None:
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(float(seconds), MAX_RETRY_AFTER_SECONDS)


def retrying_session(max_retries: int, backoff_factor: float = 0.5, *, pool_size: int = 16) -> requests.Session:
    """`pool_size` connections are kept per host: at least as many as threads share the session (POLL_CONCURRENCY),
    or urllib3 opens a fresh connection (a new TLS handshake in Azure) for every call beyond them."""
    retry = BoundedRetry(
        total=max_retries,
        connect=max_retries,
        read=0,
        status=max_retries,
        other=0,
        backoff_factor=backoff_factor,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "POST"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def pooled_session(pool_size: int) -> requests.Session:
    """A session for an Azure SDK client's transport that keeps `pool_size` connections per host (azure-core's
    own keeps 10, so more threads than that open and drop a connection per call). No retries here: the SDK's
    pipeline retries."""
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=Retry(total=False, redirect=False, raise_on_status=False), pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


@dataclass(frozen=True)
class Reply:
    """An HTTP answer, after retries."""

    status: int
    text: str
    reason: str

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not JSON."""
        return json.loads(self.text)


class RestClient:
    def __init__(self, session: requests.Session | None = None, *, timeout: float = 30.0) -> None:
        self._session = session or retrying_session(4)
        self.timeout = timeout

    def send(self, method: str, url: str, *, headers: dict[str, str], body: dict[str, Any] | None = None) -> Reply:
        """Raises ScoringUnavailable for transport failures; `ambiguous` when the request may have landed."""
        data = None if body is None else json.dumps(body)
        safe_url = url.split("?", 1)[0]
        try:
            response = self._session.request(method, url, headers=headers, data=data, timeout=self.timeout)
        except requests.exceptions.ConnectTimeout:
            raise ScoringUnavailable(f"{method} {safe_url}: connect timeout", ambiguous=False) from None
        except requests.exceptions.RetryError as exc:
            raise ScoringUnavailable(f"{method} {safe_url}: gave up after retries ({exc})", ambiguous=False) from None
        except requests.exceptions.ConnectionError as exc:
            ambiguous = method == "POST" and not _never_connected(exc)
            raise ScoringUnavailable(f"{method} {safe_url}: connection failed", ambiguous=ambiguous) from None
        except requests.exceptions.Timeout:
            raise ScoringUnavailable(
                f"{method} {safe_url}: no response in {self.timeout:.0f}s", ambiguous=True
            ) from None
        except requests.exceptions.RequestException as exc:  # e.g. an answer cut off mid-body: it may have landed
            raise ScoringUnavailable(f"{method} {safe_url}: {type(exc).__name__}", ambiguous=method == "POST") from None
        return Reply(response.status_code, response.text, response.reason or "")


def _never_connected(exc: requests.exceptions.ConnectionError) -> bool:
    """A refused or unresolvable connection never carried the request (urllib3's NewConnectionError,
    which NameResolutionError extends); a dropped one (ProtocolError and the like) may have."""
    cause = exc.args[0] if exc.args else None
    if isinstance(cause, MaxRetryError):
        cause = cause.reason
    return isinstance(cause, NewConnectionError)
