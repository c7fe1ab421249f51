"""The chaos run's checks of each input version: terminal state, Azure ML jobs, events, predictions,
where the input went (the stack as a whole: stack_checks.py)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from localdev.chaos.journal import Journal, Uploaded, seconds_up
from localdev.chaos.observe import AmlJob, Record, Snapshot
from localdev.chaos.rules import Containers, Outcome, VersionFacts, expectations, judge

FINAL_EVENTS = {"Completed": "DropScore.JobCompleted", "Rejected": "DropScore.InputRejected"}
JOB_FAILED = "DropScore.JobFailed"
CHECKS = ("state", "aml", "event", "rows", "input")
Reader = Callable[[str, str], bytes | None]  # (container, name) -> bytes, None when absent


class Verdict(StrEnum):
    OK = "ok"
    FAIL = "FAIL"
    NOT_APPLICABLE = "-"


@dataclass
class VersionRow:
    number: int
    name: str
    kind: str
    expected: str
    got: str
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def set(self, check: str, problems: Sequence[str] | None) -> None:
        """None: the check does not apply to this version; [] passed; otherwise what failed."""
        if problems is None:
            self.verdicts[check] = Verdict.NOT_APPLICABLE
            return
        self.verdicts[check] = Verdict.FAIL if problems else Verdict.OK
        self.problems += [f"{check}: {problem}" for problem in problems]

    @property
    def passed(self) -> bool:
        return Verdict.FAIL not in self.verdicts.values()


def final_event(state: str) -> str:
    return FINAL_EVENTS.get(state, JOB_FAILED)


def joined_csv(input_csv: bytes, predictions: Sequence[str]) -> str:
    """What the app must write: the input's header + `prediction`, each input row + its prediction."""
    rows = [row for row in csv.reader(io.StringIO(input_csv.decode())) if row]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*rows[0], "prediction"])
    for row, prediction in zip(rows[1:], predictions, strict=True):
        writer.writerow([*row, prediction])
    return out.getvalue()


def emulator_predictions(raw: bytes) -> list[str]:
    """The emulator's append_row output (`row,prediction,file_name`, no header), in row order."""
    lines = sorted((fields for fields in csv.reader(io.StringIO(raw.decode())) if fields), key=lambda f: int(f[0]))
    if [int(fields[0]) for fields in lines] != list(range(len(lines))):
        raise ValueError("the row numbers of Azure ML's output are not 0..n-1")
    return [",".join(fields[1:-1]) for fields in lines]


