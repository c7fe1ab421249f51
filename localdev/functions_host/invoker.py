"""One invocation: build the arguments, call the function (thread pool or event loop), write outputs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.functions import meta

from localdev.functions_host import sdk_bindings, storage
from localdev.functions_host.indexing import FunctionSpec
from localdev.functions_host.sdk_bindings import MODEL_BINDING_DATA
from localdev.functions_host.settings import QueueOptions, resolve_connection

log = logging.getLogger("functions_host")
_EXPRESSION = re.compile(r"\{([^{}]+)\}")


class OutValue(func.Out[Any]):
    """The worker's `Out` for output parameters: the function sets it, the host reads it afterwards."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class _TraceContext(func._abc.TraceContext):  # type: ignore[misc]
    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(func._abc.RetryContext):  # type: ignore[misc]
    def __init__(self, retry_count: int, max_retry_count: int) -> None:
        self._retry_count = retry_count
        self._max_retry_count = max_retry_count

    @property
    def retry_count(self) -> int:
        return self._retry_count

    @property
    def max_retry_count(self) -> int:
        return self._max_retry_count

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(func.Context):
    def __init__(self, invocation_id: str, function_name: str, function_directory: str, attempt: int, tries: int):
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._retry = _RetryContext(max(0, attempt - 1), max(0, tries - 1))
        self._local = threading.local()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> Any:
        return _TraceContext()

    @property
    def retry_context(self) -> Any:
        return self._retry


@dataclass
class TriggerInput:
    """What a trigger hands the invoker: the raw datum, its metadata, and text for the log line."""

    datum: meta.Datum
    metadata: dict[str, meta.Datum] = field(default_factory=dict)
    binding_data: dict[str, str] = field(default_factory=dict)
    detail: str = ""
    attempt: int = 1
    tries: int = 1
    # Set when the trigger data cannot be bound (e.g. a queue message that is not base64): the
    # invocation then fails before the function runs, as in the host.
    binding_error: Exception | None = None


@dataclass
class InvocationResult:
    invocation_id: str
    succeeded: bool
    duration_ms: float
    return_value: Any = None
    http_response: Any = None
    error: BaseException | None = None


def substitute_expressions(text: str, binding_data: dict[str, str], *, where: str) -> str:
    """`{name}` binding expressions from trigger metadata (e.g. blob path parameters) in output fields."""

    def lookup(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in binding_data:
            raise ValueError(f"{where}: no value for binding expression {{{key}}}")
        return binding_data[key]

    return _EXPRESSION.sub(lookup, text)


def _plain_value(datum: meta.Datum, annotation: Any) -> Any:
    value = datum.value
    if annotation is str:
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)
    if annotation is bytes:
        return value.encode("utf-8") if isinstance(value, str) else value
    return None


def convert_trigger(spec: FunctionSpec, trigger: TriggerInput) -> Any:
    """The real `azure.functions` object via the meta converter; `str`/`bytes` parameters get the raw data;
    an SDK-type parameter gets what the extension's converter builds from the model binding data."""
    annotation = spec.annotations.get(spec.trigger["name"])
    if trigger.datum.type == MODEL_BINDING_DATA:
        return sdk_bindings.decode(spec.trigger_type, trigger.datum.value, trigger.metadata, annotation)
    if annotation in (str, bytes) and spec.trigger_type != "httpTrigger":
        return _plain_value(trigger.datum, annotation)
    converter = meta.get_binding_registry().get(spec.trigger_type)
    if converter is None:
        raise RuntimeError(f"no azure.functions converter for {spec.trigger_type}")
    return converter.decode(trigger.datum, trigger_metadata=trigger.metadata)


def _queue_texts(value: Any) -> list[str | bytes]:
    datum = meta.get_binding_registry().get("queue").encode(value, expected_type=None)
    if datum.type in {"string", "bytes"}:
        return [datum.value]
    items = datum.python_value
    items = items if isinstance(items, list) else [items]
    return [item["body"] if isinstance(item, dict) else item for item in items]


