"""Timer trigger: NCRONTAB schedule, run_on_startup, past_due, schedule monitor, one run at a time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions import meta

from localdev.functions_host import storage
from localdev.functions_host.blob_trigger import Spawn
from localdev.functions_host.indexing import FunctionSpec
from localdev.functions_host.invoker import Invoker, TriggerInput
from localdev.functions_host.schedule import Schedule
from localdev.functions_host.settings import SettingsError, resolve_connection

log = logging.getLogger("functions_host")

# A tick that starts later than this after its scheduled time is reported as past due.
PAST_DUE_TOLERANCE = timedelta(seconds=1)


def status_blob_name(host_id: str, function_id: str) -> str:
    """Where the host's schedule monitor keeps Last/Next (container azure-webjobs-hosts)."""
    return f"timers/{host_id}/{function_id}/status"


def timer_trigger_input(past_due: bool, status: dict[str, Any] | None, detail: str) -> TriggerInput:
    body = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": status or {}, "IsPastDue": past_due}
    return TriggerInput(meta.Datum(json.dumps(body), "json"), {}, {}, detail)


async def sleep_until(moment: datetime) -> None:
    """Never wake before `moment`: the event loop may fire a timer a clock tick early."""
    while (remaining := (moment - datetime.now(UTC)).total_seconds()) > 0:
        await asyncio.sleep(remaining + 0.001)


def uses_monitor(spec: FunctionSpec, schedule: Schedule) -> bool:
    """`use_monitor` defaults to true when the schedule's interval is at least a minute, like the host."""
    explicit = spec.trigger.get("useMonitor")
    if explicit is not None:
        return bool(explicit)
    return schedule.shortest_interval() >= timedelta(minutes=1)


class TimerTriggers:
    def __init__(
        self,
        *,
        host_id: str,
        invoker: Invoker,
        spawn: Spawn,
        past_due_tolerance: timedelta = PAST_DUE_TOLERANCE,
    ) -> None:
        self.host_id = host_id
        self.invoker = invoker
        self.spawn = spawn
        self.tolerance = past_due_tolerance

    def _status_client(self, spec: FunctionSpec) -> Any:
        hosts = storage.blob_service(resolve_connection("AzureWebJobsStorage")).get_container_client(
            storage.HOSTS_CONTAINER
        )
        with contextlib.suppress(ResourceExistsError):
            hosts.create_container()
        return hosts.get_blob_client(status_blob_name(self.host_id, spec.function_id))

    def _read_status(self, spec: FunctionSpec) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self._status_client(spec).download_blob().readall()))
        except (ResourceNotFoundError, ValueError):
            return None

    def _write_status(self, spec: FunctionSpec, last: datetime | None, upcoming: datetime) -> dict[str, Any]:
        status = {
            "Last": last.isoformat() if last else None,
            "Next": upcoming.isoformat(),
            "LastUpdated": datetime.now(UTC).isoformat(),
        }
        self._status_client(spec).upload_blob(json.dumps(status).encode(), overwrite=True)
        return status

    async def run_by_hand(self, spec: FunctionSpec) -> None:
        await self.invoker.invoke(spec, timer_trigger_input(False, None, "manual"))

    async def _run(self, spec: FunctionSpec, trigger: TriggerInput) -> None:
        # Spawned, then awaited with asyncio.wait: stopping the loop never cancels a running invocation.
        await asyncio.wait([self.spawn(self.invoker.invoke(spec, trigger))])

    async def _startup_past_due(self, spec: FunctionSpec, monitor: bool) -> bool:
        if not monitor:
            return False
        status = await asyncio.to_thread(self._read_status, spec)
        if not status or not status.get("Next"):
            return False
        return datetime.fromisoformat(status["Next"]) < datetime.now(UTC)

    async def run_loop(self, spec: FunctionSpec) -> None:
        """Sleep to each occurrence and run it to completion; occurrences missed meanwhile are skipped."""
        try:
            schedule = Schedule.parse(str(spec.trigger["schedule"]))
            monitor = uses_monitor(spec, schedule)
        except SettingsError as exc:
            log.error("Timer %s disabled: %s", spec.name, exc)
            return
        status: dict[str, Any] | None = None
        last: datetime | None = None
        if await self._startup_past_due(spec, monitor):
            await self._run(spec, timer_trigger_input(True, None, "past due at startup"))
            last = datetime.now(UTC)
        elif spec.trigger.get("runOnStartup"):
            await self._run(spec, timer_trigger_input(False, None, "run on startup"))
            last = datetime.now(UTC)
        upcoming = schedule.next_after(datetime.now(UTC))
        while True:
            if monitor:
                status = await asyncio.to_thread(self._write_status, spec, last, upcoming)
            await sleep_until(upcoming)
            started = datetime.now(UTC)
            past_due = started - upcoming > self.tolerance
            detail = f"schedule={schedule.expression} due={upcoming.isoformat()} past_due={past_due}"
            await self._run(spec, timer_trigger_input(past_due, status, detail))
            last = upcoming
            upcoming = schedule.next_after(datetime.now(UTC))
