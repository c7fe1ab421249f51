"""Azure ML batch endpoint over REST (the contract in docs: invoke, poll, cancel).

Raw REST, not azure-ai-ml: it avoids the SDK's class-level header mutation and its heavy
import, and gives us the exact request on the wire. One retry layer: urllib3 Retry on the
session (429/5xx, honouring Retry-After); connect failures are retried, read timeouts are not,
because a POST whose response was lost may have created a job.
This module is the only one that imports requests and urllib3.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import requests
from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import ClientAuthenticationError
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NewConnectionError
from urllib3.util.retry import Retry

from shared.adapters.identity import credential
from shared.config import Settings
from shared.errors import (
    JobNameTaken,
    RemoteJobNotFound,
    ScoringAuthError,
    ScoringRequestError,
    ScoringUnavailable,
)
from shared.models import InvokeRequest, RemoteJob, RemoteStatus

RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
AMBIGUOUS_POST_STATUSES = frozenset({408, 500, 502, 504})
_TOKEN_MARGIN_SECONDS = 300
_MESSAGE_LIMIT = 2000
ROLE_HINT = (
    "Grant the Function App's managed identity the 'AzureML Data Scientist' role "
    "(f6c7c914-8db3-469d-8ca1-694a8f32e121) on the workspace, or a custom role with "
    "Microsoft.MachineLearningServices/workspaces/batchEndpoints/jobs/write and "
    "workspaces/experiments/runs/submit/action; tokens must be for https://ml.azure.com/.default."
)


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


#: POSTs are re-sent only for answers that say the request was not processed.
POST_RETRY_STATUSES = frozenset({429, 503})
#: Longest Retry-After we sleep for inside one invocation; longer waits are left to the next tick.
MAX_RETRY_AFTER_SECONDS = 60.0


class BoundedRetry(Retry):
    """urllib3 Retry that never re-sends a POST a 408/500/502/504 may have processed, and caps Retry-After."""

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if method.upper() == "POST" and status_code not in POST_RETRY_STATUSES:
            return False
        return bool(super().is_retry(method, status_code, has_retry_after))

    def get_retry_after(self, response: Any) -> float | None:
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(float(seconds), MAX_RETRY_AFTER_SECONDS)


def retrying_session(max_retries: int, backoff_factor: float = 0.5) -> requests.Session:
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
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=16)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class AzureMLBatchEndpoint:
    """ScoringEndpoint over the batch endpoint's scoring URI (`https://<ep>.<region>.inference.ml.azure.com/jobs`)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> AzureMLBatchEndpoint:
        """Entra tokens from the managed identity; the local stack's fixed token (loopback only) when set."""
        if settings.aml_local_token:
            token = management = static_token(settings.aml_local_token)
        else:
            identity = credential()
            token = CachedToken(identity, settings.aml_token_scope)
            management = CachedToken(identity, settings.aml_management_endpoint + "/.default")
        return cls(
            settings.batch_endpoint_uri,
            token,
            session=retrying_session(settings.aml_max_retries),
            timeout=settings.aml_http_timeout,
            workspace_id=settings.aml_workspace_id,
            management_endpoint=settings.aml_management_endpoint,
            management_token=management,
        )

    def __init__(
        self,
        scoring_uri: str,
        token: Callable[[], str],
        *,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        workspace_id: str | None = None,
        management_endpoint: str = "https://management.azure.com",
        management_token: Callable[[], str] | None = None,
        cancel_api_version: str = "2024-04-01",
    ) -> None:
        self._scoring_uri = scoring_uri.rstrip("/")
        self._token = token
        self._session = session or retrying_session(4)
        self._timeout = timeout
        self._workspace_id = (workspace_id or "").strip("/")
        self._management_endpoint = management_endpoint.rstrip("/")
        self._management_token = management_token
        self._cancel_api_version = cancel_api_version

    @property
    def endpoint_uri(self) -> str:
        return self._scoring_uri

    def invoke(self, request: InvokeRequest) -> RemoteJob:
        headers = {
            "Authorization": f"Bearer {self._bearer(self._token)}",
            "Content-Type": "application/json",
            "repeatability_request-id": request.repeatability_id,
        }
        if request.deployment:
            headers["azureml-model-deployment"] = request.deployment
        response = self._send("POST", self._scoring_uri, headers, invoke_body(request))
        if response.status_code == 409:
            raise JobNameTaken(f"Azure ML job {request.job_name} already exists: {_service_message(response)}")
        if response.status_code in AMBIGUOUS_POST_STATUSES:
            raise ScoringUnavailable(
                f"Azure ML invoke answered HTTP {response.status_code} ({_service_message(response)}); "
                "the job may or may not exist",
                ambiguous=True,
            )
        _raise_for_status(response, "invoke")
        try:
            body = _json(response)
        except ScoringRequestError as exc:  # accepted, but we cannot tell which job: reconcile by name
            raise ScoringUnavailable(exc.message, ambiguous=True) from None
        job = parse_job(body)
        return job if job.name else replace(job, name=request.job_name)

    def get_job(self, name: str) -> RemoteJob:
        headers = {"Authorization": f"Bearer {self._bearer(self._token)}"}
        response = self._send("GET", f"{self._scoring_uri}/{name}", headers, None)
        if response.status_code == 404:
            raise RemoteJobNotFound(f"Azure ML has no job named {name}")
        _raise_for_status(response, "status")
        return parse_job(_json(response))

    def cancel(self, name: str) -> bool:
        if not self._workspace_id:
            return False
        token = self._management_token or self._token
        url = (
            f"{self._management_endpoint}/{self._workspace_id}/jobs/{name}/cancel"
            f"?api-version={self._cancel_api_version}"
        )
        response = self._send("POST", url, {"Authorization": f"Bearer {self._bearer(token)}"}, None)
        if response.status_code == 404:
            return False
        _raise_for_status(response, "cancel")
        return True

    @staticmethod
    def _bearer(token: Callable[[], str]) -> str:
        """A token, or ScoringUnavailable: nothing was sent, so the request may simply be tried again."""
        try:
            return token()
        except ClientAuthenticationError as exc:
            raise ScoringUnavailable(
                f"could not get an Entra token ({type(exc).__name__}); is the Function App's managed identity on?",
                ambiguous=False,
            ) from None

    def _send(self, method: str, url: str, headers: dict[str, str], body: dict[str, Any] | None) -> requests.Response:
        data = None if body is None else json.dumps(body)
        try:
            return self._session.request(method, url, headers=headers, data=data, timeout=self._timeout)
        except requests.exceptions.ConnectTimeout:
            raise ScoringUnavailable(f"{method} {_safe(url)}: connect timeout", ambiguous=False) from None
        except requests.exceptions.RetryError as exc:
            raise ScoringUnavailable(f"{method} {_safe(url)}: gave up after retries ({exc})", ambiguous=False) from None
        except requests.exceptions.ConnectionError as exc:
            ambiguous = method == "POST" and not _never_connected(exc)
            raise ScoringUnavailable(f"{method} {_safe(url)}: connection failed", ambiguous=ambiguous) from None
        except requests.exceptions.Timeout:
            raise ScoringUnavailable(
                f"{method} {_safe(url)}: no response in {self._timeout:.0f}s", ambiguous=True
            ) from None


