"""Azure ML batch endpoint over REST (the contract in docs: invoke, poll, cancel), plus the ARM reads
the health check needs (deployment, datastore).

Raw REST, not azure-ai-ml: it avoids the SDK's class-level header mutation and its heavy
import, and gives us the exact request on the wire. HTTP, retries and tokens live in rest.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from azure.core.exceptions import ClientAuthenticationError

from shared.adapters.identity import credential
from shared.adapters.rest import RETRY_STATUSES, CachedToken, Reply, RestClient, retrying_session, static_token
from shared.config import Settings
from shared.errors import (
    JobNameTaken,
    RemoteJobNotFound,
    ResourceMissing,
    ScoringAuthError,
    ScoringRequestError,
    ScoringUnavailable,
)
from shared.models import InvokeRequest, RemoteJob, RemoteStatus

AMBIGUOUS_POST_STATUSES = frozenset({408, 500, 502, 504})
_MESSAGE_LIMIT = 2000
ROLE_HINT = (
    "Assign the Function App's identity the custom role 'dropscore batch invoker' that infra/ defines (or the "
    "broader built-in 'AzureML Data Scientist') on the workspace; tokens must be for https://ml.azure.com/.default."
)


class AzureMLBatchEndpoint:
    """ScoringEndpoint over the batch endpoint's scoring URI (`https://<ep>.<region>.inference.ml.azure.com/jobs`)."""

    @classmethod
    def from_settings(cls, settings: Settings, *, scoring_uri: str | None = None) -> AzureMLBatchEndpoint:
        """Entra tokens from the managed identity; the local stack's fixed token (loopback only) when set.
        `scoring_uri`: a ROUTES endpoint (default: BATCH_ENDPOINT_URI); the workspace is the same."""
        if settings.aml_local_token:
            token = management = static_token(settings.aml_local_token)
        else:
            identity = credential(settings.client_id)
            token = CachedToken(identity, settings.aml_token_scope)
            management = CachedToken(identity, settings.aml_management_endpoint + "/.default")
        return cls(
            scoring_uri or settings.batch_endpoint_uri,
            token,
            client=RestClient(
                retrying_session(settings.aml_max_retries, pool_size=max(16, settings.poll_concurrency)),
                timeout=settings.aml_http_timeout,
            ),
            workspace_id=settings.aml_workspace_id,
            management_endpoint=settings.aml_management_endpoint,
            management_token=management,
        )

    def __init__(
        self,
        scoring_uri: str,
        token: Callable[[], str],
        *,
        client: RestClient | None = None,
        workspace_id: str | None = None,
        management_endpoint: str = "https://management.azure.com",
        management_token: Callable[[], str] | None = None,
        arm_api_version: str = "2024-04-01",
    ) -> None:
        self._scoring_uri = scoring_uri.rstrip("/")
        self._token = token
        self._rest = client or RestClient()
        self._workspace_id = (workspace_id or "").strip("/")
        self._management_endpoint = management_endpoint.rstrip("/")
        self._management_token = management_token
        self._arm_api_version = arm_api_version

    @property
    def endpoint_uri(self) -> str:
        return self._scoring_uri

    def invoke(self, request: InvokeRequest) -> RemoteJob:
        headers = {
            "Authorization": f"Bearer {bearer(self._token)}",
            "Content-Type": "application/json",
            "repeatability_request-id": request.repeatability_id,
        }
        if request.deployment:
            headers["azureml-model-deployment"] = request.deployment
        response = self._rest.send("POST", self._scoring_uri, headers=headers, body=invoke_body(request))
        if response.status == 409:
            raise JobNameTaken(f"Azure ML job {request.job_name} already exists: {service_message(response)}")
        if response.status in AMBIGUOUS_POST_STATUSES:
            raise ScoringUnavailable(
                f"Azure ML invoke answered HTTP {response.status} ({service_message(response)}); "
                "the job may or may not exist",
                ambiguous=True,
            )
        raise_for_status(response, "invoke")
        try:
            body = json_object(response)
        except ScoringRequestError as exc:  # accepted, but we cannot tell which job: reconcile by name
            raise ScoringUnavailable(exc.message, ambiguous=True) from None
        job = parse_job(body)
        return job if job.name else replace(job, name=request.job_name)

    def get_job(self, name: str) -> RemoteJob:
        headers = {"Authorization": f"Bearer {bearer(self._token)}"}
        response = self._rest.send("GET", f"{self._scoring_uri}/{name}", headers=headers)
        if response.status == 404:
            raise RemoteJobNotFound(f"Azure ML has no job named {name}")
        raise_for_status(response, "status")
        return parse_job(json_object(response))

    def cancel(self, name: str) -> bool:
        if not self._workspace_id:
            return False
        response = self._arm("POST", f"jobs/{name}/cancel")
        if response.status == 404:
            return False
        raise_for_status(response, "cancel")
        return True

    def probe_token(self) -> None:
        bearer(self._token)
        if self._workspace_id:
            bearer(self._management_token or self._token)

    def probe_endpoint(self) -> None:
        """A job name nobody uses: 404 (or 200) shows the endpoint answers and accepts our token."""
        probe = f"dropscore-health-{uuid.uuid4().hex[:12]}"
        response = self._rest.send(
            "GET", f"{self._scoring_uri}/{probe}", headers={"Authorization": f"Bearer {bearer(self._token)}"}
        )
        if response.status != 404:
            raise_for_status(response, "status")

    def probe_deployment(self, *, endpoint_name: str, deployment: str) -> None:
        self._arm_read(f"batchEndpoints/{endpoint_name}/deployments/{deployment}", "deployment")

    def probe_datastore(self, datastore: str) -> None:
        self._arm_read(f"datastores/{datastore}", "datastore")

    def _arm_read(self, path: str, what: str) -> None:
        if not self._workspace_id:
            raise ScoringRequestError(f"reading the {what} needs AML_WORKSPACE_ID (the workspace's resource id)")
        response = self._arm("GET", path)
        if response.status == 404:
            raise ResourceMissing(f"Azure ML has no {what} {path.rsplit('/', 1)[-1]}: {service_message(response)}")
        raise_for_status(response, f"{what} read")

    def _arm(self, method: str, path: str) -> Reply:
        """A call to the workspace's ARM resource, with the management token."""
        url = f"{self._management_endpoint}/{self._workspace_id}/{path}?api-version={self._arm_api_version}"
        headers = {"Authorization": f"Bearer {bearer(self._management_token or self._token)}"}
        return self._rest.send(method, url, headers=headers)


