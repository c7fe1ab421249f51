"""Import a v2 `function_app.py`, index it once with `get_functions()`, and describe each function."""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

from localdev.functions_host.sdk_bindings import SUPPORTS_DEFERRED_BINDING, annotation_problem, is_sdk_type
from localdev.functions_host.settings import SettingsError, is_disabled, resolve_binding_settings

log = logging.getLogger("functions_host")

TRIGGER_TYPES = frozenset({"blobTrigger", "queueTrigger", "timerTrigger", "httpTrigger", "eventGridTrigger"})
# Output bindings the invoker writes; any other binding gets a clear "unsupported" warning at startup.
SUPPORTED_OUTPUTS = frozenset({"queue", "http"})


class IndexingError(RuntimeError):
    """The app could not be imported or indexed at all (the host cannot start)."""


@dataclass
class FunctionSpec:
    """One indexed function: its bindings (with `%Setting%` resolved) and how to call it."""

    name: str
    trigger: dict[str, Any]
    bindings: list[dict[str, Any]]
    user_function: Callable[..., Any]
    is_async: bool
    parameters: tuple[str, ...]
    annotations: dict[str, Any]
    disabled: bool = False
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    @property
    def function_id(self) -> str:
        """The id the WebJobs host gives script functions (receipts, poison messages, webhooks)."""
        return f"Host.Functions.{self.name}"

    @property
    def runnable(self) -> bool:
        return not self.disabled and not self.errors

    def is_deferred(self, binding: dict[str, Any]) -> bool:
        """An SDK-type binding: the host sends model binding data instead of the data (sdk_bindings.py)."""
        return bool((binding.get("properties") or {}).get(SUPPORTS_DEFERRED_BINDING))

    def output_bindings(self) -> list[dict[str, Any]]:
        return [b for b in self.bindings if str(b.get("direction", "")).upper() == "OUT"]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.function_id,
            "trigger": self.trigger_type,
            "bindings": self.bindings,
            "isDisabled": self.disabled,
            "isAsync": self.is_async,
            "errors": self.errors,
            "warnings": self.warnings,
        }


def import_app_module(app_dir: Path, script_file: str = "function_app.py") -> Any:
    """Import the app's script the way the worker does: by module name, with the app dir on sys.path."""
    script = app_dir / script_file
    if not script.is_file():
        raise IndexingError(f"{script} does not exist")
    sys.path.insert(0, str(app_dir))
    module_name = script.stem
    spec = importlib.util.spec_from_file_location(module_name, script)
    if spec is None or spec.loader is None:
        raise IndexingError(f"cannot import {script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise IndexingError(
            f"importing {script} failed: {exc!r}; check that requirements.txt is installed in this venv"
        ) from exc
    return module


def find_function_app(module: Any) -> func.FunctionRegister:
    apps = [value for value in vars(module).values() if isinstance(value, func.FunctionRegister)]
    if not apps:
        raise IndexingError("Could not find top level function app instances in function_app.py")
    if len(apps) > 1:
        raise IndexingError("Multiple top level function app instances are defined in function_app.py")
    return apps[0]


def _normalise_binding(raw: dict[str, Any]) -> dict[str, Any]:
    binding = dict(raw)
    binding["direction"] = str(binding.get("direction", "IN")).upper()
    return binding


def _check_parameters(spec: FunctionSpec) -> None:
    """The worker's load checks that matter at run time: every parameter is a binding and vice versa."""
    names = {b["name"] for b in spec.bindings if b["name"] != "$return"}
    params = set(spec.parameters) - {"context"}
    for missing in sorted(params - names):
        spec.errors.append(f"parameter {missing!r} is not declared as a binding")
    for missing in sorted(names - params):
        spec.errors.append(f"binding {missing!r} has no parameter in the function")


def build_spec(function: func.Function) -> FunctionSpec:
    name = function.get_function_name()
    user_function = function.get_user_function()
    raw_bindings = json.loads(function.get_function_json())["bindings"]
    errors: list[str] = []
    bindings: list[dict[str, Any]] = []
    for raw in raw_bindings:
        binding = _normalise_binding(raw)
        try:
            binding = resolve_binding_settings(binding, where=f"{name}.{binding['name']}")
        except SettingsError as exc:
            errors.append(str(exc))
        bindings.append(binding)
    triggers = [b for b in bindings if str(b["type"]).endswith("Trigger")]
    signature = inspect.signature(user_function)
    try:
        annotations = typing.get_type_hints(user_function)
    except Exception:
        annotations = {p.name: p.annotation for p in signature.parameters.values()}
    spec = FunctionSpec(
        name=name,
        trigger=triggers[0],
        bindings=bindings,
        user_function=user_function,
        is_async=inspect.iscoroutinefunction(user_function),
        parameters=tuple(signature.parameters),
        annotations=annotations,
        disabled=is_disabled(name),
        errors=errors,
    )
    if spec.trigger_type not in TRIGGER_TYPES:
        spec.errors.append(f"trigger type {spec.trigger_type!r} is not supported by the local host")
    _mark_deferred_bindings(spec)
    for binding in bindings:
        if binding is spec.trigger:
            continue
        if binding["direction"] == "OUT" and binding["type"] not in SUPPORTED_OUTPUTS:
            spec.warnings.append(
                f"output binding {binding['name']!r} ({binding['type']}) is unsupported: value dropped"
            )
        elif binding["direction"] == "IN":
            spec.warnings.append(f"input binding {binding['name']!r} ({binding['type']}) is unsupported: gets None")
    _check_parameters(spec)
    return spec


def _mark_deferred_bindings(spec: FunctionSpec) -> None:
    """What the worker reports to the host at indexing: `SupportsDeferredBinding` on an input binding whose
    parameter has an SDK type (the extension base's rule); the worker refuses a type its converter rejects.
    Only the trigger gets one here: other input bindings are not supported at all (see build_spec)."""
    annotation = spec.annotations.get(spec.trigger["name"])
    if not is_sdk_type(spec.trigger, annotation):
        return
    problem = annotation_problem(spec.trigger, annotation)
    if problem is not None:
        spec.errors.append(problem)
    else:
        spec.trigger["properties"] = {**(spec.trigger.get("properties") or {}), SUPPORTS_DEFERRED_BINDING: True}


def index_app(app_dir: Path, only: tuple[str, ...] | None = None) -> list[FunctionSpec]:
    """Import and index the app. `get_functions()` is not idempotent, so this is its only call."""
    module = import_app_module(app_dir)
    app = find_function_app(module)
    try:
        functions = app.get_functions()
    except Exception as exc:
        raise IndexingError(f"indexing failed: {exc!r}") from exc
    specs = [build_spec(function) for function in functions]
    if only is not None:
        wanted = set(only)
        specs = [spec for spec in specs if spec.name in wanted]
    return specs
