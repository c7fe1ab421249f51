"""The Event Grid emulator's advanced filters (`filter=KEY:OPERATOR:V1|V2`), `--topic-id` (a system topic's
source id in `topic`), and the handshake retried on request; the local stack's aml run events subscription
filters exactly as infra's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from localdev.batch_endpoint.config import WORKSPACE_ID
from localdev.batch_endpoint.runevents import run_events
from localdev.eventgrid.cli import main as eventgrid_main
from localdev.eventgrid.config import AdvancedFilter, ConfigError, Subscription, parse_subscription
from localdev.eventgrid.schema import matches
from localdev.procs import REPO_ROOT
from localdev.stack_amlevents import ADVANCED_FILTERS, INCLUDED_TYPES, subscription_spec
from tests.integration.eventgrid_support import TOPIC_KEY, Emulator, EmulatorRunner, Webhook, wait_for

pytestmark = pytest.mark.integration

INFRA_SUBSCRIPTION = REPO_ROOT / "infra" / "aml-run-events-subscription.bicep"
# infra's filter, as the local stack gives it to its aml-events topic
RUN_END_FILTERS = ";".join(f"filter={spec}" for spec in ADVANCED_FILTERS)
RUN_END_SPEC = f"types={','.join(INCLUDED_TYPES)};{RUN_END_FILTERS}"


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[EmulatorRunner]:
    runner = EmulatorRunner(tmp_path)
    yield runner
    runner.stop_all()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def subscription(*filters: str) -> Subscription:
    spec = ";".join(["sub=http://127.0.0.1:1/hook", *(f"filter={f}" for f in filters)])
    return parse_subscription(spec, input_schema="eventgrid")


def eg_event(data: object, *, subject: str = "experiments/e/runs/r", event_type: str = "T") -> dict[str, Any]:
    return {
        "id": "1",
        "subject": subject,
        "eventType": event_type,
        "eventTime": "2026-01-01T00:00:00Z",
        "data": data,
        "dataVersion": "2",
    }


def run_event(run_id: str, status: str) -> list[dict[str, Any]]:
    """What the batch endpoint emulator publishes for one status change (RunCompleted too for Completed)."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return run_events(
        run_id=run_id, status=status, event_time=now, experiment_name="local-endpoint", tags={}, properties={}
    )


def publish(emulator: Emulator, events: list[dict[str, Any]]) -> None:
    """Publish Event Grid schema events as the batch endpoint emulator does (aeg-sas-key, a JSON array)."""
    response = requests.post(
        f"{emulator.endpoint}?api-version=2018-01-01", json=events, headers={"aeg-sas-key": TOPIC_KEY}, timeout=10
    )
    assert response.status_code == 200, response.text


# ---------------------------------------------------------------- the syntax


