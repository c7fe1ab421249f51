"""The chaos driver follows its plan in order, against fake stack hooks (no stack, a few seconds)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from localdev.chaos import runner
from localdev.chaos.journal import Journal
from localdev.chaos.observe import Record
from localdev.chaos.plan import Action, ChaosPlan, Kind, Overwrite, Step, Upload
from localdev.stack import StackOptions


@dataclass
class FakeStack:
    """The reader and the part hooks the driver uses; records what happened, in order."""

    azurite_restart_seconds: float = 0.0
    in_flight_after: int = 0  # how many ledger reads see the target Received before it shows Running
    calls: list[str] = field(default_factory=list)
    reads: int = 0

    def upload(self, name: str, _data: bytes) -> str:
        self.calls.append(f"upload {name}")
        return f"0x{len(self.calls)}"

    def record_of(self, name: str, etag: str) -> Record:
        self.reads += 1
        state = "Running" if self.reads > self.in_flight_after else "Received"
        return Record(job_id="a" * 40, name=name, etag=etag, state=state, stage="Working", attempt=1)

    def stop_part(self, _directory: object, name: str, *, crash: bool = False) -> None:
        self.calls.append(f"{'kill' if crash else 'stop'} {name}")
        if name == "azurite":
            time.sleep(self.azurite_restart_seconds)

    def start_part(self, _options: object, name: str) -> None:
        self.calls.append(f"start {name}")


def _drive(monkeypatch: pytest.MonkeyPatch, stack: FakeStack, plan: ChaosPlan, *, wait: float = 5.0) -> Journal:
    monkeypatch.setattr(runner, "stop_part", stack.stop_part)
    monkeypatch.setattr(runner, "start_part", stack.start_part)
    options = StackOptions()
    driver = runner.Driver(reader=stack, options=options, say=lambda _text: None, wait=wait)  # type: ignore[arg-type]
    return driver.run(plan)


def _upload(number: int, at: float, *, replaces: int | None = None, overwrite: Overwrite | None = None) -> Upload:
    name = "same.csv" if number == 1 or replaces else f"c{number}.csv"  # #1 and what replaces it share a name
    return Upload(number, name, Kind.VALID, at, 0, 3, replaces, overwrite)


def test_a_slow_restart_does_not_shorten_the_outage_planned_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = (
        Step(0.0, Action.RESTART_AZURITE),
        Step(0.1, Action.STOP_TOPIC),  # due while Azurite is still restarting
        Step(0.6, Action.START_TOPIC),
    )
    journal = _drive(monkeypatch, FakeStack(azurite_restart_seconds=0.8), ChaosPlan(1, (), steps, ""))

    [topic] = [window for window in journal.windows if window.part == "eventgrid"]
    assert topic.end is not None
    assert topic.end - topic.start >= 0.5


def test_a_part_is_never_killed_again_before_it_was_started(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = (
        Step(0.0, Action.KILL_HOST),
        Step(0.05, Action.RESTART_AZURITE),
        Step(0.1, Action.START_HOST),  # made late by the restart...
        Step(0.15, Action.KILL_HOST),  # ...must still come before this
        Step(0.2, Action.START_HOST),
    )
    stack = FakeStack(azurite_restart_seconds=0.4)

    _drive(monkeypatch, stack, ChaosPlan(1, (), steps, ""))

    host = [call for call in stack.calls if "functions-host" in call]
    assert host == ["kill functions-host", "start functions-host"] * 2


def test_an_in_flight_overwrite_waits_until_the_job_it_replaces_is_running(monkeypatch: pytest.MonkeyPatch) -> None:
    uploads = (_upload(1, 0.0), _upload(2, 0.05, replaces=1, overwrite=Overwrite.IN_FLIGHT), _upload(3, 0.1))
    stack = FakeStack(in_flight_after=3)

    journal = _drive(monkeypatch, stack, ChaosPlan(1, uploads, (), ""))

    assert [u.upload.number for u in journal.uploads] == [1, 3, 2]  # #3 did not wait for #2
    assert stack.reads == 4
    assert journal.uploads[-1].note == ""


def test_an_in_flight_overwrite_goes_anyway_after_the_wait_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    uploads = (_upload(1, 0.0), _upload(2, 0.0, replaces=1, overwrite=Overwrite.IN_FLIGHT))

    journal = _drive(monkeypatch, FakeStack(in_flight_after=10**6), ChaosPlan(1, uploads, (), ""), wait=0.3)

    assert [u.upload.number for u in journal.uploads] == [1, 2]
    assert "was not seen Submitted/Running within 0s" in journal.uploads[1].note
