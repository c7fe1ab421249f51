"""Functions dev host, timer triggers: NCRONTAB schedule, run_on_startup, past_due, no overlap, shutdown."""

from __future__ import annotations

import contextlib
import itertools
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from localdev.azurite import Azurite
from localdev.functions_host.schedule import Schedule
from localdev.functions_host.settings import SettingsError
from localdev.functions_host.timer_trigger import status_blob_name
from tests.integration.functions_host_support import make_app, running_host, wait_for

T0 = datetime(2026, 1, 2, 10, 0, 7, tzinfo=UTC)  # a Friday


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("*/2 * * * * *", ["10:00:08", "10:00:10", "10:00:12"]),
        ("0 */5 * * * *", ["10:05:00", "10:10:00", "10:15:00"]),
        ("30 0 * * * *", ["10:00:30", "11:00:30", "12:00:30"]),
        ("0 0 9 * * 1-5", ["2026-01-05 09:00:00", "2026-01-06 09:00:00", "2026-01-07 09:00:00"]),
        ("00:00:05", ["10:00:12", "10:00:17", "10:00:22"]),
    ],
)
def test_schedule_occurrences(expression: str, expected: list[str]) -> None:
    got = Schedule.parse(expression).occurrences(T0, 3)
    fmt = "%Y-%m-%d %H:%M:%S" if " " in expected[0] else "%H:%M:%S"
    assert [moment.strftime(fmt) for moment in got] == expected
    assert all(moment.tzinfo is not None for moment in got)


@pytest.mark.parametrize("expression", ["*/5 * * * *", "61 * * * * *", "nonsense", "0 0 0 1 1 * *"])
def test_schedule_rejects_bad_expressions(expression: str) -> None:
    with pytest.raises(SettingsError):
        Schedule.parse(expression)


def test_schedule_shortest_interval_decides_monitor_default() -> None:
    assert Schedule.parse("*/2 * * * * *").shortest_interval(T0) == timedelta(seconds=2)
    assert Schedule.parse("0 0 * * * *").shortest_interval(T0) == timedelta(hours=1)


@pytest.mark.integration
@pytest.mark.slow
def test_timer_host(azurite: Azurite, tmp_path: Path) -> None:
    host_id = f"timertest-{uuid.uuid4().hex[:6]}"
    app = make_app(tmp_path, "timerapp", azurite)
    # The monitor recorded a Next that has passed while the host was down: startup must run it past due.
    status = {"Last": None, "Next": (datetime.now(UTC) - timedelta(hours=1)).isoformat(), "LastUpdated": None}
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    with contextlib.suppress(ResourceExistsError):
        blobs.create_container("azure-webjobs-hosts")
    blobs.get_blob_client("azure-webjobs-hosts", status_blob_name(host_id, "Host.Functions.monitored")).upload_blob(
        json.dumps(status), overwrite=True
    )
    started = time.time()
    with running_host(app, tmp_path / "host.log", host_id=host_id) as (service, _):
        wait_for(lambda: len(app.records("every_two")) >= 3, timeout=10)
        wait_for(lambda: len(app.records("slow")) >= 2, timeout=10)
        # Stop while `slow` is running: the running invocation must still finish.
        wait_for(lambda: len(app.records("slow_start")) > len(app.records("slow")), timeout=5)
        service.stop()
    assert len(app.records("slow_start")) == len(app.records("slow")), "graceful stop cut a run short"
    assert "Waiting up to" in (tmp_path / "host.log").read_text()

    ticks = [r["at"] for r in app.records("every_two")]
    for at in ticks:
        assert int(at) % 2 == 0, f"tick at {at} is not on an even second"
        assert at - int(at) < 0.5, f"tick at {at} is late"
    assert not any(r["past_due"] for r in app.records("every_two"))

    [startup] = app.records("on_startup")
    assert startup["at"] - started < 3
    assert startup["past_due"] is False

    [monitored] = app.records("monitored")
    assert monitored["past_due"] is True

    runs = app.records("slow")
    for earlier, later in itertools.pairwise(runs):
        assert later["started"] >= earlier["ended"], "timer runs overlapped"
    # The schedule asks for every second; a 2.2 s run means the ticks in between were skipped.
    elapsed = runs[-1]["ended"] - runs[0]["started"]
    assert len(runs) <= elapsed / 2.2 + 1
