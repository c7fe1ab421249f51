"""`python -m localdev.functions_host --app-dir DIR --port PORT`: see docs/functions-dev-host.md."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import uvicorn

from localdev.functions_host.host import Host
from localdev.functions_host.indexing import IndexingError, index_app
from localdev.functions_host.keys import load_or_create_keys
from localdev.functions_host.server import build_app
from localdev.functions_host.settings import (
    SettingsError,
    apply_settings,
    default_host_id,
    read_env_file,
    read_host_json,
    read_local_settings,
)

log = logging.getLogger("functions_host")
DEFAULT_KEYS_NAME = Path(".localdev") / "functions-host-keys.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m localdev.functions_host", description=__doc__)
    parser.add_argument("--app-dir", type=Path, required=True, help="folder with function_app.py and host.json")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--settings", type=Path, help="local.settings.json (default: APP_DIR/local.settings.json)")
    parser.add_argument(
        "--keys", type=Path, help=f"keys JSON, created if missing (default: APP_DIR/{DEFAULT_KEYS_NAME})"
    )
    parser.add_argument("--env-file", type=Path, help="KEY=VALUE file applied over the environment")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--blob-scan-interval", type=float, default=10.0, help="seconds between container scans")
    parser.add_argument(
        "--blob-scan-page-size", type=int, help="blobs listed per scan (default: 10,000 shared by the containers)"
    )
    parser.add_argument("--host-id", help="host id for receipts and timer status (default: machine name)")
    parser.add_argument("--shutdown-timeout", type=float, default=30.0, help="seconds to let invocations finish")
    parser.add_argument("--no-auth", action="store_true", help="skip key checks, like Core Tools does locally")
    return parser.parse_args(argv)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s [%(name)s] %(message)s",
        stream=sys.stdout,
        force=True,
    )
    # The storage SDK logs every request (with headers) at INFO: too noisy, and no place for secrets.
    logging.getLogger("azure").setLevel(logging.WARNING)


def load_settings(args: argparse.Namespace, app_dir: Path) -> None:
    env_values = read_env_file(args.env_file) if args.env_file else {}
    settings_path = args.settings or app_dir / "local.settings.json"
    if not settings_path.is_file():
        log.warning("No %s: using the environment only", settings_path)
    apply_settings(read_local_settings(settings_path), env_values)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    app_dir = args.app_dir.resolve()
    # Keep already-imported packages importable after the chdir below (sys.path may hold "").
    sys.path[:] = [str(Path(p).resolve()) if p in {"", "."} else p for p in sys.path]
    try:
        load_settings(args, app_dir)
        config = read_host_json(app_dir / "host.json")
        os.chdir(app_dir)
        specs = index_app(app_dir, config.functions)
    except (SettingsError, IndexingError, ValueError, OSError) as exc:
        log.error("Host cannot start: %s", exc)
        return 1
    keys_path = (args.keys or app_dir / DEFAULT_KEYS_NAME).resolve()
    keys, keys_file = load_or_create_keys(keys_path)
    log.info("%s keys file: %s", keys_file.value, keys_path)
    host = Host(
        app_dir=app_dir,
        specs=specs,
        config=config,
        host_id=args.host_id or default_host_id(),
        keys=keys,
        blob_scan_interval=args.blob_scan_interval,
        blob_scan_page_size=args.blob_scan_page_size,
        shutdown_timeout=args.shutdown_timeout,
        auth_enabled=not args.no_auth,
    )
    host.log_functions()
    log.info("Listening on http://127.0.0.1:%d (routePrefix=%r)", args.port, config.route_prefix)
    uvicorn.run(
        build_app(host),
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(args.shutdown_timeout),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
