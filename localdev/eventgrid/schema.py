"""What the topic accepts (Event Grid's publish-time validation) and how events are filtered and
converted for each subscription."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from localdev.eventgrid.config import CLOUDEVENTS, EVENTGRID, AdvancedFilter, Subscription
from localdev.eventgrid.errors import PublishError, bad_request, too_large

Event = dict[str, Any]

# Event Grid custom topic quotas: an event up to 1 MB, a publish request (array) up to 1 MB.
MAX_EVENT_BYTES = 1024 * 1024
MAX_BATCH_BYTES = 1024 * 1024
# Bodies this large are refused before they are even parsed.
HARD_BODY_LIMIT = 8 * MAX_BATCH_BYTES

CE_BATCH = "application/cloudevents-batch+json"
CE_SINGLE = "application/cloudevents+json"
JSON = "application/json"

_CE_REQUIRED = ("id", "source", "specversion", "type")
_CE_STRING_ATTRS = ("id", "source", "specversion", "type", "subject", "datacontenttype", "dataschema", "time")
_CE_NAME_RE = re.compile(r"^[a-z0-9]{1,20}$")
_EG_REQUIRED = ("id", "subject", "eventType", "eventTime", "data", "dataVersion")
_EG_ALLOWED = frozenset({*_EG_REQUIRED, "topic", "metadataVersion"})
_CE_WRONG_SCHEMA = (
    "This resource is configured to receive event in 'CloudEventV10' schema. "
    "The JSON received does not conform to the expected schema."
)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def compact_size(event: Event) -> int:
    return len(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _is_timestamp(value: object) -> bool:
    if not isinstance(value, str) or "T" not in value.upper():
        return False
    # Python 3.11 parses RFC 3339 except fractions longer than 6 digits; .NET emits 7.
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", value.replace("z", "Z"))
    try:
        datetime.fromisoformat(trimmed)
    except ValueError:
        return False
    return True


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise bad_request(f"The request body is not valid UTF-8: {exc.reason}.") from exc
    except json.JSONDecodeError as exc:
        raise bad_request(
            f"Unexpected character encountered while parsing value: line {exc.lineno}, position {exc.colno}: {exc.msg}."
        ) from exc


def validate_cloudevent(event: object, index: int) -> Event:
    """CloudEvents 1.0 structured JSON, checked as Event Grid checks it on a CloudEvents topic."""
    if not isinstance(event, dict):
        raise bad_request(f"{_CE_WRONG_SCHEMA} Event at index {index} is not a JSON object.")
    for name in event:
        if name != "data_base64" and not _CE_NAME_RE.match(name):
            raise bad_request(
                f"{_CE_WRONG_SCHEMA} Invalid attribute name '{name}' at index {index}: CloudEvents "
                "attribute names are 1-20 lower-case letters or digits."
            )
    for name in _CE_REQUIRED:
        if name not in event:
            raise bad_request(f"Required property '{name}' was not set (event at index {index}).")
    for name in _CE_STRING_ATTRS:
        if name in event and (not isinstance(event[name], str) or not event[name]):
            raise bad_request(f"Property '{name}' must be a non-empty string (event at index {index}).")
    if event["specversion"] != "1.0":
        raise bad_request(f"Unsupported specversion '{event['specversion']}' at index {index}; expected '1.0'.")
    if "data" in event and "data_base64" in event:
        raise bad_request(f"Event at index {index} has both 'data' and 'data_base64'; only one is allowed.")
    if "time" in event and not _is_timestamp(event["time"]):
        raise bad_request(f"Property 'time' is not an RFC 3339 timestamp (event at index {index}).")
    return event


def validate_eventgrid_event(event: object, index: int) -> Event:
    """An Event Grid schema event, checked as Event Grid checks it on an Event Grid schema topic."""
    if not isinstance(event, dict):
        raise bad_request(f"Event at index {index} is not a JSON object.")
    for name in event:
        if name not in _EG_ALLOWED:
            raise bad_request(
                "This resource is configured for 'EventGridEvent' schema. Received unexpected property "
                f"'{name}' in JSON which does not conform to the expected schema."
            )
    for name in _EG_REQUIRED:
        if name not in event:
            raise bad_request(f"Required property '{name}' was not set (event at index {index}).")
    for name in ("id", "subject", "eventType", "eventTime", "dataVersion", "topic", "metadataVersion"):
        if name in event and not isinstance(event[name], str):
            raise bad_request(f"Property '{name}' must be a string (event at index {index}).")
    for name in ("id", "eventType"):
        if not event[name]:
            raise bad_request(f"Property '{name}' must not be empty (event at index {index}).")
    if not _is_timestamp(event["eventTime"]):
        raise bad_request(f"Property 'eventTime' is not an ISO 8601 timestamp (event at index {index}).")
    if event.get("metadataVersion", "1") != "1":
        raise bad_request(f"Property 'metadataVersion' must be '1' (event at index {index}).")
    return event


def _events_for_cloudevents_topic(kind: str, payload: object) -> list[object]:
    if kind == CE_SINGLE:
        if not isinstance(payload, dict):
            raise bad_request(f"Content-Type '{CE_SINGLE}' carries one event: a JSON object.")
        return [payload]
    if kind == CE_BATCH:
        if not isinstance(payload, list):
            raise bad_request(f"Content-Type '{CE_BATCH}' carries a JSON array of events.")
        return payload
    raise bad_request(
        f"{_CE_WRONG_SCHEMA} Content-Type '{kind or '(none)'}' is not accepted: use '{CE_BATCH}' or '{CE_SINGLE}'.",
        "InvalidContentType",
    )


def _events_for_eventgrid_topic(kind: str, payload: object) -> list[object]:
    if kind in (CE_BATCH, CE_SINGLE):
        raise bad_request(
            "This resource is configured for 'EventGridEvent' schema. Content-Type "
            f"'{kind}' carries CloudEvents, which do not conform to the expected schema.",
            "InvalidContentType",
        )
    if kind != JSON:
        raise bad_request(f"Content-Type '{kind or '(none)'}' is not accepted: use '{JSON}'.", "InvalidContentType")
    if not isinstance(payload, list):
        raise bad_request("Unexpected token when reading JSON. Expected: StartArray, actual: StartObject.")
    return payload


def parse_publish(body: bytes, content_type: str | None, input_schema: str) -> list[Event]:
    """The events of one publish request, or the PublishError Event Grid would answer with."""
    kind = media_type(content_type)
    if input_schema == CLOUDEVENTS and kind not in (CE_BATCH, CE_SINGLE):
        _events_for_cloudevents_topic(kind, None)
    if input_schema == EVENTGRID and kind != JSON:
        _events_for_eventgrid_topic(kind, None)
    oversize = len(body) > MAX_BATCH_BYTES
    try:
        payload = _parse_json(body)
    except PublishError:
        if oversize:
            raise _batch_too_large(len(body)) from None
        raise
    if input_schema == CLOUDEVENTS:
        raw = _events_for_cloudevents_topic(kind, payload)
    else:
        raw = _events_for_eventgrid_topic(kind, payload)
    _check_sizes(raw, len(body))
    if not raw:
        raise bad_request("The request contains no events; send at least one.")
    validate = validate_cloudevent if input_schema == CLOUDEVENTS else validate_eventgrid_event
    return [validate(event, index) for index, event in enumerate(raw)]


def _batch_too_large(size: int) -> PublishError:
    return too_large(
        f"The request has {size} bytes; the maximum size of a publish request (array of events) "
        f"is {MAX_BATCH_BYTES} bytes."
    )


def _check_sizes(raw: list[object], body_size: int) -> None:
    for index, event in enumerate(raw):
        if isinstance(event, dict) and compact_size(event) > MAX_EVENT_BYTES:
            raise too_large(
                f"The event at index {index} has {compact_size(event)} bytes; the maximum size of an "
                f"event is {MAX_EVENT_BYTES} bytes."
            )
    if body_size > MAX_BATCH_BYTES:
        raise _batch_too_large(body_size)


def event_type(event: Event) -> str:
    return str(event.get("type") or event.get("eventType") or "")


def event_subject(event: Event) -> str:
    return str(event.get("subject") or "")


def matches(subscription: Subscription, event: Event) -> bool:
    """Event Grid's filters: included event types and subject prefix/suffix, case-insensitive (Azure's default
    `isSubjectCaseSensitive: false`), then every advanced filter (AND)."""
    kind = event_type(event).lower()
    if subscription.included_types and kind not in {t.lower() for t in subscription.included_types}:
        return False
    subject = event_subject(event).lower()
    if not subject.startswith(subscription.subject_begins_with.lower()):
        return False
    if not subject.endswith(subscription.subject_ends_with.lower()):
        return False
    return all(passes(advanced, event) for advanced in subscription.advanced_filters)


_MISSING = object()


def filter_value(event: Event, key: str) -> object:
    """The value an advanced filter's key names in the event as published: `subject`, `data.runStatus`,
    `data.a.b`. The first segment (an event property) matches without case, as Azure takes `Data.Key` and
    `data.key`; the segments inside it are JSON property names, matched exactly. `_MISSING` if absent."""
    head, *path = key.split(".")
    found = next((name for name in event if name.lower() == head.lower()), None)
    value: object = _MISSING if found is None else event[found]
    for segment in path:
        if not isinstance(value, dict) or segment not in value:
            return _MISSING
        value = value[segment]
    return value


def _as_string(value: object) -> str | None:
    """What a string operator compares: strings, and numbers and booleans as JSON writes them. Objects,
    arrays and null fail every operator (Azure fails arrays without `enableAdvancedFilteringOnArrays`)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return None


