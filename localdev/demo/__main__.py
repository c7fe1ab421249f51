"""CLI: `python -m localdev.demo build --out DIR` and `python -m localdev.demo sample --rows N --out FILE
[--shifted]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev.demo")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="train and save DIR/diamonds-mlflow and DIR/diamonds-script")
    build.add_argument("--out", type=Path, required=True)
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")
    sample = commands.add_parser("sample", help="write a CSV of diamonds to score (no price column)")
    sample.add_argument("--rows", type=int, default=300)
    sample.add_argument("--seed", type=int, default=11)
    sample.add_argument(
        "--shifted",
        action="store_true",
        help="from a drifted population: heavier stones, mostly Fair and Good cuts (diamonds-shifted.csv: seed 13)",
    )
    sample.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "build":
        from localdev.demo.model import build as build_models

        mlflow_dir, script_dir = build_models(args.out, force=args.force)
        print(f"MLflow model: {mlflow_dir}\nscoring-script deployment: {script_dir}")
        return 0
    from localdev.demo.data import scoring_frame

    args.out.parent.mkdir(parents=True, exist_ok=True)
    scoring_frame(args.rows, args.seed, shifted=args.shifted).to_csv(args.out, index=False)
    print(f"wrote {args.rows} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
