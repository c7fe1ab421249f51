"""The health check's verdicts and the fix each failure names, against the fakes (no I/O)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared import doctor
from shared.errors import (
    ModelSchemaUnavailable,
    ResourceMissing,
    ScoringAuthError,
    ScoringUnavailable,
    StorageAuthError,
    TopicAuthError,
    TransientError,
)
from shared.httpapi import health_reply
from shared.models import Check, CheckStatus, HealthReport
from shared.usecases.deps import Deps
from shared.usecases.health import check_all
from shared.usecases.intake import accept_blob
from tests.fakes import World, make_world

WORKSPACE = "/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w"
SUBSCRIPTION = "/subscriptions/s/resourceGroups/r/providers/Microsoft.EventGrid/systemTopics/t/eventSubscriptions/b"
RUN_EVENTS = "/subscriptions/s/resourceGroups/r/providers/Microsoft.EventGrid/systemTopics/w/eventSubscriptions/a"


def azure_world(**overrides: str) -> World:
    world = make_world(
        AML_WORKSPACE_ID=WORKSPACE,
        BATCH_DEPLOYMENT="blue",
        BLOB_EVENT_SUBSCRIPTION_ID=SUBSCRIPTION,
        **{"REQUIRED_COLUMNS": "auto", "AML_RUN_EVENTS": "on", "AML_EVENT_SUBSCRIPTION_ID": RUN_EVENTS, **overrides},
    )
    world.resources.existing.update({SUBSCRIPTION, RUN_EVENTS})
    return world


def checks(world: World) -> dict[str, Check]:
    report = check_all(lambda: world.deps)
    return {check.name: check for check in report.checks}


def test_a_healthy_deployment_passes_every_check() -> None:
    world = azure_world()
    report = check_all(lambda: world.deps)
    assert report.healthy
    assert {c.name: c.status for c in report.checks if c.status is not CheckStatus.PASS} == {}
    assert [c.name for c in report.checks] == [
        "settings",
        "container incoming",
        "container predictions",
        "container processed",
        "container failed",
        "container rejected",
        "container aml-outputs",
        "table jobs",
        "table activejobs",
        "table joblist",
        "queue job-completions",
        "azure ml token",
        "azure ml endpoint",
        "azure ml deployment",
        "azure ml output datastore",
        "model input columns",
        "event grid topic",
        "blob event subscription",
        "aml run events subscription",
    ]
    assert world.scoring.probed == ["token", "endpoint", "deployment dropscore-ep/blue", "datastore dropscore_outputs"]


def test_invalid_settings_fail_one_check_that_lists_every_problem() -> None:
    def load() -> Deps:
        return make_world(POLL_CONCURRENCY="0", CSV_DELIMITER="ab").deps

    report = check_all(load)
    (check,) = report.checks
    assert (check.name, check.status, report.healthy) == ("settings", CheckStatus.FAIL, False)
    assert "POLL_CONCURRENCY" in check.fix
    assert "CSV_DELIMITER" in check.fix


@pytest.mark.parametrize(
    ("break_it", "name", "fix_part"),
    [
        (
            lambda w: w.blobs.probe_errors.update(rejected=ResourceMissing("no")),
            "container rejected",
            "REJECTED_CONTAINER",
        ),
        (
            lambda w: w.blobs.probe_errors.update(incoming=StorageAuthError("403")),
            "container incoming",
            "'Storage Blob Data Contributor' on container 'incoming'",
        ),
        (lambda w: w.store.probe_errors.update(jobs=ResourceMissing("no")), "table jobs", "create the table 'jobs'"),
        (lambda w: setattr(w.queue, "probe_error", TransientError("down")), "queue job-completions", "reachable"),
        (
            lambda w: w.scoring.probe_errors.update(token=ScoringUnavailable("no token", ambiguous=False)),
            "azure ml token",
            "AZURE_CLIENT_ID",
        ),
        (
            lambda w: w.scoring.probe_errors.update(endpoint=ScoringAuthError("401")),
            "azure ml endpoint",
            "'dropscore batch invoker'",
        ),
        (
            lambda w: w.scoring.probe_errors.update({"deployment dropscore-ep/blue": ResourceMissing("no")}),
            "azure ml deployment",
            "set BATCH_DEPLOYMENT",
        ),
        (
            lambda w: w.scoring.probe_errors.update({"datastore dropscore_outputs": ResourceMissing("no")}),
            "azure ml output datastore",
            "register datastore 'dropscore_outputs'",
        ),
        (
            lambda w: setattr(w.events, "probe_error", TopicAuthError("403")),
            "event grid topic",
            "EventGrid Data Sender",
        ),
        (lambda w: w.resources.existing.discard(SUBSCRIPTION), "blob event subscription", "postdeploy hook"),
        (lambda w: w.resources.denied_ids.add(SUBSCRIPTION), "blob event subscription", "EventSubscription Reader"),
        (lambda w: w.resources.existing.discard(RUN_EVENTS), "aml run events subscription", "postdeploy hook"),
        (lambda w: w.resources.denied_ids.add(RUN_EVENTS), "aml run events subscription", "workspace's system"),
    ],
)
def test_each_failure_names_what_to_do(break_it, name: str, fix_part: str) -> None:  # type: ignore[no-untyped-def]
    world = azure_world()
    break_it(world)
    found = checks(world)
    assert found[name].status is CheckStatus.FAIL
    assert fix_part in found[name].fix
    failed = [n for n, c in found.items() if c.status is CheckStatus.FAIL]
    assert failed == [name]  # one broken thing never hides or fails another


def test_without_a_token_the_endpoint_is_not_asked() -> None:
    world = azure_world()
    world.scoring.probe_errors["token"] = ScoringUnavailable("no token", ambiguous=False)
    found = checks(world)
    assert found["azure ml endpoint"].status is CheckStatus.SKIP
    assert "endpoint" not in world.scoring.probed


def test_unconfigured_checks_are_skipped_with_what_to_set() -> None:
    found = checks(make_world(BLOB_TRIGGER_SOURCE="LogsAndContainerScan"))
    assert found["azure ml deployment"].status is CheckStatus.SKIP
    assert "default deployment" in found["azure ml deployment"].detail
    assert "AML_WORKSPACE_ID" in found["azure ml output datastore"].detail
    assert "container scan" in found["blob event subscription"].detail
    assert "BLOB_EVENT_SUBSCRIPTION_ID" in checks(make_world())["blob event subscription"].detail


def test_the_run_events_subscription_is_skipped_when_run_events_are_off_or_unnamed() -> None:
    found = checks(azure_world(AML_RUN_EVENTS="off"))["aml run events subscription"]
    assert (found.status, "AML_RUN_EVENTS is off" in found.detail) == (CheckStatus.SKIP, True)
    found = checks(azure_world(AML_EVENT_SUBSCRIPTION_ID=""))["aml run events subscription"]
    assert (found.status, "AML_EVENT_SUBSCRIPTION_ID" in found.detail) == (CheckStatus.SKIP, True)


def test_the_http_reply_is_503_when_anything_failed() -> None:
    ok = HealthReport((Check("a", CheckStatus.PASS, "fine"), Check("b", CheckStatus.SKIP, "n/a")))
    assert health_reply(ok).status == 200
    bad = HealthReport((Check("a", CheckStatus.FAIL, "broken", "do this"),))
    reply = health_reply(bad)
    assert reply.status == 503
    assert reply.body == {
        "healthy": False,
        "checks": [{"name": "a", "status": "fail", "detail": "broken", "fix": "do this"}],
    }


def test_the_doctor_table_shows_each_fix_under_its_failure() -> None:
    report = HealthReport(
        (Check("settings", CheckStatus.PASS, "valid"), Check("table jobs", CheckStatus.FAIL, "missing", "create it"))
    )
    assert doctor.render(report).splitlines() == [
        "ok    settings    valid",
        "FAIL  table jobs  missing",
        "                  -> create it",
        "1 check(s) failed: table jobs",
    ]


def test_the_doctor_reads_local_settings_over_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"Values": {"INPUT_CONTAINER": "drops", "POLL_CONCURRENCY": 3}}))
    values = doctor.load_settings(path, {"INPUT_CONTAINER": "incoming", "JOBS_TABLE": "ledger"})
    assert (values["INPUT_CONTAINER"], values["POLL_CONCURRENCY"], values["JOBS_TABLE"]) == ("drops", "3", "ledger")
    path.write_text("[]")
    with pytest.raises(ValueError, match='no "Values" object'):
        doctor.load_settings(path, {})


def test_the_doctor_exits_2_on_an_unreadable_settings_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert doctor.main(["--settings", str(tmp_path / "nope.json")]) == 2
    assert "cannot read the settings" in capsys.readouterr().err


def test_the_doctor_exits_1_and_names_every_bad_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("os.environ", {"POLL_CONCURRENCY": "0"})
    assert doctor.main([]) == 1
    out = capsys.readouterr().out
    assert "FAIL  settings" in out
    assert "BATCH_ENDPOINT_URI: missing (required)" in out


def test_intake_never_takes_a_probe_blob_for_input() -> None:
    world = make_world()
    assert (
        accept_blob(world.deps, container="incoming", name="_dropscore-health/abc", size=3, etag="0x1", url="u") is None
    )
    assert world.store.rows == {}


def test_discovered_model_columns_are_shown_and_each_failure_names_its_fix() -> None:
    world = azure_world()
    assert checks(world)["model input columns"].detail == "model diamonds:1 requires carat, cut"
    cases = [
        (ModelSchemaUnavailable("model diamonds:1: the model has a tensor-based signature"), "REQUIRED_COLUMNS"),
        (ResourceMissing("Azure ML has no deployment blue"), "BATCH_DEPLOYMENT"),
        (StorageAuthError("HTTP 403"), "Storage Blob Data Reader"),
        (ScoringAuthError("HTTP 403"), "dropscore batch invoker"),
    ]
    for error, fix in cases:
        world.catalog.error = error
        check = checks(world)["model input columns"]
        assert (check.status, check.detail) == (CheckStatus.FAIL, error.message)
        assert fix in check.fix


def test_listed_or_no_required_columns_need_no_lookup() -> None:
    listed = checks(azure_world(REQUIRED_COLUMNS="carat,cut"))["model input columns"]
    assert (listed.status, listed.detail) == (CheckStatus.PASS, "REQUIRED_COLUMNS lists carat, cut")
    world = azure_world(REQUIRED_COLUMNS="")
    assert checks(world)["model input columns"].status is CheckStatus.SKIP
    assert world.catalog.lookups == []
