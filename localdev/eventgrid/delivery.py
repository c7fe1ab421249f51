"""Webhook delivery with Event Grid's semantics: validation handshake first, then at-least-once
delivery with its retry schedule, non-retried status codes, TTL, max attempts and dead-lettering.

All delays are multiplied by `retry_scale` so tests can run the 24-hour policy in seconds.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

from localdev.eventgrid.config import CLOUDEVENTS, EmulatorConfig, Subscription
from localdev.eventgrid.eventlog import utc_now
from localdev.eventgrid.schema import Event, for_delivery, matches
from localdev.eventgrid.store import PendingDelivery, PendingStore, new_delivery_id, write_json_atomically

log = logging.getLogger("localdev.eventgrid")

# Event Grid's documented schedule: 10s, 30s, 1m, 5m, 10m, 30m, 1h, 3h, 6h, then every 12h.
RETRY_SCHEDULE_SECONDS = (10, 30, 60, 300, 600, 1800, 3600, 10800, 21600)
LATER_RETRY_SECONDS = 43200
# Minimum waits Event Grid applies after some answers ("retry after N or more").
MIN_DELAY_BY_STATUS = {408: 120, 503: 30}
SUCCESS_STATUSES = frozenset({200, 201, 202, 203, 204})
# Webhook answers Event Grid never retries: dead-lettered at once (dropped without dead-lettering).
NOT_RETRIED_STATUSES = frozenset({400, 401, 403, 413})
OUTCOME_BY_STATUS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    408: "TimedOut",
    413: "RequestEntityTooLarge",
    429: "Busy",
    503: "Busy",
}
VALIDATION_EVENT_TYPE = "Microsoft.EventGrid.SubscriptionValidationEvent"
WEBHOOK_ORIGIN = "eventgrid.azure.net"
# Handshakes are retried until they succeed; never wait longer than this between two tries.
MAX_HANDSHAKE_WAIT = 10.0
WORKERS = 8


def retry_delay(attempts: int, status: int | None, scale: float) -> float:
    """Seconds to wait after the `attempts`-th failed attempt."""
    index = attempts - 1
    base = RETRY_SCHEDULE_SECONDS[index] if index < len(RETRY_SCHEDULE_SECONDS) else LATER_RETRY_SECONDS
    return max(base, MIN_DELAY_BY_STATUS.get(status or 0, 0)) * scale


def outcome_for(status: int) -> str:
    if status in SUCCESS_STATUSES:
        return "Succeeded"
    return OUTCOME_BY_STATUS.get(status, "GenericError")


@dataclass
class AttemptResult:
    outcome: str
    status: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCESS_STATUSES


@dataclass
class SubscriptionState:
    subscription: Subscription
    validated: threading.Event = field(default_factory=threading.Event)
    validation_code: str = field(default_factory=lambda: str(uuid.uuid4()))
    handshake_attempts: int = 0
    last_handshake_error: str | None = None
    parked: list[str] = field(default_factory=list)
    # Set to cut a wait between two handshakes short (`retry_handshakes`, or stopping).
    wake: threading.Event = field(default_factory=threading.Event)


class DeliveryEngine:
    def __init__(self, config: EmulatorConfig, validation_base_url: str = "") -> None:
        self.config = config
        self.store = PendingStore(config.state_dir)
        self.states = {sub.name: SubscriptionState(sub) for sub in config.subscriptions}
        self.validation_base_url = validation_base_url
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._pending: dict[str, PendingDelivery] = {}
        self._in_flight: set[str] = set()
        self._history: deque[dict[str, Any]] = deque(maxlen=5000)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        for delivery in self.store.load():
            self._pending[delivery.id] = delivery
            if delivery.subscription in self.states:
                self._schedule(delivery)
            else:
                log.warning(
                    "pending delivery %s is for unknown subscription %r; kept on disk, not delivered",
                    delivery.id,
                    delivery.subscription,
                )
        if self._pending:
            log.info("resumed %d pending deliveries from %s", len(self._pending), self.store.directory)
        for state in self.states.values():
            self._spawn(self._handshake_loop, f"handshake-{state.subscription.name}", state)
        for number in range(WORKERS):
            self._spawn(self._worker, f"delivery-{number}")

    def _spawn(self, target: Any, name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        for state in self.states.values():
            state.wake.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- intake ----------------------------------------------------------------------------
    def enqueue(self, events: list[Event], input_schema: str, publish_time: str) -> int:
        """Persist one pending delivery per matching (event, subscription); returns how many.

        Called before the publisher's 200, so every accepted event's deliveries are on disk."""
        now = time.time()
        created = []
        for event in events:
            for state in self.states.values():
                sub = state.subscription
                if not matches(sub, event):
                    continue
                delivery = PendingDelivery(
                    id=new_delivery_id(),
                    subscription=sub.name,
                    event=for_delivery(event, input_schema, sub, self.config.topic_id),
                    publish_time=publish_time,
                    published_at=now,
                    expires_at=now + sub.event_ttl_minutes * 60 * self.config.retry_scale,
                    next_attempt_at=now,
                )
                self.store.save(delivery)
                created.append(delivery)
        with self._cond:
            for delivery in created:
                self._pending[delivery.id] = delivery
                self._schedule_locked(delivery)
            self._cond.notify_all()
        return len(created)

    def _schedule(self, delivery: PendingDelivery) -> None:
        with self._cond:
            self._schedule_locked(delivery)
            self._cond.notify_all()

    def _schedule_locked(self, delivery: PendingDelivery) -> None:
        state = self.states[delivery.subscription]
        if not state.validated.is_set():
            state.parked.append(delivery.id)
            return
        heapq.heappush(self._heap, (delivery.next_attempt_at, next(self._seq), delivery.id))

    # -- handshake -------------------------------------------------------------------------
    def _handshake_loop(self, state: SubscriptionState) -> None:
        while not self._stopping.is_set() and not state.validated.is_set():
            state.wake.clear()  # a retry asked for during this attempt still counts
            state.handshake_attempts += 1
            try:
                ok, detail = self._handshake(state)
            except requests.RequestException as exc:
                ok, detail = False, type(exc).__name__
            if ok or state.validated.is_set():
                self.mark_validated(state.subscription.name)
                return
            state.last_handshake_error = detail
            wait = min(
                max(retry_delay(state.handshake_attempts, None, self.config.retry_scale), 0.05),
                MAX_HANDSHAKE_WAIT,
            )
            log.warning(
                "subscription %s: validation handshake with %s failed (%s); retrying in %.2fs",
                state.subscription.name,
                state.subscription.safe_url,
                detail,
                wait,
            )
            state.wake.wait(wait)

    def retry_handshakes(self, name: str | None = None) -> list[str] | None:
        """Try the handshake of `name` (default: every subscription) again now instead of after its wait: the
        endpoint has just come up. Returns the subscriptions still waiting for validation; None: no such one."""
        if name is not None and name not in self.states:
            return None
        states = [self.states[name]] if name is not None else list(self.states.values())
        waiting = [state for state in states if not state.validated.is_set()]
        for state in waiting:
            state.wake.set()
        return [state.subscription.name for state in waiting]

    def _handshake(self, state: SubscriptionState) -> tuple[bool, str]:
        sub = state.subscription
        timeout = self.config.delivery_timeout
        if sub.schema == CLOUDEVENTS:
            # CloudEvents 1.0 webhook abuse protection (HTTP OPTIONS).
            response = requests.options(
                sub.url,
                headers={"WebHook-Request-Origin": WEBHOOK_ORIGIN},
                timeout=timeout,
                allow_redirects=False,
            )
            allowed = response.headers.get("WebHook-Allowed-Origin", "")
            if response.status_code in SUCCESS_STATUSES and allowed.strip() in (WEBHOOK_ORIGIN, "*"):
                return True, "ok"
            return False, f"OPTIONS answered {response.status_code}, WebHook-Allowed-Origin={allowed!r}"
        response = requests.post(
            sub.url,
            data=json.dumps([self.validation_event(state)]),
            headers={
                **self._common_headers(sub, 0),
                "aeg-event-type": "SubscriptionValidation",
                "aeg-data-version": "1",
                "Content-Type": "application/json; charset=utf-8",
            },
            timeout=timeout,
            allow_redirects=False,
        )
        if response.status_code != 200:
            return False, f"answered {response.status_code} (Event Grid needs 200 with validationResponse)"
        try:
            answer = response.json()
        except ValueError:
            return False, "answered 200 without a JSON body"
        if isinstance(answer, dict) and answer.get("validationResponse") == state.validation_code:
            return True, "ok"
        return False, "validationResponse missing or not the validationCode sent"

    def validation_event(self, state: SubscriptionState) -> Event:
        sub = state.subscription
        query = urlencode({"subscription": sub.name, "code": state.validation_code})
        url = f"{self.validation_base_url}/_emulator/validate?{query}"
        return {
            "id": str(uuid.uuid4()),
            "topic": self.config.topic_id,
            "subject": "",
            "data": {"validationCode": state.validation_code, "validationUrl": url},
            "eventType": VALIDATION_EVENT_TYPE,
            "eventTime": utc_now(),
            "metadataVersion": "1",
            "dataVersion": "1",
        }

    def mark_validated(self, name: str) -> None:
        state = self.states[name]
        with self._cond:
            first = not state.validated.is_set()
            state.validated.set()
            state.last_handshake_error = None
            for delivery_id in state.parked:
                delivery = self._pending.get(delivery_id)
                if delivery is not None:
                    heapq.heappush(self._heap, (delivery.next_attempt_at, next(self._seq), delivery.id))
            state.parked.clear()
            self._cond.notify_all()
        if first:
            log.info("subscription %s validated (%s)", name, state.subscription.safe_url)

    def validate_manually(self, name: str, code: str) -> bool:
        """The `validationUrl` route: a subscriber may GET it instead of echoing the code."""
        state = self.states.get(name)
        if state is None or code != state.validation_code:
            return False
        self.mark_validated(name)
        return True

    # -- delivery --------------------------------------------------------------------------
    def _next_due(self) -> PendingDelivery | None:
        with self._cond:
            while not self._stopping.is_set():
                if self._heap:
                    due, _, delivery_id = self._heap[0]
                    wait = due - time.time()
                    if wait <= 0:
                        heapq.heappop(self._heap)
                        delivery = self._pending.get(delivery_id)
                        if delivery is None or delivery_id in self._in_flight:
                            continue
                        self._in_flight.add(delivery_id)
                        return delivery
                    self._cond.wait(min(wait, 1.0))
                else:
                    self._cond.wait(1.0)
        return None

    def _worker(self) -> None:
        while True:
            delivery = self._next_due()
            if delivery is None:
                return
            try:
                self._process(delivery)
            except Exception:
                # A bug here must not lose the delivery: keep it pending and try again later.
                log.exception("delivery %s failed unexpectedly; retrying later", delivery.id)
                delivery.next_attempt_at = time.time() + max(1.0, 10 * self.config.retry_scale)
                self._requeue(delivery)
            finally:
                with self._cond:
                    self._in_flight.discard(delivery.id)

    def _requeue(self, delivery: PendingDelivery) -> None:
        with self._cond:
            heapq.heappush(self._heap, (delivery.next_attempt_at, next(self._seq), delivery.id))
            self._cond.notify_all()

    def _process(self, delivery: PendingDelivery) -> None:
        sub = self.states[delivery.subscription].subscription
        if time.time() >= delivery.expires_at:
            self._dead_letter(delivery, "TimeToLiveExceeded")
            return
        result = self._attempt(sub, delivery)
        delivery.attempts += 1
        delivery.last_outcome = result.outcome
        delivery.last_http_status = result.status
        delivery.last_attempt_time = utc_now()
        if result.succeeded:
            self._finish(delivery, "Delivered")
            log.info(
                "delivered %s %s to %s (attempt %d)",
                delivery.event_type,
                delivery.event_id,
                sub.name,
                delivery.attempts,
            )
            return
        if result.status in NOT_RETRIED_STATUSES:
            self._dead_letter(delivery, "UndeliverableDueToClientError")
            return
        if delivery.attempts >= sub.max_delivery_attempts:
            self._dead_letter(delivery, "MaxDeliveryAttemptsExceeded")
            return
        delay = retry_delay(delivery.attempts, result.status, self.config.retry_scale)
        delivery.next_attempt_at = min(time.time() + delay, delivery.expires_at)
        self.store.save(delivery)
        log.warning(
            "delivery of %s %s to %s failed (%s, attempt %d); retrying in %.2fs",
            delivery.event_type,
            delivery.event_id,
            sub.name,
            result.outcome,
            delivery.attempts,
            delay,
        )
        self._requeue(delivery)

    def _common_headers(self, sub: Subscription, delivery_count: int) -> dict[str, str]:
        return {
            "aeg-subscription-name": sub.name.upper(),
            "aeg-delivery-count": str(delivery_count),
            "aeg-metadata-version": "1",
            "User-Agent": "localdev-eventgrid",
        }

    def _attempt(self, sub: Subscription, delivery: PendingDelivery) -> AttemptResult:
        headers = {**self._common_headers(sub, delivery.attempts), "aeg-event-type": "Notification"}
        if sub.schema == CLOUDEVENTS:
            # One event per delivery, CloudEvents structured mode, as Event Grid sends without batching.
            body = json.dumps(delivery.event, ensure_ascii=False)
            headers["Content-Type"] = "application/cloudevents+json; charset=utf-8"
        else:
            body = json.dumps([delivery.event], ensure_ascii=False)
            headers["Content-Type"] = "application/json; charset=utf-8"
            headers["aeg-data-version"] = str(delivery.event.get("dataVersion", ""))
        try:
            response = requests.post(
                sub.url,
                data=body.encode("utf-8"),
                headers=headers,
                timeout=self.config.delivery_timeout,
                allow_redirects=False,
            )
        except requests.Timeout:
            return AttemptResult("TimedOut")
        except requests.RequestException:
            return AttemptResult("Aborted")
        response.close()
        return AttemptResult(outcome_for(response.status_code), response.status_code)

    def _finish(self, delivery: PendingDelivery, state: str, **extra: Any) -> None:
        self.store.remove(delivery.id)
        with self._cond:
            self._pending.pop(delivery.id, None)
            self._history.append({**delivery.summary(state), **extra})

    def _dead_letter(self, delivery: PendingDelivery, reason: str) -> None:
        sub = self.states[delivery.subscription].subscription
        directory = self.config.dead_letter_dir
        if directory is None:
            # As in Azure without a dead-letter destination: dropped, but never silently.
            log.error(
                "DROPPED %s %s for %s: %s after %d attempts, last outcome %s (no --dead-letter directory)",
                delivery.event_type,
                delivery.event_id,
                sub.name,
                reason,
                delivery.attempts,
                delivery.last_outcome,
            )
            self._finish(delivery, "Dropped", deadLetterReason=reason)
            return
        path = dead_letter_path(directory, self.config.topic_name, sub.name, delivery.id)
        write_json_atomically(path, [dead_letter_record(delivery, reason, sub.schema)])
        log.error(
            "dead-lettered %s %s for %s: %s after %d attempts -> %s",
            delivery.event_type,
            delivery.event_id,
            sub.name,
            reason,
            delivery.attempts,
            path,
        )
        self._finish(delivery, "DeadLettered", deadLetterReason=reason, deadLetterPath=str(path))

    # -- admin -----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            pending = []
            for delivery in self._pending.values():
                state = self.states.get(delivery.subscription)
                if state is None:
                    label = "Orphaned"
                elif not state.validated.is_set():
                    label = "AwaitingValidation"
                else:
                    label = "InFlight" if delivery.id in self._in_flight else "Pending"
                pending.append(delivery.summary(label))
            return {"pending": pending, "finished": list(self._history)}

    def subscriptions(self) -> list[dict[str, Any]]:
        return [
            {
                **state.subscription.describe(),
                "validated": state.validated.is_set(),
                "handshakeAttempts": state.handshake_attempts,
                "lastHandshakeError": state.last_handshake_error,
            }
            for state in self.states.values()
        ]


def dead_letter_path(directory: Path, topic: str, subscription: str, delivery_id: str) -> Path:
    """Azure's blob layout: <topic>/<SUBSCRIPTION>/<yyyy>/<MM>/<dd>/<HH>/<id>.json."""
    now = datetime.now(UTC)
    return directory / topic / subscription.upper() / now.strftime("%Y/%m/%d/%H") / f"{delivery_id}.json"


def dead_letter_record(delivery: PendingDelivery, reason: str, schema: str) -> dict[str, Any]:
    """The event plus Azure's dead-letter properties: camelCase beside an Event Grid schema event,
    lower-case extension attributes beside a CloudEvent (as Azure writes them)."""
    props = {
        "deadLetterReason": reason,
        "deliveryAttempts": delivery.attempts,
        "lastDeliveryOutcome": delivery.last_outcome,
        "lastHttpStatusCode": delivery.last_http_status,
        "publishTime": delivery.publish_time,
        "lastDeliveryAttemptTime": delivery.last_attempt_time,
    }
    if schema == CLOUDEVENTS:
        return {**delivery.event, **{key.lower(): value for key, value in props.items()}}
    return {**delivery.event, **props}


__all__ = ["DeliveryEngine", "PendingDelivery", "dead_letter_record", "retry_delay"]
