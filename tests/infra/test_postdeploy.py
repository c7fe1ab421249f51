"""infra/hooks/postdeploy.py (with its sibling amlevents.py): the commands it builds, that the blob extension key
never reaches a command line, and that the run events subscription is created (after the function exists) exactly
when AML_RUN_EVENTS is on."""

from __future__ import annotations

import functools
import importlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.infra.bicep import INFRA, parse

KEY = "s3cr3t-blobs-extension-key=="
OUTPUTS = {
    "AZURE_RESOURCE_GROUP": "rg-dropscore-dev",
    "AZURE_FUNCTION_APP_NAME": "func-dropscore-abc",
    "AZURE_FUNCTION_APP_HOSTNAME": "func-dropscore-abc.azurewebsites.net",
    "BLOB_TRIGGER_FUNCTION_NAME": "on_input_blob",
    "EVENTGRID_SYSTEM_TOPIC_NAME": "evgst-dropscore-abc",
    "BLOB_EVENT_SUBSCRIPTION_NAME": "dropscore-incoming-csv",
    "INPUT_CONTAINER_NAME": "incoming",
    "AZURE_STORAGE_ACCOUNT_ID": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st",
    "DEAD_LETTER_CONTAINER_NAME": "eventgrid-deadletter",
    "AML_RUN_EVENTS_SETTING": "on",
    "AML_SYSTEM_TOPIC_NAME": "evgst-dropscore-aml-abc",
    "AML_SYSTEM_TOPIC_RESOURCE_GROUP": "rg-ml",
    "AML_EVENT_SUBSCRIPTION_NAME": "dropscore-aml-run-events",
    "AML_EVENTS_FUNCTION_NAME": "aml_run_events",
    "AZURE_FUNCTION_APP_ID": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/func-dropscore-abc",
}
OFF = {**OUTPUTS, "AML_RUN_EVENTS_SETTING": "off", "AML_SYSTEM_TOPIC_NAME": ""}


def load_hook_modules() -> tuple[ModuleType, ModuleType]:
    """postdeploy and its sibling amlevents, imported as `python infra/hooks/postdeploy.py` runs them: with
    infra/hooks on sys.path (postdeploy imports amlevents and hookcli by name), only for the import."""
    hooks = str(INFRA / "hooks")
    sys.path.insert(0, hooks)
    try:
        return importlib.import_module("postdeploy"), importlib.import_module("amlevents")
    finally:
        sys.path.remove(hooks)


hook, aml = load_hook_modules()


class FakeCli:
    """Answers az calls by their verb; records every argv and what the parameters file held at call time."""

    def __init__(
        self,
        *,
        keys: Sequence[str] = (KEY,),
        deploy_returncode: int = 0,
        deploy_stderr: str = "",
        functions: Sequence[str] = ("func-dropscore-abc/aml_run_events",),
        outputs: dict[str, str] | None = None,
    ) -> None:
        self.keys = list(keys)
        self.deploy_returncode = deploy_returncode
        self.deploy_stderr = deploy_stderr
        self.functions = list(functions)  # answers to `functionapp function show`; "" = not listed (yet)
        self.outputs = OUTPUTS if outputs is None else outputs
        self.calls: list[list[str]] = []
        self.parameters_seen: list[tuple[str, dict[str, object], int]] = []

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append(argv)
        if argv[1:4] == ["functionapp", "keys", "list"]:
            return subprocess.CompletedProcess(argv, 0, self.keys.pop(0) + "\n", "")
        if argv[1:4] == ["deployment", "group", "create"]:
            path = argv[argv.index("--parameters") + 1].removeprefix("@")
            mode = stat.S_IMODE(os.stat(path).st_mode)
            self.parameters_seen.append((path, json.loads(Path(path).read_text()), mode))
            return subprocess.CompletedProcess(argv, self.deploy_returncode, "", self.deploy_stderr)
        if argv[1:4] == ["functionapp", "function", "show"]:
            name = self.functions.pop(0)
            if not name:
                return subprocess.CompletedProcess(argv, 3, "", "ERROR: (NotFound) Error retrieving function.")
            return subprocess.CompletedProcess(argv, 0, name + "\n", "")
        if argv[1:4] == ["deployment", "sub", "show"]:
            outputs = {name: {"type": "String", "value": value} for name, value in self.outputs.items()}
            return subprocess.CompletedProcess(argv, 0, json.dumps(outputs), "")
        raise AssertionError(f"unexpected command {argv}")


