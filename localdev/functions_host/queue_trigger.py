"""Queue trigger: polling with back-off, visibility timeout, dequeue count, base64 and `<queue>-poison`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions import meta
from azure.storage.queue import QueueClient, QueueMessage

from localdev.functions_host import storage
from localdev.functions_host.blob_trigger import Spawn
from localdev.functions_host.indexing import FunctionSpec
from localdev.functions_host.invoker import Invoker, TriggerInput
from localdev.functions_host.settings import QueueOptions, resolve_connection

log = logging.getLogger("functions_host")

MIN_POLL_SECONDS = 0.1
# Messages stay invisible while a function runs; the host renews this lease, we take one long enough.
RECEIVE_VISIBILITY_SECONDS = 600


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def poison_queue_name(queue_name: str) -> str:
    return f"{queue_name}-poison"


def message_trigger_input(message: QueueMessage, options: QueueOptions, queue_name: str, tries: int) -> TriggerInput:
    content = message.content if isinstance(message.content, str) else str(message.content)
    metadata = {
        "Id": meta.Datum(message.id, "string"),
        "DequeueCount": meta.Datum(str(message.dequeue_count), "string"),
        "InsertionTime": meta.Datum(_iso(message.inserted_on), "string"),
        "ExpirationTime": meta.Datum(_iso(message.expires_on), "string"),
        "NextVisibleTime": meta.Datum(_iso(message.next_visible_on), "string"),
        "PopReceipt": meta.Datum(message.pop_receipt, "string"),
    }
    detail = f"queue={queue_name} id={message.id} dequeueCount={message.dequeue_count}/{tries}"
    try:
        body = storage.decode_message(content, options.message_encoding)
    except ValueError as exc:
        return TriggerInput(meta.Datum(b"", "bytes"), metadata, {}, detail, message.dequeue_count, tries, exc)
    try:
        datum = meta.Datum(body.decode("utf-8"), "string")
    except UnicodeDecodeError:
        datum = meta.Datum(body, "bytes")
    binding_data = {
        "queueTrigger": str(datum.value),
        "Id": message.id,
        "DequeueCount": str(message.dequeue_count),
    }
    return TriggerInput(datum, metadata, binding_data, detail, message.dequeue_count or 1, tries)


def synthetic_trigger_input(text: str, tries: int) -> TriggerInput:
    """`/admin/functions/<fn>` input for a queue trigger: the message text, delivered once."""
    metadata = {"Id": meta.Datum("manual", "string"), "DequeueCount": meta.Datum("1", "string")}
    return TriggerInput(meta.Datum(text, "string"), metadata, {"queueTrigger": text}, "manual", 1, tries)


class QueueTriggers:
    def __init__(self, *, invoker: Invoker, spawn: Spawn, options: QueueOptions) -> None:
        self.invoker = invoker
        self.spawn = spawn
        self.options = options

    def _client(self, spec: FunctionSpec, queue_name: str) -> QueueClient:
        connection = resolve_connection(spec.trigger.get("connection"))
        return storage.queue_service(connection).get_queue_client(queue_name)

    def _receive(self, client: QueueClient) -> list[QueueMessage]:
        try:
            pages = client.receive_messages(
                messages_per_page=self.options.batch_size, visibility_timeout=RECEIVE_VISIBILITY_SECONDS
            )
            return list(next(pages.by_page(), []))
        except ResourceNotFoundError:
            return []

    def _move_to_poison(self, spec: FunctionSpec, client: QueueClient, message: QueueMessage) -> None:
        poison = self._client(spec, poison_queue_name(client.queue_name))
        with contextlib.suppress(ResourceExistsError):
            poison.create_queue()
        # The host copies the message as it is (still encoded), then deletes the original.
        poison.send_message(message.content)
        client.delete_message(message.id, message.pop_receipt)
        log.error(
            "Message %s on queue %s reached MaxDequeueCount %d: moved to %s",
            message.id, client.queue_name, self.options.max_dequeue_count, poison.queue_name,
        )  # fmt: skip

    def _release(self, client: QueueClient, message: QueueMessage) -> None:
        # Visible again after host.json visibilityTimeout: that is the delay before the next try.
        client.update_message(
            message.id,
            message.pop_receipt,
            visibility_timeout=int(self.options.visibility_timeout.total_seconds()),
        )

    async def handle(self, spec: FunctionSpec, client: QueueClient, message: QueueMessage) -> None:
        limit = self.options.max_dequeue_count
        if message.dequeue_count and message.dequeue_count > limit:
            await asyncio.to_thread(self._move_to_poison, spec, client, message)
            return
        trigger = message_trigger_input(message, self.options, client.queue_name, limit)
        result = await self.invoker.invoke(spec, trigger)
        try:
            if result.succeeded:
                await asyncio.to_thread(client.delete_message, message.id, message.pop_receipt)
            elif (message.dequeue_count or 1) >= limit:
                await asyncio.to_thread(self._move_to_poison, spec, client, message)
            else:
                await asyncio.to_thread(self._release, client, message)
        except Exception:
            log.exception("Completing message %s on queue %s failed", message.id, client.queue_name)

    async def poll_loop(self, spec: FunctionSpec) -> None:
        """Poll like the host's QueueListener: another batch as soon as no more than newBatchThreshold messages
        are still running (so at most batchSize + newBatchThreshold at once, and a slow message never holds
        back the rest); right away after a batch, backing off up to maxPollingInterval while the queue is empty.
        """
        client = self._client(spec, str(spec.trigger["queueName"]).lower())
        max_delay = max(MIN_POLL_SECONDS, self.options.max_polling_interval.total_seconds())
        threshold = self.options.fetch_threshold
        delay = MIN_POLL_SECONDS
        running: set[asyncio.Task[None]] = set()
        while True:
            if len(running) > threshold:
                # asyncio.wait (not gather) so stopping the poller never cancels running invocations.
                await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                messages = await asyncio.to_thread(self._receive, client)
            except Exception:
                log.exception("Polling queue %s for %s failed", client.queue_name, spec.name)
                messages = []
            if messages:
                delay = MIN_POLL_SECONDS
                for message in messages:
                    task = self.spawn(self.handle(spec, client, message))
                    running.add(task)
                    task.add_done_callback(running.discard)
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