def bearer(token: Callable[[], str]) -> str:
    """A token, or ScoringUnavailable: nothing was sent, so the request may simply be tried again."""
    try:
        return token()
    except ClientAuthenticationError as exc:
        raise ScoringUnavailable(
            f"could not get an Entra token ({type(exc).__name__}); is the Function App's managed identity on?",
            ambiguous=False,
        ) from None


def invoke_body(request: InvokeRequest) -> dict[str, Any]:
    """The documented PascalCase body: one input (a UriFile, or a UriFolder of parts), one explicit UriFile
    output, our job name; a sharded input overrides the mini-batch size (files per mini-batch) so each part
    goes to its own worker."""
    properties: dict[str, Any] = {
        "name": request.job_name,
        "InputData": {"input": {"JobInputType": request.input_type, "Uri": request.input_uri}},
        "OutputData": {"score": {"JobOutputType": "UriFile", "Uri": request.output_uri}},
    }
    if request.mini_batch_size is not None:
        properties["MiniBatchSize"] = request.mini_batch_size
    return {"properties": properties}


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


def raise_for_status(response: Reply, what: str) -> None:
    status = response.status
    if status in {200, 201, 202}:
        return
    message = service_message(response)
    if status in {401, 403}:
        raise ScoringAuthError(f"Azure ML refused the {what} request (HTTP {status}: {message}). {ROLE_HINT}")
    if status in RETRY_STATUSES:
        raise ScoringUnavailable(f"Azure ML {what} answered HTTP {status} after retries: {message}", ambiguous=False)
    raise ScoringRequestError(f"Azure ML rejected the {what} request (HTTP {status}): {message}")


def service_message(response: Reply) -> str:
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


def json_object(response: Reply) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise ScoringRequestError(f"Azure ML answered HTTP {response.status} with a non-JSON body") from None
    if not isinstance(body, dict):
        raise ScoringRequestError("Azure ML answered with JSON that is not an object")
    return body


def _truncate(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT] + "..."