def passes(advanced: AdvancedFilter, event: Event) -> bool:
    """One advanced filter, case-insensitive. A missing key (or null, an object, an array) fails it, whatever
    the operator: StringNotIn too."""
    value = filter_value(event, advanced.key)
    text = None if value is _MISSING else _as_string(value)
    if text is None:
        return False
    text = text.lower()
    wanted = [v.lower() for v in advanced.values]
    if advanced.operator == "StringIn":
        return text in wanted
    if advanced.operator == "StringNotIn":
        return text not in wanted
    if advanced.operator == "StringBeginsWith":
        return any(text.startswith(v) for v in wanted)
    if advanced.operator == "StringEndsWith":
        return any(text.endswith(v) for v in wanted)
    if advanced.operator == "StringContains":
        return any(v in text for v in wanted)
    raise ValueError(f"unknown advanced filter operator {advanced.operator!r}")  # config.py refuses it first


def eventgrid_to_cloudevent(event: Event, topic_id: str) -> Event:
    """Event Grid schema → CloudEvents 1.0, with Azure's mapping (topic becomes source)."""
    converted: Event = {
        "id": event["id"],
        "source": event.get("topic") or topic_id,
        "specversion": "1.0",
        "type": event["eventType"],
        "subject": event["subject"],
        "time": event["eventTime"],
        "datacontenttype": "application/json",
        "data": event["data"],
    }
    if event.get("dataVersion"):
        converted["dataversion"] = event["dataVersion"]
    return converted


def for_delivery(event: Event, input_schema: str, subscription: Subscription, topic_id: str) -> Event:
    """The event as the subscription receives it."""
    if input_schema == EVENTGRID and subscription.schema == CLOUDEVENTS:
        return eventgrid_to_cloudevent(event, topic_id)
    if input_schema == EVENTGRID:
        # Event Grid stamps the topic and metadata version on Event Grid schema events: the topic's own id, which
        # for a system topic is its source's (`--topic-id`: an Azure ML workspace's, say).
        return {**event, "topic": topic_id, "metadataVersion": "1"}
    return dict(event)
