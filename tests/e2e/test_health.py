"""The health check against the running local stack: every check passes, over HTTP (admin key) and
from the doctor command; broken variants fail the one check they break, with its documented fix."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from localdev.procs import REPO_ROOT
from localdev.stack import master_key
from shared import doctor
from tests.e2e.support import StackClient

pytestmark = pytest.mark.e2e
# Uploads are found by container scan locally; the run events subscription is the Event Grid emulator's, which
# has no ARM id for the check to read (AML_EVENT_SUBSCRIPTION_ID is not set).
NOT_APPLICABLE_HERE = {"blob event subscription", "aml run events subscription"}


def test_every_check_passes_over_http_with_the_admin_key(stack: StackClient) -> None:
    url = f"{stack.env['FUNCTIONS_URL']}/api/health"
    assert requests.get(url, timeout=30).status_code == 401
    keys = json.loads(stack.paths.keys_file.read_text())
    function_key = next(iter(keys["functionKeys"].values()))
    assert requests.get(url, headers={"x-functions-key": function_key}, timeout=30).status_code == 401
    response = requests.get(url, headers={"x-functions-key": master_key(stack.paths)}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["healthy"] is True
    statuses = {check["name"]: check["status"] for check in body["checks"]}
    assert {name for name, status in statuses.items() if status != "pass"} == NOT_APPLICABLE_HERE
    assert statuses["azure ml deployment"] == "pass"  # the emulator answers the ARM reads as Azure does
    assert statuses["model input columns"] == "pass"  # REQUIRED_COLUMNS=auto: the model read through ARM
    assert "secret" not in response.text.lower()
    # the topic was shown a batch it had to reject: nothing but our own event types was ever accepted
    assert all(event["type"].startswith("DropScore.") for event in stack.events())


def test_the_doctor_prints_every_check_passing(stack: StackClient) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shared.doctor", "--settings", str(stack.paths.local_settings)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "healthy"
    assert sum(line.startswith("ok ") for line in lines) == 17
    model = "model diamonds:1 requires carat, cut, color, clarity, depth, table, x, y, z"
    assert any(line.startswith("ok ") and line.endswith(model) for line in lines), done.stdout
    skipped = [line.split()[1:4] for line in lines if line.startswith("skip")]
    assert skipped == [["blob", "event", "subscription"], ["aml", "run", "events"]]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


AML_READS = ["azure ml endpoint", "azure ml deployment", "azure ml output datastore", "model input columns"]


@pytest.mark.parametrize(
    ("change", "failing", "fix"),
    [
        ({"INPUT_CONTAINER": "no-such-container"}, ["container no-such-container"], "correct INPUT_CONTAINER"),
        # one token for the scoring URI and (locally) the ARM reads: each says what role is missing
        ({"AML_LOCAL_TOKEN": "wrong-token"}, AML_READS, "'dropscore batch invoker' on the Azure ML workspace"),
        # the model is read through the deployment (REQUIRED_COLUMNS=auto), so both fail and say so
        (
            {"BATCH_DEPLOYMENT": "no-such-deployment"},
            ["azure ml deployment", "model input columns"],
            "check BATCH_ENDPOINT_NAME and BATCH_DEPLOYMENT",
        ),
        ({"AML_OUTPUT_DATASTORE": "nostore"}, ["azure ml output datastore"], "register datastore 'nostore'"),
        ({"EVENTGRID_TOPIC_ENDPOINT": "http://127.0.0.1:{port}/api/events"}, ["event grid topic"], "did not answer"),
        ({"EVENTGRID_TOPIC_KEY": "wrong-key"}, ["event grid topic"], "EventGrid Data Sender"),
    ],
)
def test_a_broken_setting_fails_its_check_with_the_fix(
    stack: StackClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str],
    failing: list[str],
    fix: str,
) -> None:
    document = json.loads(stack.paths.local_settings.read_text())
    port = _free_port()
    document["Values"].update({key: value.format(port=port) for key, value in change.items()})
    broken = tmp_path / "local.settings.json"
    broken.write_text(json.dumps(document))
    assert doctor.main(["--settings", str(broken)]) == 1
    out = capsys.readouterr().out
    failed = [line.split("  ")[1].strip() for line in out.splitlines() if line.startswith("FAIL")]
    assert failed == failing, out
    assert fix in out
