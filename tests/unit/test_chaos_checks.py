"""The chaos test's checks, table and traceback allow-list, on snapshots built by hand (no stack)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from localdev.chaos import tracebacks
from localdev.chaos.checks import (
    Verdict,
    VersionChecker,
    VersionRow,
    emulator_predictions,
    joined_csv,
)
from localdev.chaos.journal import Journal, Uploaded, Window, seconds_up
from localdev.chaos.observe import AmlJob, Record, Snapshot, StoredBlob
from localdev.chaos.plan import Kind, Upload
from localdev.chaos.report import Figures, render_problems, render_summary, render_table
from localdev.chaos.rules import Containers
from localdev.chaos.stack_checks import stack_checks

CONTAINERS = Containers(archive="processed", failed="failed", rejected="rejected")
ENV = {"INPUT_CONTAINER": "incoming", "OUTPUT_CONTAINER": "predictions", "AML_OUTPUT_CONTAINER": "aml-outputs"}
DATA = b"carat,cut\n0.5,Ideal\n0.7,Fair\n"
JOB = "a" * 40
AML_OUTPUT = f"dropscore/{JOB}/1/predictions.csv"
AML_PREDICTIONS = b"1,2000.5,x.csv\n0,1500.25,x.csv\n"  # out of order: the emulator's rows carry their index
NAME = "deep/a/b/c001-valid.csv"


def _scenario() -> dict[str, Any]:
    """One valid version that completed as the rules say: every check passes."""
    upload = Upload(1, NAME, Kind.VALID, 0.0, first_row=0, rows=2)
    uploaded = Uploaded(upload, "0x1", DATA, started=100.0, finished=100.1)
    record = Record(
        job_id=JOB,
        name=NAME,
        etag="0x1",
        state="Completed",
        stage="Done",
        attempt=1,
        moved_to="processed",
        rows_in=2,
        rows_out=2,
        rows_missing=0,
        events_pending=("DropScore.JobSubmitted", "DropScore.JobCompleted"),
        events_published=("DropScore.JobSubmitted", "DropScore.JobCompleted"),
    )
    data = {
        "jobId": JOB,
        "state": "Completed",
        "attempt": 1,
        "input": {"name": NAME, "etag": "0x1", "movedTo": "processed"},
        "output": {"rows": 2, "rowsMissing": 0},
    }
    events = [
        {"id": f"{JOB}-1-JobSubmitted", "type": "DropScore.JobSubmitted", "data": {**data, "state": "Submitted"}},
        {"id": f"{JOB}-1-JobCompleted", "type": "DropScore.JobCompleted", "data": data},
    ]
    blobs = {
        "incoming": {},
        "processed": {NAME: StoredBlob("processed", NAME, "0x9", JOB)},
        "failed": {},
        "rejected": {},
        "predictions": {f"{NAME}.predictions.csv": StoredBlob("predictions", f"{NAME}.predictions.csv", "0x8", "")},
    }
    files = {
        ("aml-outputs", AML_OUTPUT): AML_PREDICTIONS,
        ("predictions", f"{NAME}.predictions.csv"): b"carat,cut,prediction\n0.5,Ideal,1500.25\n0.7,Fair,2000.5\n",
        ("processed", NAME): DATA,
    }
    snapshot = Snapshot(
        records=[record],
        events=events,
        aml_jobs=[AmlJob("dropscore-aaaa-1", "Completed", JOB, 1, AML_OUTPUT)],
        unattributed_aml_jobs=[],
        blobs=blobs,
        poison={"job-completions-poison": 0},
        active=0,
        listed={("all", JOB), ("state-Completed", JOB), ("state-Running", JOB)},  # a crash's leftover is fine
    )
    return {"uploaded": uploaded, "snapshot": snapshot, "files": files}


def _row(scenario: dict[str, Any]) -> VersionRow:
    journal = Journal(uploads=[scenario["uploaded"]])
    checker = VersionChecker(journal=journal, snapshot=scenario["snapshot"], containers=CONTAINERS, env=ENV)
    files = scenario["files"]
    return checker.row(scenario["uploaded"], lambda container, name: files.get((container, name)))


def test_a_version_that_ended_as_the_rules_say_passes_every_check() -> None:
    row = _row(_scenario())

    assert row.verdicts == dict.fromkeys(("state", "aml", "event", "rows", "input"), Verdict.OK), row.problems
    assert (row.expected, row.got) == ("Completed ->processed", "Completed ->processed")


def test_two_azure_ml_jobs_for_one_attempt_fail_the_aml_check() -> None:
    scenario = _scenario()
    snapshot = scenario["snapshot"]
    snapshot.aml_jobs.append(AmlJob("dropscore-aaaa-1-again", "Completed", JOB, 1, AML_OUTPUT))

    row = _row(scenario)

    assert row.verdicts["aml"] is Verdict.FAIL
    assert "aml: 2 Azure ML jobs for attempt 1" in row.problems


def test_a_missing_or_contradicting_terminal_event_fails_the_event_check() -> None:
    scenario = _scenario()
    scenario["snapshot"].events.pop()
    assert _row(scenario).verdicts["event"] is Verdict.FAIL

    scenario = _scenario()
    final = scenario["snapshot"].events[-1]
    final["data"] = {**final["data"], "input": {**final["data"]["input"], "movedTo": "failed"}}
    row = _row(scenario)
    assert row.verdicts["event"] is Verdict.FAIL
    assert any("input.movedTo is 'failed', the ledger says 'processed'" in p for p in row.problems)


def test_duplicate_deliveries_of_the_same_event_are_allowed() -> None:
    scenario = _scenario()
    scenario["snapshot"].events.append(scenario["snapshot"].events[-1])

    assert _row(scenario).verdicts["event"] is Verdict.OK


def test_predictions_that_differ_from_the_join_fail_the_rows_check() -> None:
    scenario = _scenario()
    scenario["files"][("predictions", f"{NAME}.predictions.csv")] = b"carat,cut,prediction\n0.5,Ideal,1\n0.7,Fair,2\n"

    assert _row(scenario).verdicts["rows"] is Verdict.FAIL


def test_an_input_not_where_the_record_says_fails_the_input_check() -> None:
    scenario = _scenario()
    scenario["snapshot"].blobs["processed"] = {}
    scenario["snapshot"].blobs["failed"] = {NAME: StoredBlob("failed", NAME, "0x9", JOB)}

    row = _row(scenario)

    assert row.verdicts["input"] is Verdict.FAIL
    assert any("failed/deep/a/b/c001-valid.csv holds our copy but the record says processed" in p for p in row.problems)


def test_an_unfinished_job_fails_the_state_check() -> None:
    scenario = _scenario()
    snapshot = scenario["snapshot"]
    snapshot.records[0] = dataclasses.replace(snapshot.records[0], stage="Filed")

    row = _row(scenario)

    assert row.verdicts["state"] is Verdict.FAIL
    assert row.got == "Completed ->processed [Filed]"


def test_stack_checks_catch_poison_leftovers_and_strangers() -> None:
    scenario = _scenario()
    snapshot = scenario["snapshot"]
    journal = Journal(uploads=[scenario["uploaded"]])
    assert all(c.passed for c in stack_checks(**_stack_args(journal, snapshot)))

    snapshot.poison["webjobs-blobtrigger-poison"] = 1
    snapshot.blobs["incoming"]["stray.csv"] = StoredBlob("incoming", "stray.csv", "0x5", "")
    snapshot.aml_jobs.append(AmlJob("dropscore-bbbb-1", "Completed", "b" * 40, 1, "dropscore/b/1/predictions.csv"))
    snapshot.listed.discard(("state-Completed", JOB))  # listed, but not in the state its ledger row has
    checks = stack_checks(**_stack_args(journal, snapshot, converged="2 jobs not Done"))
    failed = {check.name for check in checks if not check.passed}

    assert failed == {
        "converged",
        "poison queues empty",
        "nothing left in the input container",
        "every Azure ML job belongs to a ledger job",
        "the job list has every job, in its state",
    }


def _stack_args(journal: Journal, snapshot: Snapshot, converged: str | None = None) -> dict[str, Any]:
    return {
        "journal": journal,
        "snapshot": snapshot,
        "input_container": "incoming",
        "converged": converged,
        "unexplained": [],
    }


def test_the_join_follows_the_row_numbers_azure_ml_gives() -> None:
    predictions = emulator_predictions(AML_PREDICTIONS)

    assert predictions == ["1500.25", "2000.5"]
    assert joined_csv(DATA, predictions) == "carat,cut,prediction\n0.5,Ideal,1500.25\n0.7,Fair,2000.5\n"
    with pytest.raises(ValueError, match=r"0\.\.n-1"):
        emulator_predictions(b"0,1,x\n2,3,x\n")
    with pytest.raises(ValueError, match="shorter"):
        joined_csv(DATA, ["1"])  # fewer predictions than rows


def test_seconds_up_leaves_out_every_outage_once() -> None:
    windows = [Window("functions-host", 2.0, 4.0), Window("azurite", 3.0, 5.0), Window("functions-host", 9.0, None)]

    assert seconds_up(0.0, 10.0, windows) == pytest.approx(10.0 - 3.0 - 1.0)


def test_the_table_has_one_aligned_row_per_version_and_the_failures_in_full() -> None:
    passing = _row(_scenario())
    failing = VersionRow(2, "with spaces/" + "x" * 60 + ".csv", "valid", "Completed ->processed", "unseen")
    failing.set("state", ["unseen is not what the rules allow"])
    for check in ("aml", "event", "rows", "input"):
        failing.set(check, None)

    table = render_table([passing, failing]).splitlines()

    assert table[0].split() == ["#", "name", "kind", "expected", "got", "state", "aml", "event", "rows", "input"]
    assert table[2].split()[-5:] == ["ok", "ok", "ok", "ok", "ok"]
    assert table[3].split()[-5:] == ["FAIL", "-", "-", "-", "-"]
    assert "…" in table[3]  # a long name is cut to its column's width...
    assert table[3].index("FAIL") == table[0].index("state")  # ...so the columns stay aligned
    assert "state: unseen is not what the rules allow" in render_problems([passing, failing])


def test_the_summary_says_pass_only_when_everything_held() -> None:
    figures = Figures(
        versions=1,
        kills=2,
        host_restarts=2,
        topic_down_seconds=20.0,
        azurite_restarts=1,
        faults_injected={"status 429": 3},
        duplicate_event_ids=1,
        wall_seconds=12.5,
    )
    row = _row(_scenario())
    checks = stack_checks(**_stack_args(Journal(uploads=[_scenario()["uploaded"]]), _scenario()["snapshot"]))

    summary = render_summary([row], checks, figures)

    assert "wall time: 12.5s: PASS" in summary
    assert "2 kill -9 of the functions host (2 restarts)" in summary
    assert "status 429=3" in summary
    failing = dataclasses.replace(checks[0], passed=False)
    assert render_summary([row], [failing, *checks[1:]], figures).endswith("FAIL")


LOG = """\
2026-12-02 08:06:13,123 ERROR [functions_host] Blob scan for on_input_blob failed; retrying in 1.0s
Traceback (most recent call last):
  File "a.py", line 1, in scan
    list_blobs()
