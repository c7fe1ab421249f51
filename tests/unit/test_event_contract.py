"""The documented event contract matches what the code builds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.eventschemas import SCHEMAS, assert_valid

EXAMPLES = sorted((SCHEMAS / "examples").glob("*.json"))


def test_every_event_type_has_a_schema_and_an_example() -> None:
    schema_types = {p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json")}
    example_types = {p.stem for p in EXAMPLES}
    assert (
        schema_types
        == example_types
        == {
            "DropScore.JobSubmitted",
            "DropScore.JobCompleted",
            "DropScore.JobFailed",
            "DropScore.InputRejected",
        }
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_validate_against_their_schema(path: Path) -> None:
    assert_valid(json.loads(path.read_text()))


def test_examples_are_what_the_code_builds_today() -> None:
    script = SCHEMAS / "make_examples.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_query_string_in_a_url_breaks_the_schema() -> None:
    event = json.loads((SCHEMAS / "examples" / "DropScore.JobCompleted.json").read_text())
    event["data"]["output"]["url"] += "?sv=2024&sig=abc"
    with pytest.raises(AssertionError):
        assert_valid(event)
