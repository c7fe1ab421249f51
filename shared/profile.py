"""`python -m shared.profile build TRAINING.csv --out reference.json`: the drift reference of a model.

Upload the file and name it in DRIFT_REFERENCE (or a route's `drift_reference`): every scored file is then
compared with it during its join (README: "Drift").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shared.drift.build import build_profile
from shared.drift.profile import profile_to_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.profile", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="profile a CSV (the model's training data) into a reference")
    build.add_argument("csv", type=Path, help="the training data, a CSV with a header")
    build.add_argument("--out", type=Path, required=True, help="where to write the profile (JSON)")
    build.add_argument(
        "--prediction-column", help="the label or prediction column: profiled as the prediction, not a feature"
    )
    build.add_argument("--bins", type=int, default=10, help="bins per numeric column, at quantiles (2-100)")
    build.add_argument("--top", type=int, default=20, help="categories kept per categorical column (1-1000)")
    build.add_argument("--categorical", action="append", default=[], help="treat this column as categorical")
    build.add_argument("--delimiter", default=",", help="the CSV's delimiter (default ,)")
    args = parser.parse_args(argv)
    if not 2 <= args.bins <= 100 or not 1 <= args.top <= 1000:
        parser.error("--bins must be 2-100 and --top 1-1000")
    if not args.csv.is_file():
        parser.error(f"no file {args.csv}")
    try:
        profile = build_profile(
            args.csv,
            prediction_column=args.prediction_column,
            bins=args.bins,
            top=args.top,
            categorical=frozenset(args.categorical),
            delimiter=args.delimiter,
            progress=lambda message: print(message, file=sys.stderr, flush=True),
        )
    except (ValueError, UnicodeDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps(profile_to_json(profile), indent=1) + "\n", encoding="utf-8")
    kinds = ", ".join(
        f"{name} ({'numeric' if hasattr(column, 'edges') else 'categorical'})"
        for name, column in profile.columns.items()
    )
    print(f"{args.out}: {profile.rows:,} rows; features {kinds}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
