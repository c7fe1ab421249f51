"""Shared by the toy apps: append one JSON line per observation to $RECORD_FILE for the tests to read."""

from __future__ import annotations

import json
import os
import time
from typing import Any


def record(function: str, **fields: Any) -> None:
    line = json.dumps({"fn": function, "at": time.time(), **fields}, default=str)
    with open(os.environ["RECORD_FILE"], "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
