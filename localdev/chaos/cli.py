"""`python -m localdev chaos [--seed N] [--files N] [--kills N] [--dir DIR] ...`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from localdev.chaos.runner import ChaosOptions, run_chaos

DEFAULTS = ChaosOptions()


def add_chaos_parser(commands: Any) -> None:
    """The `chaos` subcommand on `python -m localdev`'s subparsers."""
    chaos = commands.add_parser(
        "chaos",
        help="a seeded chaos run on a fresh stack: uploads, kill -9, outages, faults; then check every version",
    )
    chaos.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed of the plan and the faults")
    chaos.add_argument("--files", type=int, default=DEFAULTS.files, help="file versions to upload")
    chaos.add_argument("--kills", type=int, default=DEFAULTS.kills, help="kill -9 of the functions host")
    chaos.add_argument(
        "--dir", type=Path, default=DEFAULTS.base_dir, help="the run's stack goes in DIR/chaos-<seed>-<timestamp>"
    )
    chaos.add_argument("--models-dir", type=Path, help="where the demo model is built (default DIR/models)")
    chaos.add_argument(
        "--topic-down", type=float, default=DEFAULTS.topic_down_seconds, help="seconds the Event Grid topic is down"
    )
    chaos.add_argument(
        "--no-azurite-restart", dest="azurite_restart", action="store_false", help="do not restart Azurite"
    )
    chaos.add_argument("--spacing", type=float, default=DEFAULTS.spacing, help="seconds between uploads")
    chaos.add_argument("--faults", help="batch endpoint fault spec instead of the seeded default")
    chaos.add_argument(
        "--timeout",
        type=float,
        default=DEFAULTS.timeout,
        help="seconds the jobs may take to finish after the workload; then the run fails saying what is left",
    )
    chaos.add_argument("--keep", action="store_true", help="keep the run's directory even when it passes")


def run(args: argparse.Namespace) -> int:
    if args.files < 1 or args.kills < 0 or args.spacing <= 0 or args.topic_down < 0 or args.timeout <= 0:
        print("error: need --files >= 1, --kills >= 0, --spacing > 0, --topic-down >= 0, --timeout > 0")
        return 2
    options = ChaosOptions(
        seed=args.seed,
        files=args.files,
        kills=args.kills,
        topic_down_seconds=args.topic_down,
        azurite_restart=args.azurite_restart,
        spacing=args.spacing,
        faults=args.faults,
        base_dir=args.dir,
        models_dir=args.models_dir,
        timeout=args.timeout,
        keep=args.keep,
    )
    return run_chaos(options)