class VersionChecker:
    """Checks every uploaded version against what the stack holds."""

    def __init__(self, *, journal: Journal, snapshot: Snapshot, containers: Containers, env: dict[str, str]) -> None:
        self.journal, self.snapshot, self.containers, self.env = journal, snapshot, containers, env
        self.records = {(r.name, r.etag): r for r in snapshot.records}
        self.aml_jobs: dict[str, list[AmlJob]] = {}
        for job in snapshot.aml_jobs:
            self.aml_jobs.setdefault(job.job_id, []).append(job)
        self.events_of: dict[str, list[dict[str, Any]]] = {}
        for event in snapshot.events:
            self.events_of.setdefault(str(event.get("data", {}).get("jobId")), []).append(event)

    def record(self, uploaded: Uploaded) -> Record | None:
        return self.records.get((uploaded.upload.name, uploaded.etag))

    def facts(self, uploaded: Uploaded) -> VersionFacts:
        successor = self.journal.successor(uploaded)
        if successor is None:
            return VersionFacts(uploaded.upload.kind, replaced=False)
        outages = [w for w in self.journal.windows if w.part in {"functions-host", "azurite"}]
        return VersionFacts(uploaded.upload.kind, True, seconds_up(uploaded.finished, successor.started, outages))

    def row(self, uploaded: Uploaded, read: Reader) -> VersionRow:
        upload, record = uploaded.upload, self.record(uploaded)
        facts = self.facts(uploaded)
        allowed = expectations(facts, self.containers)
        outcome = record.outcome if record else Outcome(None)
        rule = judge(allowed, outcome)
        successor = self.journal.successor(uploaded)
        kind = f"{upload.kind}" + (f" ->#{successor.upload.number}" if successor else "")
        shown = rule or (allowed[0] if len(allowed) == 1 else None)
        expected = shown.describe() if shown else f"one of {len(allowed)} rules"
        got = outcome.describe() + ("" if record is None or record.done else f" [{record.stage}]")
        row = VersionRow(upload.number, upload.name, kind, expected, got)
        state_problems = []
        if record is not None and not record.done:
            state_problems.append(f"not finished: {record.state}, stage {record.stage}")
        if rule is None:
            options = "; ".join(f"{a.describe()} ({a.why})" for a in allowed)
            state_problems.append(f"{outcome.describe()} is not what the rules allow: {options}")
        if uploaded.note:
            row.problems.append(f"note: {uploaded.note}")
        row.set("state", state_problems)
        if record is None:
            row.set("aml", None)
            row.set("event", self._unseen_events(uploaded))
            row.set("rows", None)
            row.set("input", None)
            return row
        row.set("aml", self._aml(record))
        row.set("event", self._events(record))
        row.set("rows", self._rows(uploaded, record, read) if record.state == "Completed" else None)
        row.set("input", self._input(uploaded, record, read))
        return row

    def _aml(self, record: Record) -> list[str]:
        jobs = self.aml_jobs.get(record.job_id, [])
        problems = [
            f"{count} Azure ML jobs for attempt {attempt}"
            for attempt, count in sorted(Counter(j.attempt for j in jobs).items())
            if count > 1
        ]
        problems += [
            f"Azure ML job {j.name} is for attempt {j.attempt}, past the recorded {record.attempt}"
            for j in jobs
            if j.attempt > record.attempt
        ]
        never_submitted = record.state == "Rejected" or (record.state == "Canceled" and record.attempt == 0)
        if never_submitted and jobs:
            problems.append(f"compute spent on a version never submitted: {', '.join(j.name for j in jobs)}")
        final = [j for j in jobs if j.attempt == record.attempt]
        needed = _azure_ml_status_behind(record)
        if needed and not any(j.status == needed for j in final):
            problems.append(f"no {needed} Azure ML job for attempt {record.attempt} ({[j.status for j in final]})")
        return problems

    def _events(self, record: Record) -> list[str]:
        problems = []
        events = self.events_of.get(record.job_id, [])
        if not set(record.events_pending) <= set(record.events_published):
            problems.append(f"ledger: {record.events_pending} queued, only {record.events_published} published")
        for name in record.events_pending:
            if not any(event["type"] == name for event in events):
                problems.append(f"the ledger says {name} was published; events.jsonl has none")
        expected_type = final_event(record.state)
        expected_id = f"{record.job_id}-{record.attempt}-{expected_type.rsplit('.', 1)[-1]}"
        if expected_type not in record.events_pending:
            problems.append(f"the ledger never queued {expected_type}")
        finals = [e for e in events if e["type"] in {*FINAL_EVENTS.values(), JOB_FAILED}]
        if not finals:
            problems.append(f"no {expected_type} in events.jsonl")
        for event in finals:
            if (event["type"], event["id"]) != (expected_type, expected_id):
                problems.append(f"{event['type']} {event['id']} delivered; expected only {expected_id}")
                continue
            problems += [f"{event['id']}: {p}" for p in _event_differences(event["data"], record)]
        return sorted(set(problems))

    def _unseen_events(self, uploaded: Uploaded) -> list[str]:
        mentions = [
            e["id"]
            for e in self.snapshot.events
            if e.get("data", {}).get("input", {}).get("etag") == uploaded.etag
            and e["data"]["input"].get("name") == uploaded.upload.name
        ]
        return [f"events for a version the ledger does not have: {mentions}"] if mentions else []

    def _rows(self, uploaded: Uploaded, record: Record, read: Reader) -> list[str]:
        final = next((j for j in self.aml_jobs.get(record.job_id, []) if j.attempt == record.attempt), None)
        raw = read(self.env["AML_OUTPUT_CONTAINER"], final.output_path) if final else None
        if raw is None:
            return [f"no Azure ML output for attempt {record.attempt}"]
        rows = len([row for row in csv.reader(io.StringIO(uploaded.data.decode())) if row]) - 1
        problems = []
        if (record.rows_in, record.rows_out, record.rows_missing) != (rows, rows, 0):
            problems.append(f"ledger rows in/out/missing {record.rows_in}/{record.rows_out}/{record.rows_missing}")
        try:
            expected = joined_csv(uploaded.data, emulator_predictions(raw))
        except ValueError as exc:
            return [*problems, f"Azure ML's output does not fit the input ({rows} rows): {exc}"]
        if self._predictions_owner(uploaded.upload.name) is not uploaded:
            return problems  # a later version of the name completed and replaced the file (README)
        name = f"{uploaded.upload.name}.predictions.csv"
        written = read(self.env["OUTPUT_CONTAINER"], name)
        if written is None or written.decode() != expected:
            problems.append(f"{self.env['OUTPUT_CONTAINER']}/{name} differs from the input joined to Azure ML's output")
        return problems

    def _predictions_owner(self, name: str) -> Uploaded | None:
        completed = [u for u in self.journal.uploads if u.upload.name == name and self._state(u) == "Completed"]
        return completed[-1] if completed else None

    def _state(self, uploaded: Uploaded) -> str | None:
        record = self.record(uploaded)
        return record.state if record else None

    def _input(self, uploaded: Uploaded, record: Record, read: Reader) -> list[str]:
        name, blobs = uploaded.upload.name, self.snapshot.blobs
        holders = (self.containers.archive, self.containers.failed, self.containers.rejected)
        ours = [c for c in holders if blobs.get(c, {}).get(name) and blobs[c][name].moved_by == record.job_id]
        if not record.moved_to:
            if not record.not_moved:
                return ["the record names neither a container nor why the input was not moved"]
            return [f"said not moved ({record.not_moved}) but {c}/{name} is our copy" for c in ours]
        target = record.moved_to
        problems = [f"{c}/{name} holds our copy but the record says {target}" for c in ours if c != target]
        if name not in blobs.get(target, {}):
            problems.append(f"the record says moved to {target}; {target}/{name} does not exist")
        elif self._last_mover(name, target) is uploaded and (
            blobs[target][name].moved_by != record.job_id or read(target, name) != uploaded.data
        ):
            problems.append(f"{target}/{name} is not this version (the last one the ledger says was moved there)")
        current = blobs.get(self.env["INPUT_CONTAINER"], {}).get(name)
        if current is not None and current.etag == uploaded.etag:
            problems.append(f"still in {self.env['INPUT_CONTAINER']} although the record says moved to {target}")
        if record.state == "Rejected" and f"{name}.reason.json" not in blobs.get(self.containers.rejected, {}):
            problems.append(f"no {self.containers.rejected}/{name}.reason.json")
        return problems

    def _last_mover(self, name: str, container: str) -> Uploaded | None:
        movers = [u for u in self.journal.uploads if u.upload.name == name and self._moved_to(u) == container]
        return movers[-1] if movers else None

    def _moved_to(self, uploaded: Uploaded) -> str:
        record = self.record(uploaded)
        return record.moved_to if record else ""