def test_filters_are_parsed_with_azure_operator_names_in_any_case() -> None:
    sub = subscription("data.runStatus:stringin:Completed|Failed", "Subject:StringBeginsWith: a/b ")

    assert sub.advanced_filters == (
        AdvancedFilter("data.runStatus", "StringIn", ("Completed", "Failed")),
        AdvancedFilter("Subject", "StringBeginsWith", ("a/b",)),
    )
    assert sub.describe()["advancedFilters"] == [
        {"operatorType": "StringIn", "key": "data.runStatus", "values": ["Completed", "Failed"]},
        {"operatorType": "StringBeginsWith", "key": "Subject", "values": ["a/b"]},
    ]


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("data.runStatus", "expected KEY:OPERATOR:VALUE1|VALUE2"),
        ("data.n:NumberIn:1", "operator must be one of"),
        ("data.runStatus:StringIn:", "at least one value"),
        ("data.runStatus:StringIn:a||b", "no empty one"),
        ("data..runStatus:StringIn:a", "dotted path"),
        (f"data.x:StringIn:{'v' * 513}", "longer than 512"),
        (";".join(f"filter=data.k{n}:StringIn:v" for n in range(26)).removeprefix("filter="), "at most 25 filters"),
        ("data.x:StringIn:" + "|".join(f"v{n}" for n in range(26)), "at most 25 values"),
    ],
)
def test_bad_filters_are_refused(spec: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        subscription(spec)


# ---------------------------------------------------------------- what passes


@pytest.mark.parametrize(
    ("filters", "data", "delivered"),
    [
        # StringIn: any value, without case
        (["data.runStatus:StringIn:Completed|Failed"], {"runStatus": "failed"}, True),
        (["data.runStatus:StringIn:Completed|Failed"], {"runStatus": "Running"}, False),
        # StringNotIn: none of the values
        (["data.runStatus:StringNotIn:Queued|Running"], {"runStatus": "Completed"}, True),
        (["data.runStatus:StringNotIn:Queued|Running"], {"runStatus": "RUNNING"}, False),
        # StringBeginsWith / EndsWith / Contains: any value, without case
        (["data.runId:StringBeginsWith:other-|dropscore-"], {"runId": "DropScore-abc-1"}, True),
        (["data.runId:StringBeginsWith:dropscore-"], {"runId": "x-dropscore-1"}, False),
        (["data.runId:StringEndsWith:-1"], {"runId": "dropscore-abc-1"}, True),
        (["data.runId:StringContains:ABC"], {"runId": "dropscore-abc-1"}, True),
        # a missing key fails every operator, StringNotIn included; so do null, objects and arrays
        (["data.runStatus:StringIn:Completed"], {"runId": "dropscore-1"}, False),
        (["data.runStatus:StringNotIn:Running"], {"runId": "dropscore-1"}, False),
        (["data.runId:StringBeginsWith:dropscore-"], {"runStatus": "Completed"}, False),
        (["data.runStatus:StringNotIn:Running"], {"runStatus": None}, False),
        (["data.runStatus:StringNotIn:Running"], "not an object", False),
        (["data.tags:StringNotIn:x"], {"tags": ["a", "b"]}, False),
        (["data.tags:StringNotIn:x"], {"tags": {"a": "b"}}, False),
        # nested keys; numbers and booleans compare as JSON writes them
        (["data.run.status:StringIn:Completed"], {"run": {"status": "Completed"}}, True),
        (["data.run.status:StringIn:Completed"], {"run": "Completed"}, False),
        (["data.attempt:StringIn:2"], {"attempt": 2}, True),
        (["data.final:StringIn:TRUE"], {"final": True}, True),
        # property names inside data are matched as written
        (["data.RUNSTATUS:StringIn:Completed"], {"runStatus": "Completed"}, False),
        # every filter must pass (AND)
        (
            ["data.runStatus:StringIn:Completed", "data.runId:StringBeginsWith:dropscore-"],
            {"runStatus": "Completed", "runId": "dropscore-1"},
            True,
        ),
        (
            ["data.runStatus:StringIn:Completed", "data.runId:StringBeginsWith:dropscore-"],
            {"runStatus": "Completed", "runId": "someone-else-1"},
            False,
        ),
    ],
)
def test_advanced_filters(filters: list[str], data: object, delivered: bool) -> None:
    assert matches(subscription(*filters), eg_event(data)) is delivered


def test_a_top_level_key_names_an_event_property_without_case() -> None:
    event = eg_event({}, subject="experiments/e/runs/dropscore-1", event_type="Microsoft.X")

    assert matches(subscription("Subject:StringContains:/runs/dropscore-"), event)
    assert matches(subscription("eventtype:StringIn:microsoft.x"), event)
    assert not matches(subscription("topic:StringNotIn:x"), event)  # not in the published event: missing


# ---------------------------------------------------------------- a running topic


def test_a_system_topic_delivers_only_what_infra_lets_through_with_its_source_as_topic(
    runner: EmulatorRunner, webhook: Webhook
) -> None:
    emulator = runner.start(
        [f"runs={webhook.url}/runs;{RUN_END_SPEC}", f"all={webhook.url}/all"],
        input_schema="eventgrid",
        extra_args=["--topic-id", WORKSPACE_ID],
    )
    statuses = ("Queued", "Running", "Completed", "Failed", "Canceled", "CancelRequested")
    ours = [event for status in statuses for event in run_event("dropscore-abc-1", status)]
    others = [event for status in ("Completed", "Failed") for event in run_event("someone-else-1", status)]
    publish(emulator, ours + others)

    # The 200 comes after every delivery was queued: once these are delivered, nothing else can follow.
    runs = wait_for(lambda: len(webhook.notifications("/runs")) == 3 and webhook.notifications("/runs"), what="3")
    wait_for(lambda: len(webhook.notifications("/all")) == len(ours + others), what="every event on /all")
    wait_for(lambda: not emulator.deliveries()["pending"], what="no delivery pending")

    delivered = [event for received in runs for event in received.json()]
    assert sorted(e["data"]["runStatus"] for e in delivered) == ["Canceled", "Completed", "Failed"]
    assert {e["data"]["runId"] for e in delivered} == {"dropscore-abc-1"}
    assert {e["eventType"] for e in delivered} == {"Microsoft.MachineLearningServices.RunStatusChanged"}
    assert len(emulator.finished("Delivered")) == 3 + len(ours + others)
    # Azure's system topic puts the workspace's id in `topic`; so does the emulator with --topic-id.
    everything = [event for received in webhook.notifications() for event in received.json()]
    assert {e["topic"] for e in everything} == {WORKSPACE_ID}
    assert emulator.health()["topic"] == WORKSPACE_ID
    [described] = [s for s in emulator.health()["subscriptions"] if s["name"] == "runs"]
    assert described["advancedFilters"] == [
        {"operatorType": "StringIn", "key": "data.runStatus", "values": ["Completed", "Failed", "Canceled"]},
        {"operatorType": "StringBeginsWith", "key": "data.runId", "values": ["dropscore-"]},
    ]


def test_without_topic_id_deliveries_carry_the_custom_topic_id(runner: EmulatorRunner, webhook: Webhook) -> None:
    emulator = runner.start([f"all={webhook.url}/all"], input_schema="eventgrid")
    publish(emulator, run_event("dropscore-abc-1", "Failed"))

    [received] = wait_for(webhook.notifications, what="a delivery")

    [event] = received.json()
    assert event["topic"].endswith("/providers/Microsoft.EventGrid/topics/local")


def test_a_topic_id_that_is_not_an_arm_id_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["serve", "--port", "1", "--key", TOPIC_KEY, "--log", str(tmp_path / "e.jsonl")]

    assert eventgrid_main([*args, "--topic-id", "local-ws"]) == 2
    assert "--topic-id 'local-ws' is not an ARM resource id" in capsys.readouterr().err


def test_a_handshake_is_tried_again_at_once_when_asked(runner: EmulatorRunner) -> None:
    hook = Webhook(handshake=False)
    try:
        # At --retry-scale 1 the handshake after a failed one waits 10 s.
        emulator = runner.start([f"late={hook.url}/x;schema=eventgrid"], input_schema="eventgrid", retry_scale=1.0)
        wait_for(lambda: emulator.health()["subscriptions"][0]["lastHandshakeError"], what="a failed handshake")
        hook.handshake = True

        answer = requests.post(f"{emulator.base}/_emulator/handshake", params={"subscription": "late"}, timeout=5)

        assert answer.json() == {"retrying": ["late"]}
        [state] = wait_for(
            lambda: [s for s in emulator.health()["subscriptions"] if s["validated"]], 5, "validated well before 10 s"
        )
        assert state["handshakeAttempts"] == 2
        missing = requests.post(f"{emulator.base}/_emulator/handshake", params={"subscription": "nope"}, timeout=5)
        assert missing.status_code == 404
        everyone = requests.post(f"{emulator.base}/_emulator/handshake", timeout=5)
        assert everyone.json() == {"retrying": []}  # nothing is waiting any more
    finally:
        hook.close()


# ---------------------------------------------------------------- the local stack's subscription


def _infra_filter() -> tuple[list[str], list[tuple[str, str, list[str]]]]:
    text = INFRA_SUBSCRIPTION.read_text(encoding="utf-8")
    types_block = re.search(r"includedEventTypes:\s*\[(.*?)\]", text, re.S)
    assert types_block, "no includedEventTypes in the subscription"
    filters = [
        (operator, key, re.findall(r"'([^']*)'", values))
        for operator, key, values in re.findall(
            r"operatorType:\s*'(\w+)'\s*key:\s*'([^']+)'\s*values:\s*\[(.*?)\]", text, re.S
        )
    ]
    return re.findall(r"'([^']*)'", types_block.group(1)), filters


def test_the_stack_subscribes_aml_run_events_with_infras_filter() -> None:
    types, filters = _infra_filter()
    sub = parse_subscription(subscription_spec("http://127.0.0.1:7071", "a-key"), input_schema="eventgrid")

    assert filters, "no advanced filters in the subscription"
    assert list(sub.included_types) == types
    assert [(f.operator, f.key, list(f.values)) for f in sub.advanced_filters] == filters
    assert sub.schema == "eventgrid"  # eventDeliverySchema: 'EventGridSchema'
    assert sub.url == "http://127.0.0.1:7071/runtime/webhooks/eventgrid?functionName=aml_run_events&code=a-key"