def deployment() -> Any:
    """The hook's Deployment (its class is loaded from a file, so no static type)."""
    return hook.deployment_from_values(OUTPUTS)


def aml_events() -> Any:
    return aml.aml_events_from_values(OUTPUTS)


def test_key_command_reads_only_the_blobs_extension_key() -> None:
    assert hook.key_command(az="az", deployment=deployment()) == [
        "az", "functionapp", "keys", "list",
        "--resource-group", "rg-dropscore-dev",
        "--name", "func-dropscore-abc",
        "--query", "systemKeys.blobs_extension",
        "--output", "tsv",
    ]  # fmt: skip


def test_deploy_command_passes_parameters_by_file_and_prints_nothing() -> None:
    command = hook.deploy_command(
        az="az",
        deployment=deployment(),
        template=Path("infra/blob-subscription.bicep"),
        parameters_file=Path("/tmp/p.json"),
    )
    assert command[:4] == ["az", "deployment", "group", "create"]
    assert command[command.index("--resource-group") + 1] == "rg-dropscore-dev"
    assert command[command.index("--template-file") + 1] == "infra/blob-subscription.bicep"
    assert command[command.index("--parameters") + 1] == "@/tmp/p.json"
    assert command[command.index("--output") + 1] == "none"


def test_parameters_match_the_subscription_template() -> None:
    document = hook.subscription_parameters(deployment=deployment(), blob_extension_key=KEY)
    parameters = {name: entry["value"] for name, entry in document["parameters"].items()}
    declared = parse("blob-subscription.bicep")["parameters"]
    required = {name for name, p in declared.items() if p.get("default") is None}
    assert required <= set(parameters) <= set(declared)
    assert parameters["blobExtensionKey"] == KEY
    assert parameters["functionAppHostName"] == "func-dropscore-abc.azurewebsites.net"
    assert parameters["inputContainerName"] == "incoming"


def test_the_outputs_the_hook_reads_are_outputs_of_main_bicep() -> None:
    outputs = set(parse("main.bicep")["outputs"])
    assert set(hook.OUTPUT_NAMES.values()) <= outputs
    assert set(aml.AML_OUTPUT_NAMES.values()) <= outputs
    assert set(OUTPUTS) == set(hook.OUTPUT_NAMES.values()) | set(aml.AML_OUTPUT_NAMES.values())


def test_missing_outputs_are_named_together() -> None:
    values = {k: v for k, v in OUTPUTS.items() if k not in {"AZURE_RESOURCE_GROUP", "INPUT_CONTAINER_NAME"}}
    with pytest.raises(hook.HookError, match="AZURE_RESOURCE_GROUP, INPUT_CONTAINER_NAME"):
        hook.deployment_from_values(values)


def test_create_subscription_keeps_the_key_off_argv_in_a_private_file_it_deletes() -> None:
    cli = FakeCli()
    hook.create_subscription(az="az", deployment=deployment(), blob_extension_key=KEY, runner=cli)
    assert all(KEY not in arg for call in cli.calls for arg in call)
    [(path, document, mode)] = cli.parameters_seen
    assert document["parameters"]["blobExtensionKey"]["value"] == KEY
    if os.name == "posix":
        assert mode == 0o600
    assert not Path(path).exists()


def test_a_failed_deployment_still_deletes_the_file_and_redacts_the_key() -> None:
    cli = FakeCli(deploy_returncode=1, deploy_stderr=f"ERROR: validation of https://x/?code={KEY} failed")
    with pytest.raises(hook.HookError) as raised:
        hook.create_subscription(az="az", deployment=deployment(), blob_extension_key=KEY, runner=cli)
    assert KEY not in str(raised.value)
    assert "***" in str(raised.value)
    assert "validates the webhook" in str(raised.value)
    assert not Path(cli.parameters_seen[0][0]).exists()


def test_the_key_is_awaited_while_the_host_creates_it() -> None:
    cli, pauses = FakeCli(keys=["", "", KEY]), []
    key = hook.read_blob_extension_key(az="az", deployment=deployment(), runner=cli, sleep=pauses.append)
    assert key == KEY
    assert len(pauses) == 2


def test_no_key_after_every_attempt_says_what_to_check() -> None:
    cli = FakeCli(keys=["", ""])
    with pytest.raises(hook.HookError, match=r"no blobs_extension system key after 2 attempts.*on_input_blob"):
        hook.read_blob_extension_key(az="az", deployment=deployment(), runner=cli, sleep=lambda _: None, attempts=2)