def _azure_ml_status_behind(record: Record) -> str | None:
    """The status the Azure ML job of the recorded attempt must have for the record to be true: Completed
    behind a Completed job and behind a join that failed on the input (BlobChanged/BlobMissing come only after
    Scored), Failed behind Azure ML's own UserError. None when no Azure ML job is implied."""
    if record.state == "Completed" or (record.state == "Failed" and record.code in {"BlobChanged", "BlobMissing"}):
        return "Completed"
    return "Failed" if record.state == "Failed" and record.code == "UserError" else None


def _event_differences(data: dict[str, Any], record: Record) -> list[str]:
    """Where an event's data says something other than the ledger row it was built from."""
    seen = data.get("input", {})
    expected: list[tuple[str, Any, Any]] = [
        ("state", data.get("state"), record.state),
        ("attempt", data.get("attempt"), record.attempt),
        ("input.name", seen.get("name"), record.name),
        ("input.etag", seen.get("etag"), record.etag),
        ("input.movedTo", seen.get("movedTo", ""), record.moved_to),
        ("input.notMoved", seen.get("notMoved", ""), record.not_moved),
    ]
    if record.state == "Completed":
        output = data.get("output", {})
        expected += [("output.rows", output.get("rows"), record.rows_out)]
        expected += [("output.rowsMissing", output.get("rowsMissing"), record.rows_missing)]
    else:
        expected.append(("error.code", data.get("error", {}).get("code"), record.code))
    return [f"{key} is {got!r}, the ledger says {want!r}" for key, got, want in expected if got != want]
