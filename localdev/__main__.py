"""`python -m localdev up | down | status | demo | chaos` (see docs/local-development.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from localdev.stack import (
    DEFAULT_DIR,
    StackError,
    StackOptions,
    StackRunning,
    down,
    interrupt_on_sigterm,
    status,
    summary,
    up,
)


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m localdev", description="dropscore's local stack")
    commands = parser.add_subparsers(dest="command", required=True)

    start = commands.add_parser("up", help="start Azurite, the emulators, the run events topic and the dev host")
    start.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state, logs and stack.env (default .localdev)")
    start.add_argument("--models-dir", type=Path, help="where the demo model is built (default DIR/models)")
    start.add_argument("--model-dir", type=Path, help="serve this deployment folder instead of the demo model")
    start.add_argument("--faults", help="batch endpoint fault spec, e.g. fail_match=broken (localdev/batch_endpoint)")
    start.add_argument("--job-seconds", type=float, default=2.0, help="minimum duration of an emulated job")
    start.add_argument("--blob-scan-interval", type=float, default=1.0, help="seconds between input container scans")
    start.add_argument(
        "--set",
        type=_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra app setting, e.g. REQUIRED_COLUMNS=carat,cut or POLL_SCHEDULE='* * * * * *' (repeatable)",
    )
    start.add_argument(
        "--no-functions-host",
        dest="functions_host",
        action="store_false",
        help="do not start the dev host (run `func start` with DIR/local.settings.json instead)",
    )
    start.add_argument(
        "--no-aml-events",
        dest="aml_events",
        action="store_false",
        help="no Azure ML run events topic (aml-events) and AML_RUN_EVENTS off: jobs end on the poll tick only",
    )
    start.add_argument("--timeout", type=float, default=90.0, help="seconds each part may take to come up")

    for name, text in (("down", "stop the stack"), ("status", "show the parts and the jobs by state")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--dir", type=Path, default=DEFAULT_DIR)

    demo = commands.add_parser("demo", help="run localdev/demo/diamonds.csv end to end on a fresh stack")
    demo.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="the demo stack goes in DIR/demo-<timestamp>")
    demo.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the job")
    demo.add_argument(
        "--drift",
        action="store_true",
        help="then drop localdev/demo/diamonds-shifted.csv: a drift verdict and its DropScore.DriftDetected event",
    )

    from localdev.chaos.cli import add_chaos_parser

    add_chaos_parser(commands)
    return parser


def _up(args: argparse.Namespace) -> int:
    options = StackOptions(
        directory=args.dir,
        models_dir=args.models_dir,
        model_dir=args.model_dir,
        faults=args.faults,
        job_seconds=args.job_seconds,
        blob_scan_interval=args.blob_scan_interval,
        app_settings=dict(args.set),
        functions_host=args.functions_host,
        aml_events=args.aml_events,
        timeout=args.timeout,
    )
    interrupt_on_sigterm()
    try:
        stack = up(options)
    except KeyboardInterrupt:
        print("interrupted; stopped the parts that had started.", file=sys.stderr)
        return 130
    except StackRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except StackError as exc:
        print(f"error: {exc}\nstopped the parts that had started.", file=sys.stderr)
        return 1
    print(summary(stack))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "up":
        return _up(args)
    if args.command == "down":
        print("\n".join(down(args.dir)))
        return 0
    if args.command == "status":
        report, _ = status(args.dir)
        print(report)
        return 0
    if args.command == "chaos":
        from localdev.chaos.cli import run as run_chaos

        return run_chaos(args)
    from localdev.stack_demo import run_demo

    return run_demo(args.dir.resolve(), timeout=args.timeout, drift=args.drift)


if __name__ == "__main__":
    sys.exit(main())
