"""`python -m localdev up | status | down` as a user runs them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from localdev.stack import PART_ORDER, read_parts
from localdev.stack_procs import group_members, is_running, processes_mentioning
from tests.e2e.support import StackClient, demo_rows, run_cli, unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_status_lists_every_part_and_the_jobs_by_state(stack: StackClient) -> None:
    name = unique_name("status")
    stack.upload(name, demo_rows(3))
    stack.wait_event("DropScore.JobCompleted", name)

    result = run_cli("status", "--dir", str(stack.paths.root))

    assert result.returncode == 0, result.stderr
    for part in PART_ORDER:
        assert re.search(rf"^\s+{part}\s+running\s+http://127\.0\.0\.1:\d+", result.stdout, re.M), result.stdout
    counts = re.search(r"^jobs: (\d+) \((.*)\)$", result.stdout, re.M)
    assert counts, result.stdout
    completed = re.search(r"Completed=(\d+)", counts.group(2))
    assert completed
    assert int(completed.group(1)) >= 1
    assert int(counts.group(1)) >= int(completed.group(1))
    # Nothing secret on the terminal.
    for key in ("AZURE_STORAGE_CONNECTION_STRING", "BATCH_ENDPOINT_TOKEN", "EVENTGRID_TOPIC_KEY"):
        assert stack.env[key] not in result.stdout


def _secret_values(doc: object) -> list[str]:
    """Every string in the dev host's keys file (master, function and system keys)."""
    if isinstance(doc, dict):
        return [value for item in doc.values() for value in _secret_values(item)]
    return [doc] if isinstance(doc, str) else []


def test_no_process_of_the_stack_has_a_key_token_or_connection_string_on_its_command_line(
    stack: StackClient,
) -> None:
    name = unique_name("argv")
    stack.upload(name, demo_rows(2))
    stack.wait_event("DropScore.JobCompleted", name)  # every part has worked, scoring workers included
    connection = dict(part.split("=", 1) for part in stack.env["AZURE_STORAGE_CONNECTION_STRING"].split(";") if part)
    secrets = {
        "the storage account key": connection["AccountKey"],
        "the batch endpoint token": stack.env["BATCH_ENDPOINT_TOKEN"],
        "the Event Grid topic key": stack.env["EVENTGRID_TOPIC_KEY"],
        **{
            f"dev host key #{n}": key
            for n, key in enumerate(_secret_values(json.loads(stack.paths.keys_file.read_text())))
        },
    }
    assert len(secrets) >= 7  # master, function, and both system keys among them
    parts = read_parts(stack.paths)
    pids = {pid for part in parts for pid in (part.pid, *group_members(part.pid))}
    assert len(pids) > len(PART_ORDER)  # the parts and their children (scoring workers, node's)
    for pid in sorted(pids):
        try:
            command_line = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue  # ended between the listing and the read
        assert "AccountKey=" not in command_line, f"a connection string is in the command line of pid {pid}"
        for what, secret in secrets.items():
            assert secret not in command_line, f"{what} is in the command line of pid {pid}"


def test_up_refuses_a_second_stack_in_the_same_dir(stack: StackClient) -> None:
    result = run_cli("up", "--dir", str(stack.paths.root))

    assert result.returncode != 0
    assert "already running" in result.stderr
    assert "localdev down" in result.stderr
    # ... and leaves the running one alone.
    assert "running" in run_cli("status", "--dir", str(stack.paths.root)).stdout


def test_a_part_that_fails_to_start_is_named_and_the_others_are_stopped(tmp_path: Path) -> None:
    broken_model = tmp_path / "not-a-model"
    broken_model.mkdir()
    directory = tmp_path / "stack"

    result = run_cli("up", "--dir", str(directory), "--model-dir", str(broken_model))

    assert result.returncode != 0
    assert "batch-endpoint failed to start" in result.stderr
    assert str(directory / "logs" / "batch-endpoint.log") in result.stderr
    assert "neither an MLmodel file nor score.py" in result.stderr  # the log tail says why
    assert processes_mentioning(str(directory)) == []  # Azurite (started first) is gone too
    assert not (directory / "stack.json").exists()


def test_up_then_down_leaves_no_process_behind(tmp_path: Path, models_dir: Path) -> None:
    directory = tmp_path / "stack"
    up = run_cli("up", "--dir", str(directory), "--model-dir", str(models_dir / "diamonds-mlflow"))
    assert up.returncode == 0, up.stderr
    env_text = (directory / "stack.env").read_text()
    assert "stack.env" in up.stdout  # `up` says where the settings are, never the secrets themselves
    assert "AccountKey" not in up.stdout
    for key in ("AZURE_STORAGE_CONNECTION_STRING", "FUNCTIONS_URL", "EVENTS_LOG", "JOBS_TABLE", "BATCH_ENDPOINT_URI"):
        assert f"\n{key}=" in f"\n{env_text}"
    parts = json.loads((directory / "stack.json").read_text())["parts"]
    assert [p["name"] for p in parts] == list(PART_ORDER)
    assert all(is_running(p["pid"], p["started"]) for p in parts)

    status = run_cli("status", "--dir", str(directory))
    assert "jobs: 0 (none yet)" in status.stdout, status.stdout

    down = run_cli("down", "--dir", str(directory))

    assert down.returncode == 0, down.stderr
    for part in PART_ORDER:
        assert f"{part}: stopped" in down.stdout
    assert not any(is_running(p["pid"], p["started"]) for p in parts)
    assert not any(group_members(p["pid"]) for p in parts)  # scoring workers, node children
    assert processes_mentioning(str(directory)) == []
    assert not (directory / "stack.json").exists()
    assert "no stack recorded" in run_cli("status", "--dir", str(directory)).stdout
