"""Validate events against the published contract in docs/events/."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "events"


@cache
def validator(event_type: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{event_type}.schema.json").read_text())
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def assert_valid(event: dict[str, Any]) -> None:
    errors = sorted(validator(event["type"]).iter_errors(event), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
