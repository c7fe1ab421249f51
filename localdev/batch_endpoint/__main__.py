"""CLI: `python -m localdev.batch_endpoint serve --port PORT ...` (see docs/batch-endpoint-emulator.md)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

# Secrets come through the environment: a command line is visible to every user in `ps`.
TOKEN_ENV = "BATCH_ENDPOINT_TOKEN"  # noqa: S105 - the variable name, not a secret
STORAGE_CONNECTION_STRING_ENV = "BATCH_ENDPOINT_STORAGE_CONNECTION_STRING"
EVENTS_KEY_ENV = "BATCH_ENDPOINT_EVENTS_KEY"


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m localdev.batch_endpoint")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the emulator on 127.0.0.1")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument(
        "--storage-connection-string",
        default=os.environ.get(STORAGE_CONNECTION_STRING_ENV),
        help=f"Azurite connection string; prefer ${STORAGE_CONNECTION_STRING_ENV}, which `ps` does not show",
    )
    serve.add_argument("--datastore", type=_pair, action="append", default=[], metavar="NAME=CONTAINER")
    serve.add_argument("--deployment", type=_pair, action="append", default=[], metavar="NAME=PATH")
    serve.add_argument("--token", default=os.environ.get(TOKEN_ENV), help=f"required bearer token (or ${TOKEN_ENV})")
    serve.add_argument("--state-dir", type=Path, default=None, help="persist jobs here to survive restarts")
    serve.add_argument("--job-seconds", type=float, default=2.0, help="minimum wall time of a job's status walk")
    serve.add_argument("--faults", default="", help="fault spec, e.g. invoke_429_first=2,fail_match=bad")
    serve.add_argument(
        "--workers",
        type=int,
        default=max(2, os.cpu_count() or 2),
        help="scoring processes shared by all jobs (default max(2, cpu count))",
    )
    serve.add_argument(
        "--row-cost-us",
        type=float,
        default=0.0,
        help="benchmarks: a worker sleeps this many microseconds per scored row (default 0)",
    )
    serve.add_argument(
        "--max-active-jobs",
        type=int,
        default=0,
        metavar="N",
        help="capacity: while N jobs are active (not finished), an invoke is answered 429 (default 0: no limit)",
    )
    serve.add_argument(
        "--events-topic",
        default=None,
        metavar="URL",
        help=f"publish Azure ML run events (Event Grid schema) to this topic endpoint; its key in ${EVENTS_KEY_ENV}",
    )
    serve.add_argument("--endpoint-name", default="local-endpoint", help="in job ids; the run events' experiment")
    serve.add_argument("--log-level", default="info")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import uvicorn

    from localdev.batch_endpoint.app import create_app
    from localdev.batch_endpoint.config import EmulatorConfig
    from localdev.batch_endpoint.deployments import DeploymentError, load_deployment
    from localdev.batch_endpoint.faults import FaultSpec
    from localdev.batch_endpoint.hangup import OpenConnections

    if not args.token:
        print(f"error: --token (or ${TOKEN_ENV}) is required", file=sys.stderr)
        return 2
    if not args.storage_connection_string:
        print(f"error: ${STORAGE_CONNECTION_STRING_ENV} (or --storage-connection-string) is required", file=sys.stderr)
        return 2
    if not args.datastore:
        print("error: at least one --datastore NAME=CONTAINER is required", file=sys.stderr)
        return 2
    events_key = os.environ.get(EVENTS_KEY_ENV)
    if args.events_topic and not events_key:
        print(f"error: --events-topic needs the topic key in ${EVENTS_KEY_ENV}", file=sys.stderr)
        return 2
    if args.row_cost_us < 0 or args.max_active_jobs < 0:
        print("error: --row-cost-us and --max-active-jobs cannot be negative", file=sys.stderr)
        return 2
    try:
        deployments = {name: load_deployment(name, Path(path)) for name, path in args.deployment}
        faults = FaultSpec.parse(args.faults)
    except (DeploymentError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = EmulatorConfig(
        connection_string=args.storage_connection_string,
        datastores=dict(args.datastore),
        deployments=deployments,
        token=args.token,
        state_dir=args.state_dir,
        job_seconds=args.job_seconds,
        workers=max(1, args.workers),
        faults=faults,
        endpoint_name=args.endpoint_name,
        row_cost_us=args.row_cost_us,
        max_active_jobs=args.max_active_jobs,
        events_topic=args.events_topic,
        events_key=events_key,
    )
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # The Azure SDK logs every request at INFO; keep the emulator's log about jobs.
    logging.getLogger("azure").setLevel(logging.WARNING)
    # uvicorn.Server rather than uvicorn.run: the "answer dropped" fault needs the server's connections.
    connections = OpenConnections()
    app = create_app(config, connections=connections)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    )
    connections.attach(server.server_state.connections)
    server.run()
    return 0 if server.started else 3  # what uvicorn.run exits with when the server could not start


if __name__ == "__main__":
    sys.exit(main())
