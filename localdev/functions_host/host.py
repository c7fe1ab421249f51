"""The host: indexed functions, their listeners, in-flight invocations, graceful stop."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.functions import meta

from localdev.functions_host.blob_trigger import BlobPattern, BlobTriggers
from localdev.functions_host.http_routes import RouteTemplate
from localdev.functions_host.indexing import FunctionSpec
from localdev.functions_host.invoker import Invoker, TriggerInput
from localdev.functions_host.keys import HostKeys
from localdev.functions_host.queue_trigger import QueueTriggers, synthetic_trigger_input
from localdev.functions_host.schedule import Schedule
from localdev.functions_host.settings import HostConfig, SettingsError, resolve_connection
from localdev.functions_host.storage import STORAGE_THREADS
from localdev.functions_host.timer_trigger import TimerTriggers

log = logging.getLogger("functions_host")

STORAGE_TRIGGERS = frozenset({"blobTrigger", "queueTrigger", "timerTrigger"})


@dataclass(frozen=True)
class HttpRoute:
    spec: FunctionSpec
    template: RouteTemplate
    methods: frozenset[str] | None
    auth_level: str


def is_event_grid_source(spec: FunctionSpec) -> bool:
    return str(spec.trigger.get("source") or "").lower() == "eventgrid"


def event_grid_trigger_input(event: dict[str, Any], detail: str) -> TriggerInput:
    return TriggerInput(meta.Datum(json.dumps(event), "json"), {}, {}, detail)


class Host:
    def __init__(
        self,
        *,
        app_dir: Path,
        specs: list[FunctionSpec],
        config: HostConfig,
        host_id: str,
        keys: HostKeys,
        blob_scan_interval: float,
        shutdown_timeout: float,
        auth_enabled: bool = True,
        blob_scan_page_size: int | None = None,
    ) -> None:
        self.app_dir = app_dir
        self.specs = {spec.name: spec for spec in specs}
        self.config = config
        self.host_id = host_id
        self.keys = keys
        self.auth_enabled = auth_enabled
        self.shutdown_timeout = shutdown_timeout
        self.state = "Default"
        self.started_at = time.monotonic()
        self.invoker = Invoker(app_dir, config.function_timeout, config.queues)
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._listeners: list[asyncio.Task[Any]] = []
        self.blobs = BlobTriggers(
            host_id=host_id,
            invoker=self.invoker,
            spawn=self.spawn,
            poison_threshold=config.poison_blob_threshold,
            parallelism=config.blob_parallelism,
            scan_interval=blob_scan_interval,
            scan_page_size=blob_scan_page_size,
            message_encoding=config.queues.message_encoding,
        )
        self.queues = QueueTriggers(invoker=self.invoker, spawn=self.spawn, options=config.queues)
        self.timers = TimerTriggers(host_id=host_id, invoker=self.invoker, spawn=self.spawn)
        self._validate()
        self.routes = self._build_routes()

    # -- setup --------------------------------------------------------------------------------------------

    def _validate(self) -> None:
        """Trigger-specific checks the host does at indexing; a failing function is reported, not fatal."""
        for spec in self.specs.values():
            try:
                if spec.trigger_type in STORAGE_TRIGGERS:
                    resolve_connection("AzureWebJobsStorage")
                if spec.trigger_type in {"blobTrigger", "queueTrigger"}:
                    resolve_connection(spec.trigger.get("connection"))
                if spec.trigger_type == "blobTrigger":
                    BlobPattern.parse(str(spec.trigger["path"]))
                if spec.trigger_type == "timerTrigger":
                    Schedule.parse(str(spec.trigger["schedule"]))
            except (SettingsError, ValueError) as exc:
                spec.errors.append(str(exc))

    def _build_routes(self) -> list[HttpRoute]:
        routes = []
        for spec in self.specs.values():
            if spec.trigger_type != "httpTrigger":
                continue
            methods = spec.trigger.get("methods")
            routes.append(
                HttpRoute(
                    spec=spec,
                    template=RouteTemplate.compile(self.config.route_prefix, spec.trigger.get("route") or spec.name),
                    methods=frozenset(str(m).upper() for m in methods) if methods else None,
                    auth_level=str(spec.trigger.get("authLevel") or "function").lower(),
                )
            )
        return sorted(routes, key=lambda r: r.template.precedence)

    # -- lifecycle ----------------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Track an invocation so a graceful stop can wait for it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return task

    def _listen(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        task.add_done_callback(_report_listener_end)
        self._listeners.append(task)

    def log_functions(self) -> None:
        for spec in self.specs.values():
            where = ""
            if spec.trigger_type == "httpTrigger":
                route = next(r for r in self.routes if r.spec is spec)
                methods = ",".join(sorted(route.methods)) if route.methods else "ALL"
                where = f" [{methods}] /{route.template.template} auth={route.auth_level}"
            state = "DISABLED " if spec.disabled else ""
            log.info("Function %s%s: %s%s", state, spec.name, spec.trigger_type, where)
            for warning in spec.warnings:
                log.warning("Function %s: %s", spec.name, warning)
            for error in spec.errors:
                log.error("Function %s has an error and will not run: %s", spec.name, error)

    def _scanned_containers(self) -> dict[tuple[str, str], list[FunctionSpec]]:
        """Polling-source blob functions by watched container: the host scans each container once for all."""
        groups: dict[tuple[str, str], list[FunctionSpec]] = {}
        for spec in self.specs.values():
            if spec.runnable and spec.trigger_type == "blobTrigger" and not is_event_grid_source(spec):
                container = BlobPattern.parse(str(spec.trigger["path"])).container
                groups.setdefault((resolve_connection(spec.trigger.get("connection")), container), []).append(spec)
        return groups

    async def start(self) -> None:
        # Every storage call of the triggers runs in a thread; the loop's default pool (cpu count + 4 threads)
        # would make blob tries, queue messages and polls wait for each other in a burst.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=STORAGE_THREADS, thread_name_prefix="storage")
        )
        scanned = self._scanned_containers()
        for (_, container), specs in scanned.items():
            self._listen(self.blobs.scan_loop(specs, len(scanned)), f"blob:{container}")
        for spec in self.specs.values():
            if not spec.runnable:
                continue
            if spec.trigger_type == "queueTrigger":
                self._listen(self.queues.poll_loop(spec), f"queue:{spec.name}")
            elif spec.trigger_type == "timerTrigger":
                self._listen(self.timers.run_loop(spec), f"timer:{spec.name}")
        self.state = "Running"
        log.info("Host started (hostId=%s): %d function(s) running", self.host_id, len(self._listeners))

    async def stop(self) -> None:
        """Stop listening, then give running invocations up to shutdown_timeout to finish."""
        self.state = "Stopping"
        self.blobs.stopping = True
        for task in self._listeners:
            task.cancel()
        await asyncio.gather(*self._listeners, return_exceptions=True)
        pending = set(self._in_flight)
        if pending:
            log.info("Waiting up to %.0fs for %d running invocation(s)", self.shutdown_timeout, len(pending))
            _, still = await asyncio.wait(pending, timeout=self.shutdown_timeout)
            for task in still:
                task.cancel()
        self.invoker.shutdown()
        self.state = "Stopped"
        log.info("Host stopped")

    # -- lookups and manual runs ----------------------------------------------------------------------------

    def runnable(self, name: str) -> FunctionSpec | None:
        spec = self.specs.get(name)
        return spec if spec is not None and spec.runnable else None

    def run_by_hand(self, spec: FunctionSpec, text: str) -> None:
        """`POST /admin/functions/<fn>`: queue the invocation and return at once (the caller answers 202)."""
        if spec.trigger_type == "blobTrigger":
            self.spawn(self.blobs.run_by_hand(spec, text))
        elif spec.trigger_type == "queueTrigger":
            tries = self.config.queues.max_dequeue_count
            self.spawn(self.invoker.invoke(spec, synthetic_trigger_input(text, tries)))
        elif spec.trigger_type == "timerTrigger":
            self.spawn(self.timers.run_by_hand(spec))
        elif spec.trigger_type == "eventGridTrigger":
            self.spawn(self.invoker.invoke(spec, event_grid_trigger_input(json.loads(text or "{}"), "manual")))
        else:
            raise ValueError(f"{spec.trigger_type} functions cannot be run through the admin API")

    def status(self) -> dict[str, Any]:
        errors = [f"{s.name}: {e}" for s in self.specs.values() for e in s.errors]
        return {
            "id": self.host_id,
            "state": self.state,
            "version": "localdev-functions-host",
            "processUptime": int((time.monotonic() - self.started_at) * 1000),
            "errors": errors or None,
        }


def _report_listener_end(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.error("Listener %s stopped", task.get_name(), exc_info=(type(error), error, error.__traceback__))
