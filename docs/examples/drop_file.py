"""Drop a CSV into the local stack's input container (what an upstream system does in Azure).

    .venv/bin/python docs/examples/drop_file.py my.csv [--name folder/my.csv] [--stack-dir .localdev]

Reads the Azurite connection string and container names from `<stack-dir>/stack.env`, written by
`python -m localdev up` (`make up`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from azure.storage.blob import BlobServiceClient, ContentSettings


def read_stack_env(stack_dir: Path) -> dict[str, str]:
    env_file = stack_dir / "stack.env"
    if not env_file.is_file():
        sys.exit(f"{env_file} not found: start the stack first (make up)")
    pairs = (line.partition("=") for line in env_file.read_text(encoding="utf-8").splitlines())
    return {key: value for key, sep, value in pairs if sep}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--name", help="blob name in the input container (default: the file name)")
    parser.add_argument("--stack-dir", type=Path, default=Path(".localdev"))
    args = parser.parse_args()

    env = read_stack_env(args.stack_dir)
    service = BlobServiceClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"])
    name = args.name or args.csv.name
    blob = service.get_blob_client(env["INPUT_CONTAINER"], name)
    with args.csv.open("rb") as data:
        blob.upload_blob(data, overwrite=True, content_settings=ContentSettings(content_type="text/csv"))
    print(f"uploaded {args.csv} to {env['INPUT_CONTAINER']}/{name}")
    print(f"predictions will land in {env['OUTPUT_CONTAINER']}/{name}.predictions.csv")
    print(f"events: .venv/bin/python -m localdev.eventgrid tail --log {env['EVENTS_LOG']} --follow")
    return 0


if __name__ == "__main__":
    sys.exit(main())