def test_a_failing_key_listing_is_reported_with_the_login_hint() -> None:
    def runner(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(argv), 1, "", "AuthorizationFailed")

    with pytest.raises(hook.HookError, match=r"AuthorizationFailed.*az login"):
        hook.read_blob_extension_key(az="az", deployment=deployment(), runner=runner, sleep=lambda _: None)


def test_main_from_a_cli_deployment_end_to_end(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(hook.shutil, "which", lambda name: f"/usr/bin/{name}")
    for name in OUTPUTS:
        monkeypatch.delenv(name, raising=False)
    cli = FakeCli()
    assert hook.main(["--deployment-name", "dropscore-dev"], runner=cli) == 0
    verbs = [call[1:4] for call in cli.calls]
    assert verbs == [
        ["deployment", "sub", "show"],
        ["functionapp", "keys", "list"],
        ["deployment", "group", "create"],
        ["functionapp", "function", "show"],
        ["deployment", "group", "create"],
    ]
    assert cli.calls[0][cli.calls[0].index("--name") + 1] == "dropscore-dev"
    printed = capsys.readouterr()
    assert KEY not in printed.out + printed.err
    assert "dropscore-incoming-csv" in printed.out


def test_main_under_azd_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hook.shutil, "which", lambda name: f"/usr/bin/{name}")
    for name, value in OUTPUTS.items():
        monkeypatch.setenv(name, value)
    cli = FakeCli()
    assert hook.main([], runner=cli) == 0
    assert [call[1:4] for call in cli.calls][:2] == [["functionapp", "keys", "list"], ["deployment", "group", "create"]]


def test_main_without_az_explains_and_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(hook.shutil, "which", lambda name: None)
    for name, value in OUTPUTS.items():
        monkeypatch.setenv(name, value)
    assert hook.main([], runner=FakeCli()) == 1
    assert "`az` was not found on PATH" in capsys.readouterr().err


# ---- The aml run events subscription --------------------------------------------------------------------


def test_run_events_off_means_no_run_events_subscription() -> None:
    assert aml.aml_events_from_values(OFF) is None
    assert aml.aml_events_from_values({**OFF, "AML_RUN_EVENTS_SETTING": "OFF"}) is None


def test_run_events_on_needs_every_aml_output_named_together() -> None:
    values = {k: v for k, v in OUTPUTS.items() if k not in {"AML_SYSTEM_TOPIC_NAME", "AML_EVENTS_FUNCTION_NAME"}}
    with pytest.raises(hook.HookError, match="AML_SYSTEM_TOPIC_NAME, AML_EVENTS_FUNCTION_NAME"):
        aml.aml_events_from_values(values)


@pytest.mark.parametrize("setting", ["", "true", "yes"])
def test_an_unknown_run_events_setting_is_refused(setting: str) -> None:
    with pytest.raises(hook.HookError, match="expected 'on' or 'off'"):
        aml.aml_events_from_values({**OUTPUTS, "AML_RUN_EVENTS_SETTING": setting})


def test_aml_parameters_match_the_run_events_template() -> None:
    document = aml.aml_subscription_parameters(events=aml_events())
    parameters = {name: entry["value"] for name, entry in document["parameters"].items()}
    declared = parse("aml-run-events-subscription.bicep")["parameters"]
    required = {name for name, p in declared.items() if p.get("default") is None}
    assert required <= set(parameters) <= set(declared)
    assert parameters["functionName"] == "aml_run_events" == declared["functionName"]["default"]
    assert parameters["functionAppId"].endswith("/providers/Microsoft.Web/sites/func-dropscore-abc")
    assert parameters["systemTopicName"] == "evgst-dropscore-aml-abc"
    assert parameters["deadLetterContainerName"] == "eventgrid-deadletter"


def test_aml_deploy_command_targets_the_workspace_resource_group() -> None:
    command = aml.aml_deploy_command(
        az="az", events=aml_events(), template=aml.AML_TEMPLATE, parameters_file=Path("/tmp/p.json")
    )
    assert command[:4] == ["az", "deployment", "group", "create"]
    assert command[command.index("--resource-group") + 1] == "rg-ml"
    assert command[command.index("--template-file") + 1].endswith("infra/aml-run-events-subscription.bicep")
    assert Path(command[command.index("--template-file") + 1]).exists()
    assert command[command.index("--parameters") + 1] == "@/tmp/p.json"
    assert command[command.index("--output") + 1] == "none"


