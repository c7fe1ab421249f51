"""Azure Resource Manager reads (ResourceReader): does a resource exist, and may our identity read it.

The health check uses it for the BlobCreated event subscription, which lives outside Azure ML.
"""

from __future__ import annotations

from collections.abc import Callable

from azure.core.exceptions import ClientAuthenticationError

from shared.adapters.identity import credential
from shared.adapters.rest import CachedToken, RestClient, retrying_session, static_token
from shared.config import Settings
from shared.errors import AccessDenied, ResourceMissing, TransientError


class ArmResources:
    @classmethod
    def from_settings(cls, settings: Settings) -> ArmResources:
        endpoint = settings.aml_management_endpoint
        if settings.aml_local_token:  # the local stack's emulators stand in for ARM on loopback
            token = static_token(settings.aml_local_token)
        else:
            token = CachedToken(credential(settings.client_id), endpoint + "/.default")
        client = RestClient(retrying_session(settings.aml_max_retries), timeout=settings.aml_http_timeout)
        return cls(endpoint, token, client=client)

    def __init__(self, management_endpoint: str, token: Callable[[], str], *, client: RestClient) -> None:
        self._endpoint = management_endpoint.rstrip("/")
        self._token = token
        self._rest = client

    def probe_resource(self, resource_id: str, *, api_version: str) -> None:
        try:
            bearer = self._token()
        except ClientAuthenticationError as exc:
            raise TransientError(f"could not get a management token ({type(exc).__name__})") from None
        url = f"{self._endpoint}/{resource_id.strip('/')}?api-version={api_version}"
        reply = self._rest.send("GET", url, headers={"Authorization": f"Bearer {bearer}"})
        if reply.status == 404:
            raise ResourceMissing(f"{resource_id} does not exist")
        if reply.status in {401, 403}:
            raise AccessDenied(f"Azure Resource Manager refused to read {resource_id} (HTTP {reply.status})")
        if reply.status >= 300:
            raise TransientError(f"Azure Resource Manager answered HTTP {reply.status} for {resource_id}")