ConnectionRefusedError: [Errno 111] Connection refused

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "b.py", line 2, in list
azure.core.exceptions.ServiceRequestError: <urllib3 connection>: Failed to establish a new connection
2026-12-02 08:06:20,000 ERROR [dropscore] something else
Traceback (most recent call last):
  File "c.py", line 3, in f
KeyError: 'k'
"""


def test_a_chain_of_exceptions_is_one_traceback_with_its_last_error() -> None:
    found = tracebacks.find_tracebacks(LOG, "functions-host")

    assert [t.error for t in found] == [
        "azure.core.exceptions.ServiceRequestError: <urllib3 connection>: Failed to establish a new connection",
        "KeyError: 'k'",
    ]
    assert found[0].heading.endswith("Blob scan for on_input_blob failed; retrying in 1.0s")


def test_a_traceback_is_explained_only_by_its_outage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = tracebacks.Explained("functions-host", r"Blob scan .* failed", "azurite", "Azurite was restarting")
    monkeypatch.setattr(tracebacks, "ALLOWED", (entry,))
    (tmp_path / "functions-host.log").write_text(LOG)
    [scan, _other] = tracebacks.find_tracebacks(LOG, "functions-host")
    assert scan.at is not None

    during = [Window("azurite", scan.at - 0.5, scan.at + 1.0)]
    problems, explained = tracebacks.unexplained(tmp_path, during)
    assert explained == 1
    assert problems == ["functions-host: 2026-12-02 08:06:20,000 ERROR [dropscore] something else / KeyError: 'k'"]

    long_before = [Window("azurite", scan.at - 100.0, scan.at - 100.0 + 1.0)]
    assert tracebacks.unexplained(tmp_path, long_before)[1] == 0
    assert tracebacks.unexplained(tmp_path, [Window("eventgrid", scan.at - 0.5, scan.at + 1.0)])[1] == 0


def test_an_event_delivered_twice_passes_only_with_a_crash_or_outage_between_its_copies() -> None:
    scenario = _scenario()
    snapshot = scenario["snapshot"]
    snapshot.received = {f"{JOB}-1-JobCompleted": [200.0, 230.0], f"{JOB}-1-JobSubmitted": [150.0]}

    def duplicate_check(windows: list[Window]) -> bool:
        journal = Journal(uploads=[scenario["uploaded"]], windows=windows)
        checks = stack_checks(**_stack_args(journal, snapshot))
        return next(c for c in checks if c.name == "an event delivered twice follows a crash or outage").passed

    assert duplicate_check([Window("functions-host", 210.0, 212.0, crash=True)])
    assert duplicate_check([Window("eventgrid", 199.5, 220.0)])  # the first copy's answer was lost with the topic
    assert not duplicate_check([])  # a calm duplicate is the defect of issue 10
    assert not duplicate_check([Window("functions-host", 100.0, 102.0, crash=True)])