def test_function_command_asks_arm_for_the_deployed_function() -> None:
    assert aml.function_command(az="az", deployment=deployment(), function_name="aml_run_events") == [
        "az", "functionapp", "function", "show",
        "--resource-group", "rg-dropscore-dev",
        "--name", "func-dropscore-abc",
        "--function-name", "aml_run_events",
        "--query", "name",
        "--output", "tsv",
    ]  # fmt: skip


def test_the_function_is_awaited_while_the_host_indexes_it() -> None:
    cli, pauses = FakeCli(functions=["", "", "func-dropscore-abc/aml_run_events"]), []
    aml.wait_for_function(
        az="az", deployment=deployment(), function_name="aml_run_events", runner=cli, sleep=pauses.append
    )
    assert len(pauses) == 2


def test_no_function_after_every_attempt_says_what_to_check() -> None:
    cli = FakeCli(functions=["", ""])
    with pytest.raises(hook.HookError, match=r"no function aml_run_events after 2 attempts.*NotFound.*function list"):
        aml.wait_for_function(
            az="az",
            deployment=deployment(),
            function_name="aml_run_events",
            runner=cli,
            sleep=lambda _: None,
            attempts=2,
        )


def test_create_aml_subscription_uses_a_private_file_it_deletes() -> None:
    cli = FakeCli()
    aml.create_aml_subscription(az="az", events=aml_events(), runner=cli)
    [(path, document, mode)] = cli.parameters_seen
    assert document["parameters"]["subscriptionName"]["value"] == "dropscore-aml-run-events"
    if os.name == "posix":
        assert mode == 0o600
    assert not Path(path).exists()


def test_a_failed_aml_deployment_says_what_it_needs() -> None:
    cli = FakeCli(deploy_returncode=1, deploy_stderr="ERROR: AuthorizationFailed")
    with pytest.raises(hook.HookError, match=r"AuthorizationFailed.*workspaceSystemTopicName.*Contributor or Owner"):
        aml.create_aml_subscription(az="az", events=aml_events(), runner=cli)
    assert not Path(cli.parameters_seen[0][0]).exists()


def test_main_with_run_events_on_subscribes_both_after_the_function_exists(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(hook.shutil, "which", lambda name: f"/usr/bin/{name}")
    for name, value in OUTPUTS.items():
        monkeypatch.setenv(name, value)
    cli = FakeCli()
    assert hook.main([], runner=cli) == 0
    assert [call[1:4] for call in cli.calls] == [
        ["functionapp", "keys", "list"],
        ["deployment", "group", "create"],
        ["functionapp", "function", "show"],
        ["deployment", "group", "create"],
    ]
    blob, run_events = cli.calls[1], cli.calls[3]
    assert blob[blob.index("--resource-group") + 1] == "rg-dropscore-dev"
    assert run_events[run_events.index("--resource-group") + 1] == "rg-ml"
    assert run_events[run_events.index("--template-file") + 1] == str(aml.AML_TEMPLATE)
    assert "dropscore-aml-run-events" in capsys.readouterr().out


def test_main_with_run_events_off_creates_only_the_blob_subscription(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(hook.shutil, "which", lambda name: f"/usr/bin/{name}")
    for name in OUTPUTS:
        monkeypatch.delenv(name, raising=False)
    cli = FakeCli(outputs=OFF)
    assert hook.main(["--deployment-name", "dropscore-dev"], runner=cli) == 0
    assert [call[1:4] for call in cli.calls] == [
        ["deployment", "sub", "show"],
        ["functionapp", "keys", "list"],
        ["deployment", "group", "create"],
    ]
    assert "AML_RUN_EVENTS is off" in capsys.readouterr().out


def test_main_fails_when_the_function_never_appears(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(hook.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(hook, "wait_for_function", functools.partial(aml.wait_for_function, sleep=lambda _: None))
    for name, value in OUTPUTS.items():
        monkeypatch.setenv(name, value)
    cli = FakeCli(functions=[""] * aml.FUNCTION_ATTEMPTS)
    assert hook.main([], runner=cli) == 1
    assert "no function aml_run_events" in capsys.readouterr().err
    assert len([c for c in cli.calls if c[1:4] == ["deployment", "group", "create"]]) == 1  # the blob one only