class Invoker:
    """Runs invocations: sync functions in a thread pool, `async def` functions on the host's loop."""

    def __init__(
        self,
        app_dir: Path,
        function_timeout: timedelta | None,
        queues: QueueOptions,
        max_workers: int = 16,
    ) -> None:
        self.app_dir = app_dir
        self.timeout = function_timeout.total_seconds() if function_timeout else None
        self.queues = queues
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fn")

    async def invoke(self, spec: FunctionSpec, trigger: TriggerInput) -> InvocationResult:
        invocation_id = str(uuid.uuid4())
        started = time.monotonic()
        outs: dict[str, OutValue] = {}
        try:
            kwargs = self._arguments(spec, trigger, invocation_id, outs)
            return_value = await self._call(spec, kwargs)
            http_response = await self._write_outputs(spec, trigger, outs, return_value)
        except Exception as exc:
            duration = (time.monotonic() - started) * 1000
            self._log(spec, trigger, invocation_id, duration, exc)
            return InvocationResult(invocation_id, False, duration, error=exc)
        duration = (time.monotonic() - started) * 1000
        self._log(spec, trigger, invocation_id, duration, None)
        return InvocationResult(invocation_id, True, duration, return_value, http_response)

    def _arguments(
        self, spec: FunctionSpec, trigger: TriggerInput, invocation_id: str, outs: dict[str, OutValue]
    ) -> dict[str, Any]:
        if trigger.binding_error is not None:
            raise trigger.binding_error
        kwargs: dict[str, Any] = {}
        for binding in spec.bindings:
            name = binding["name"]
            if name == "$return":
                continue
            if binding is spec.trigger:
                kwargs[name] = convert_trigger(spec, trigger)
            elif binding["direction"] == "OUT":
                outs[name] = kwargs[name] = OutValue()
            else:
                kwargs[name] = None
        if "context" in spec.parameters:
            kwargs["context"] = InvocationContext(
                invocation_id, spec.name, str(self.app_dir), trigger.attempt, trigger.tries
            )
        return kwargs

    async def _call(self, spec: FunctionSpec, kwargs: dict[str, Any]) -> Any:
        if spec.is_async:
            call = spec.user_function(**kwargs)
        else:
            loop = asyncio.get_running_loop()
            call = loop.run_in_executor(self.pool, functools.partial(spec.user_function, **kwargs))
        try:
            return await asyncio.wait_for(call, self.timeout)
        except TimeoutError as exc:
            # A thread cannot be killed: a timed-out sync function keeps running in the background.
            raise TimeoutError(f"Timeout value of {self.timeout:.0f}s (functionTimeout) was exceeded") from exc

    async def _write_outputs(
        self, spec: FunctionSpec, trigger: TriggerInput, outs: dict[str, OutValue], return_value: Any
    ) -> Any:
        http_response = None
        for binding in spec.output_bindings():
            name = binding["name"]
            value = return_value if name == "$return" else outs[name].get()
            if binding["type"] == "http":
                http_response = value
            elif binding["type"] == "queue" and value is not None:
                await asyncio.to_thread(self._send_queue_output, binding, trigger, value)
        return http_response

    def _send_queue_output(self, binding: dict[str, Any], trigger: TriggerInput, value: Any) -> None:
        queue_name = substitute_expressions(
            str(binding["queueName"]), trigger.binding_data, where=f"queue output {binding['name']}"
        ).lower()
        client = storage.queue_service(resolve_connection(binding.get("connection"))).get_queue_client(queue_name)
        # The host creates a missing output queue on first use.
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
        for text in _queue_texts(value):
            client.send_message(storage.encode_message(text, self.queues.message_encoding))

    def _log(
        self,
        spec: FunctionSpec,
        trigger: TriggerInput,
        invocation_id: str,
        duration_ms: float,
        error: Exception | None,
    ) -> None:
        outcome = "Failed" if error else "Succeeded"
        line = (
            f"Executed 'Functions.{spec.name}' ({outcome}, Id={invocation_id}, Duration={duration_ms:.0f}ms) "
            f"trigger={spec.trigger_type} {trigger.detail}"
        ).rstrip()
        if error is None:
            log.info(line)
        else:
            log.error(line, exc_info=(type(error), error, error.__traceback__))

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
