"""Part `aml-events` of the local stack: the Azure ML workspace's Event Grid system topic, emulated.

In Azure the workspace's system topic sends `Microsoft.MachineLearningServices.RunStatusChanged` to the app's
`aml_run_events` function through the subscription in infra/aml-run-events-subscription.bicep. Locally an Event
Grid emulator plays that topic: Event Grid schema in, `topic` = the emulated workspace's ARM id, its own key,
events log and state, and one subscription to the dev host's Event Grid webhook filtered exactly as infra's.
The batch endpoint emulator publishes its jobs' run events there (`--events-topic`).

The webhook URL carries the dev host's `eventgrid_extension` system key (`code=`), so the subscription goes to
the emulator through the environment (`start_eventgrid(subscriptions=...)`), never on a command line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlencode

import requests

from localdev.batch_endpoint.config import WORKSPACE_ID
from localdev.procs import ServiceStartError
from localdev.stack_parts import Part, StackError, StackOptions, StackPaths, part_failed, record

AML_EVENTS = "aml-events"
SUBSCRIPTION = "aml-run-events"
FUNCTION = "aml_run_events"
WEBHOOK_PATH = "/runtime/webhooks/eventgrid"
RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
#: infra/aml-run-events-subscription.bicep's filter, in the emulator's `--subscription` syntax: only a run's end,
#: and only dropscore's runs (job names are `dropscore-<hash>-<attempt>`).
INCLUDED_TYPES = (RUN_STATUS_CHANGED,)
ADVANCED_FILTERS = (
    "data.runStatus:StringIn:Completed|Failed|Canceled",
    "data.runId:StringBeginsWith:dropscore-",
)
# stack.env: what a client (or `start_part`) needs to publish to, or read, the topic.
ENDPOINT_ENV = "AML_EVENTS_TOPIC_ENDPOINT"
KEY_ENV = "AML_EVENTS_TOPIC_KEY"
LOG_ENV = "AML_EVENTS_LOG"


def webhook_url(functions_url: str, code: str | None) -> str:
    """The dev host's (or Core Tools') Event Grid webhook for `aml_run_events`; `code`: the system key."""
    query = {"functionName": FUNCTION, **({"code": code} if code else {})}
    return f"{functions_url}{WEBHOOK_PATH}?{urlencode(query)}"


def subscription_spec(functions_url: str, code: str | None) -> str:
    """The one subscription of the topic, as `python -m localdev.eventgrid serve` takes it."""
    options = [f"types={','.join(INCLUDED_TYPES)}", *(f"filter={spec}" for spec in ADVANCED_FILTERS)]
    return ";".join([f"{SUBSCRIPTION}={webhook_url(functions_url, code)}", *options, "schema=eventgrid"])


def host_webhook_code(paths: StackPaths) -> str:
    """The dev host's `eventgrid_extension` system key, from its keys file, which this creates when the host has
    not yet run (the host then reads it): the subscription needs the key before the host starts."""
    from localdev.functions_host.keys import EVENTGRID_EXTENSION_KEY, load_or_create_keys

    keys, _ = load_or_create_keys(paths.keys_file)
    return keys.system_keys[EVENTGRID_EXTENSION_KEY]


def start_aml_events_part(
    paths: StackPaths,
    options: StackOptions,
    *,
    key: str,
    functions_url: str,
    code: str | None,
    track: Callable[[Part], None],
    port: int | None = None,
) -> str:
    """Start the topic; returns its endpoint. The handshake with the webhook is retried until the host answers
    (`await_subscription` makes it try at once when the host is up)."""
    from localdev.eventgrid.launcher import start_eventgrid

    log = paths.log(AML_EVENTS)
    try:
        service, endpoint = start_eventgrid(
            key=key,
            log_path=log,
            events_log=paths.aml_events_log,
            subscriptions=[subscription_spec(functions_url, code)],
            dead_letter_dir=paths.root / AML_EVENTS / "dead-letter",
            input_schema="eventgrid",
            state_dir=paths.root / AML_EVENTS / "state",
            port=port,
            topic_name=AML_EVENTS,
            topic_id=WORKSPACE_ID,
            name=AML_EVENTS,
            timeout=options.timeout,
        )
    except ServiceStartError as exc:
        raise part_failed(AML_EVENTS, log, exc) from None
    track(record(service, endpoint))
    return endpoint


def subscription_state(endpoint: str) -> dict[str, object]:
    """The subscription as the emulator's health route shows it (validated, handshake attempts, last error)."""
    health = requests.get(endpoint.replace("/api/events", "/_emulator/health"), timeout=5).json()
    return next(sub for sub in health["subscriptions"] if sub["name"] == SUBSCRIPTION)


def await_subscription(endpoint: str, log: str, timeout: float) -> None:
    """The webhook has just come up: have the topic try its handshake now (not after its retry wait), and wait
    until the subscription is validated, so run events flow as soon as `up` returns."""
    base = endpoint.removesuffix("/api/events")
    deadline = time.monotonic() + timeout
    state: dict[str, object] = {}
    try:
        requests.post(f"{base}/_emulator/handshake", params={"subscription": SUBSCRIPTION}, timeout=5)
        while not (state := subscription_state(endpoint)).get("validated"):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        else:
            return
    except (requests.RequestException, ValueError, StopIteration) as exc:
        state = {"lastHandshakeError": f"{type(exc).__name__}: {exc}"}
    raise StackError(
        f"{AML_EVENTS}: the subscription to {FUNCTION} was not validated within {timeout:.0f}s "
        f"(last handshake error: {state.get('lastHandshakeError')}; log: {log})"
    )


def restart_aml_events(
    paths: StackPaths,
    options: StackOptions,
    env: dict[str, str],
    parts: list[Part],
    *,
    track: Callable[[Part], None],
    port: int | None,
) -> None:
    """`start_part("aml-events")`: the same port, key, events log, pending deliveries and subscription."""
    host = next((p for p in parts if p.name == "functions-host"), None)
    code = host_webhook_code(paths) if host is not None else None
    endpoint = start_aml_events_part(
        paths, options, key=env[KEY_ENV], functions_url=env["FUNCTIONS_URL"], code=code, track=track, port=port
    )
    if host is not None and host.running:
        await_subscription(endpoint, str(paths.log(AML_EVENTS)), options.timeout)
