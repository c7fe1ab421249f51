"""Publishing our events to an Event Grid custom topic (azure-eventgrid).

This module is the only one that imports azure-eventgrid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from azure.core.credentials import AzureKeyCredential, TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient

from shared.adapters.identity import credential
from shared.config import Settings
from shared.errors import ResourceMissing, TopicAuthError, TransientError
from shared.events import DATA_VERSION, OutEvent


class EventGridPublisher:
    """CloudEvents 1.0 by default; Event Grid schema when the topic was created with it."""

    @classmethod
    def from_settings(cls, settings: Settings) -> EventGridPublisher:
        """The topic key locally (config allows it only on loopback); the managed identity in Azure."""
        auth: AzureKeyCredential | TokenCredential
        if settings.eventgrid_topic_key:
            auth = AzureKeyCredential(settings.eventgrid_topic_key)
        else:
            auth = credential(settings.client_id)
        return cls(EventGridPublisherClient(settings.eventgrid_topic_endpoint, auth), schema=settings.event_schema)

    def __init__(self, client: EventGridPublisherClient, *, schema: str = "cloudevents") -> None:
        self._client = client
        self._schema = schema

    def publish(self, events: Sequence[OutEvent]) -> None:
        if not events:
            return
        payload: list[Any] = [self._render(event) for event in events]
        try:
            self._client.send(payload)
        except ClientAuthenticationError as exc:
            raise TransientError(
                "Event Grid refused the credentials; give the app's identity the EventGrid Data Sender role "
                f"on the topic (HTTP {exc.status_code})"
            ) from None
        except HttpResponseError as exc:
            raise TransientError(f"Event Grid answered HTTP {exc.status_code}: {exc.reason}") from None
        except AzureError as exc:
            raise TransientError(f"Event Grid unreachable: {type(exc).__name__}") from None

    def probe(self) -> None:
        """Send a batch that is not an event: the topic checks the caller before the body, so 400 means
        it accepted our identity and rejected the batch (nothing reaches a subscriber); 401/403 means
        the identity may not publish."""
        try:
            self._client.send([{"dropscoreHealthProbe": "not an event; the topic must reject this batch"}])
        except ClientAuthenticationError as exc:
            raise TopicAuthError(f"Event Grid refused our identity (HTTP {exc.status_code})") from None
        except HttpResponseError as exc:
            if exc.status_code in {401, 403}:
                raise TopicAuthError(f"Event Grid refused our identity (HTTP {exc.status_code})") from None
            if exc.status_code == 404:
                raise ResourceMissing("Event Grid has no topic at EVENTGRID_TOPIC_ENDPOINT (HTTP 404)") from None
            if exc.status_code != 400:
                raise TransientError(f"Event Grid answered HTTP {exc.status_code}: {exc.reason}") from None
        except AzureError as exc:
            raise TransientError(f"Event Grid unreachable: {type(exc).__name__}") from None

    def _render(self, event: OutEvent) -> CloudEvent[Any] | EventGridEvent:
        if self._schema == "eventgrid":
            return EventGridEvent(
                subject=event.subject,
                event_type=event.type,
                data=event.data,
                data_version=DATA_VERSION,
                id=event.id,
                event_time=event.time,
            )
        return CloudEvent(
            source=event.source,
            type=event.type,
            data=event.data,
            subject=event.subject,
            id=event.id,
            time=event.time,
            datacontenttype="application/json",
        )
