"""`python -m localdev.eventgrid serve|tail`: run the topic, or watch what it accepted."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from localdev.eventgrid.config import (
    DEFAULT_EVENT_TTL_MINUTES,
    DEFAULT_MAX_DELIVERY_ATTEMPTS,
    SCHEMAS,
    ConfigError,
    EmulatorConfig,
    check_topic_id,
    check_unique,
    parse_subscription,
)
from localdev.eventgrid.eventlog import follow_lines

# Event Grid waits 30 s for a webhook; scaled with --retry-scale but never below this floor.
RESPONSE_TIMEOUT_SECONDS = 30.0
MIN_RESPONSE_TIMEOUT_SECONDS = 1.0


KEY_ENV = "EVENTGRID_EMULATOR_KEY"
# One subscription spec per line. A webhook URL can carry a key (`code=` of a Functions webhook), and a
# command line is visible to every user in `ps`: the launcher passes subscriptions here.
SUBSCRIPTIONS_ENV = "EVENTGRID_EMULATOR_SUBSCRIPTIONS"


def topic_keys(from_args: list[str]) -> tuple[str, ...]:
    """Keys from --key, else from the environment (what the launcher uses: argv is visible in `ps`)."""
    keys = tuple(from_args) or tuple(key for key in os.environ.get(KEY_ENV, "").split(",") if key)
    if not keys:
        raise SystemExit(f"serve needs a topic key: --key KEY or the {KEY_ENV} environment variable")
    return keys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m localdev.eventgrid", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the topic and deliver to webhook subscriptions")
    serve.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--key",
        action="append",
        default=[],
        help=f"topic access key (repeat for key1/key2); base64 keys also work with SAS tokens; "
        f"or set {KEY_ENV} so the key stays out of the process list",
    )
    serve.add_argument("--log", type=Path, required=True, help="JSONL file every accepted event is appended to")
    serve.add_argument(
        "--subscription",
        action="append",
        default=[],
        metavar="NAME=URL[;OPTION=VALUE...]",
        help="webhook subscription (repeatable); options types=A,B subject-begins=.. subject-ends=.. "
        "filter=KEY:OPERATOR:V1|V2 (advanced filter, repeatable, all must pass; operators StringIn, StringNotIn, "
        "StringBeginsWith, StringEndsWith, StringContains; e.g. filter=data.runStatus:StringIn:Completed|Failed) "
        f"schema=cloudevents|eventgrid max-attempts=N ttl=MINUTES; also one per line in "
        f"${SUBSCRIPTIONS_ENV}, which keeps a key in the URL out of the process list",
    )
    serve.add_argument("--input-schema", choices=SCHEMAS, default="cloudevents", help="the topic's input schema")
    serve.add_argument("--dead-letter", type=Path, help="directory for dead-lettered events (off by default)")
    serve.add_argument("--state-dir", type=Path, help="pending deliveries (default: <log>.state next to the log)")
    serve.add_argument(
        "--retry-scale",
        type=float,
        default=1.0,
        help="multiply every retry delay and TTL by this (0.01: 10 s -> 0.1 s)",
    )
    serve.add_argument(
        "--delivery-timeout",
        type=float,
        help="webhook response timeout in seconds (default 30 x retry-scale, at least 1)",
    )
    serve.add_argument("--max-delivery-attempts", type=int, default=DEFAULT_MAX_DELIVERY_ATTEMPTS)
    serve.add_argument("--event-ttl", type=float, default=DEFAULT_EVENT_TTL_MINUTES, help="minutes, before scaling")
    serve.add_argument("--topic-name", default="local", help="topic name used in `topic` and dead-letter paths")
    serve.add_argument(
        "--topic-id",
        metavar="ARM_ID",
        help="the ARM id deliveries carry in `topic` (Event Grid schema), as a system topic sends its source's "
        "id (an Azure ML workspace's); default: a custom topic's id built from --topic-name",
    )
    serve.add_argument("--verbose", action="store_true", help="log every HTTP request too")

    tail = commands.add_parser("tail", help="print accepted events from the log")
    tail.add_argument("--log", type=Path, required=True)
    tail.add_argument("--type", action="append", default=[], help="only these event types (repeatable)")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    tail.add_argument("--json", action="store_true", help="print the raw log lines")
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    if args.retry_scale <= 0:
        raise ConfigError("--retry-scale must be > 0")
    subscriptions = tuple(
        parse_subscription(
            spec,
            input_schema=args.input_schema,
            max_delivery_attempts=args.max_delivery_attempts,
            event_ttl_minutes=args.event_ttl,
        )
        for spec in [*args.subscription, *os.environ.get(SUBSCRIPTIONS_ENV, "").splitlines()]
        if spec.strip()
    )
    check_unique(subscriptions)
    timeout = args.delivery_timeout or max(RESPONSE_TIMEOUT_SECONDS * args.retry_scale, MIN_RESPONSE_TIMEOUT_SECONDS)
    log_path = args.log.resolve()
    return EmulatorConfig(
        keys=topic_keys(args.key),
        events_log=log_path,
        state_dir=(args.state_dir or log_path.with_name(log_path.name + ".state")).resolve(),
        input_schema=args.input_schema,
        subscriptions=subscriptions,
        dead_letter_dir=args.dead_letter.resolve() if args.dead_letter else None,
        retry_scale=args.retry_scale,
        delivery_timeout=timeout,
        topic_name=args.topic_name,
        host=args.host,
        port=args.port,
        topic_resource_id=check_topic_id(args.topic_id) if args.topic_id else "",
    )


def serve(config: EmulatorConfig, *, verbose: bool = False) -> None:
    import uvicorn

    from localdev.eventgrid.delivery import DeliveryEngine
    from localdev.eventgrid.server import create_app

    engine = DeliveryEngine(config, validation_base_url=f"http://{config.host}:{config.port}")
    app = create_app(config, engine)
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level="info" if verbose else "warning",
        access_log=verbose,
    )


def format_record(record: dict[str, Any]) -> str:
    event = record.get("event", {})
    kind = event.get("type") or event.get("eventType") or "?"
    subject = event.get("subject", "")
    data = json.dumps(event.get("data", event.get("data_base64")), ensure_ascii=False)
    return f"{record.get('receivedAt', '?')}  {kind}  id={event.get('id', '?')}  subject={subject}\n    {data}"


def tail(log_path: Path, types: Sequence[str], *, follow: bool, raw: bool) -> None:
    wanted = {t.lower() for t in types}
    for line in follow_lines(log_path, follow=follow):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        event = record.get("event", {})
        kind = str(event.get("type") or event.get("eventType") or "")
        if wanted and kind.lower() not in wanted:
            continue
        print(line if raw else format_record(record), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "tail":
        with contextlib.suppress(KeyboardInterrupt):
            tail(args.log, args.type, follow=args.follow, raw=args.json)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    serve(config, verbose=args.verbose)
    return 0
