"""`stop_part` / `start_part`: one part of a running stack taken down and brought back where its clients expect it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from localdev.procs import http_answers
from localdev.stack import (
    StackError,
    StackOptions,
    down,
    function_key,
    load_stack,
    start_part,
    stop_part,
    up,
)
from localdev.stack_procs import is_running, processes_mentioning
from tests.e2e.support import StackClient, demo_rows

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[StackOptions]:
    """A stack of its own: these tests stop its parts, which must never disturb the session's stack."""
    directory = Path(tmp_path_factory.mktemp("parts"))
    options = StackOptions(directory=directory, models_dir=models_dir, job_seconds=0.5)
    up(options, on_progress=lambda _text: None)
    try:
        yield options
    finally:
        down(directory)
        assert processes_mentioning(str(directory)) == []


def _jobs_status(client: StackClient) -> int:
    response = requests.get(
        f"{client.env['FUNCTIONS_URL']}/api/jobs",
        headers={"x-functions-key": function_key(client.paths)},
        timeout=10,
    )
    return response.status_code


def test_a_crashed_functions_host_comes_back_on_its_port_with_its_keys(own_stack: StackOptions) -> None:
    client = StackClient.load(own_stack.directory)
    before = stop_part(own_stack.directory, "functions-host", crash=True)

    assert not is_running(before.pid, before.started)
    assert not http_answers(f"{client.env['FUNCTIONS_URL']}/admin/host/status")

    after = start_part(own_stack, "functions-host")

    assert after.pid != before.pid
    assert after.url == before.url == client.env["FUNCTIONS_URL"]
    assert load_stack(own_stack.directory).part("functions-host").pid == after.pid  # recorded for `down`
    assert _jobs_status(client) == 200  # the same function key still opens the API


def test_azurite_comes_back_on_its_ports_with_its_data(own_stack: StackOptions) -> None:
    client = StackClient.load(own_stack.directory)
    data = demo_rows(3)
    client.upload("kept/across-restart.txt", data)  # .txt: the app rejects it, the blob stays somewhere

    before = stop_part(own_stack.directory, "azurite")
    assert not is_running(before.pid, before.started)
    after = start_part(own_stack, "azurite")

    assert after.url == before.url
    containers = [client.env[key] for key in ("INPUT_CONTAINER", "REJECTED_CONTAINER")]
    assert any(client.read_blob(container, "kept/across-restart.txt") == data for container in containers)


def test_the_event_grid_topic_comes_back_on_its_endpoint(own_stack: StackOptions) -> None:
    client = StackClient.load(own_stack.directory)
    health = client.env["EVENTGRID_TOPIC_ENDPOINT"].replace("/api/events", "/_emulator/health")

    stop_part(own_stack.directory, "eventgrid")
    assert not http_answers(health)
    start_part(own_stack, "eventgrid")

    assert http_answers(health)
    assert load_stack(own_stack.directory).part("eventgrid").url == client.env["EVENTGRID_TOPIC_ENDPOINT"]


def test_only_a_stopped_restartable_part_can_be_started(own_stack: StackOptions) -> None:
    with pytest.raises(StackError, match="still running"):
        start_part(own_stack, "eventgrid")
    with pytest.raises(StackError, match="cannot be stopped and started on its own"):
        stop_part(own_stack.directory, "batch-endpoint")