def invoke_body(request: InvokeRequest) -> dict[str, Any]:
    """The documented PascalCase body: one UriFile input, one explicit UriFile output, our job name."""
    return {
        "properties": {
            "name": request.job_name,
            "InputData": {"input": {"JobInputType": "UriFile", "Uri": request.input_uri}},
            "OutputData": {"score": {"JobOutputType": "UriFile", "Uri": request.output_uri}},
        }
    }


def parse_job(body: dict[str, Any]) -> RemoteJob:
    properties = body.get("properties") or {}
    name = body.get("name") or str(body.get("id", "")).rsplit("/", 1)[-1]
    studio = ((properties.get("interactionEndpoints") or {}).get("Studio") or {}).get("endpoint")
    error = properties.get("error") or body.get("error") or {}
    return RemoteJob(
        name=name,
        status=RemoteStatus.parse(properties.get("status")),
        studio_url=studio,
        error_code=error.get("code") if isinstance(error, dict) else None,
        error_message=_truncate(error.get("message")) if isinstance(error, dict) else None,
    )


def _raise_for_status(response: requests.Response, what: str) -> None:
    status = response.status_code
    if status in {200, 201, 202}:
        return
    message = _service_message(response)
    if status in {401, 403}:
        raise ScoringAuthError(f"Azure ML refused the {what} request (HTTP {status}: {message}). {ROLE_HINT}")
    if status in RETRY_STATUSES:
        raise ScoringUnavailable(f"Azure ML {what} answered HTTP {status} after retries: {message}", ambiguous=False)
    raise ScoringRequestError(f"Azure ML rejected the {what} request (HTTP {status}): {message}")


def _service_message(response: requests.Response) -> str:
    """The service's own words: ARM-style `error.message`, else the raw text (some errors are not JSON)."""
    try:
        body = response.json()
    except ValueError:
        return _truncate(response.text.strip()) or response.reason or "no message"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        code = error.get("code")
        text = str(error["message"])
        return _truncate(f"{code}: {text}" if code else text) or ""
    return _truncate(json.dumps(body)) or ""


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise ScoringRequestError(f"Azure ML answered HTTP {response.status_code} with a non-JSON body") from None
    if not isinstance(body, dict):
        raise ScoringRequestError("Azure ML answered with JSON that is not an object")
    return body


def _truncate(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT] + "..."


def _safe(url: str) -> str:
    return url.split("?", 1)[0]


def _never_connected(exc: requests.exceptions.ConnectionError) -> bool:
    """A refused or unresolvable connection never carried the request (urllib3's NewConnectionError,
    which NameResolutionError extends); a dropped one (ProtocolError and the like) may have."""
    cause = exc.args[0] if exc.args else None
    if isinstance(cause, MaxRetryError):
        cause = cause.reason
    return isinstance(cause, NewConnectionError)
