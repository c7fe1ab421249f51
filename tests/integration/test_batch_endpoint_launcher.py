"""Starting the batch endpoint emulator: its secrets travel in the environment, never on a command line
(every user on the machine sees command lines in `ps`), and the CLI flag still works by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from localdev.azurite import ACCOUNT_KEY, Azurite
from localdev.batch_endpoint.__main__ import STORAGE_CONNECTION_STRING_ENV, build_parser, main
from localdev.demo.data import scoring_frame
from localdev.stack_procs import group_members
from tests.integration.batch_endpoint_support import TOKEN, demo_models, model_body, put_blob, running_emulator, unique

pytestmark = pytest.mark.integration


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def test_no_emulator_process_has_the_account_key_or_the_token_on_its_command_line(
    azurite: Azurite, tmp_path_factory: pytest.TempPathFactory
) -> None:
    mlflow_model, _ = demo_models(tmp_path_factory.getbasetemp())
    with running_emulator(azurite, tmp_path_factory.mktemp("argv"), {"diamonds": mlflow_model}) as emulator:
        name = unique("argv")
        put_blob(azurite, "incoming", f"{name}.csv", scoring_frame(10, seed=1).to_csv(index=False).encode())
        output = f"azureml://datastores/workspaceblobstore/paths/argv/{name}.csv"
        job = emulator.run(model_body(f"azureml://datastores/inputs/paths/{name}.csv", output))
        assert job["properties"]["status"] == "Completed"  # it reached storage: the connection string arrived
        pids = [emulator.service.pid, *group_members(emulator.service.pid)]
        assert len(pids) > 1, "the scoring workers should be running after a job"
        for pid in pids:
            seen = command_line(pid)
            assert ACCOUNT_KEY not in seen, f"the account key is in the command line of pid {pid}"
            assert "AccountKey" not in seen, f"a connection string is in the command line of pid {pid}"
            assert TOKEN not in seen, f"the token is in the command line of pid {pid}"
        assert "localdev.batch_endpoint" in command_line(emulator.service.pid)


def test_the_connection_string_comes_from_the_environment_or_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STORAGE_CONNECTION_STRING_ENV, "from-the-environment")
    assert build_parser().parse_args(["serve", "--port", "1"]).storage_connection_string == "from-the-environment"
    by_hand = build_parser().parse_args(["serve", "--port", "1", "--storage-connection-string", "from-the-flag"])
    assert by_hand.storage_connection_string == "from-the-flag"


def test_serve_without_a_connection_string_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(STORAGE_CONNECTION_STRING_ENV, raising=False)
    assert main(["serve", "--port", "1", "--token", "t", "--datastore", "a=b"]) == 2
    assert STORAGE_CONNECTION_STRING_ENV in capsys.readouterr().err
