"""Routes: input folders, each scored by its own Azure ML batch endpoint (the ROUTES setting).

ROUTES is JSON text, a list of at most 50 routes (camelCase keys; shared/routes.schema.json is the contract)::

    [{"name": "diamonds", "prefix": "diamonds/",
      "endpointUri": "https://diamonds-ep.westeurope.inference.ml.azure.com/jobs",
      "endpointName": "diamonds-ep", "deployment": "blue",
      "requiredColumns": "auto" | "carat,cut" | ["carat", "cut"],
      "shardThresholdMb": 256, "shardPartMb": 32, "maxJobsInFlight": 20,
      "driftReference": "references/diamonds.json" | ""}]

Only name, prefix and endpointUri are required. Omitted options inherit the default route's (today's settings:
REQUIRED_COLUMNS, SHARD_THRESHOLD_MB, SHARD_PART_MB, MAX_JOBS_IN_FLIGHT, DRIFT_REFERENCE), except `deployment`:
omitted (or null) means the route's endpoint's default deployment, because BATCH_DEPLOYMENT names a deployment of
another endpoint. `endpointName` (for the ARM reads of requiredColumns "auto", and cancel) is read from an Azure
scoring URI's host when omitted. An input blob takes the route with the longest prefix its name starts with
(case-sensitive, like blob names), so nested prefixes ("a/" and "a/b/") are fine; a name under no prefix takes the
default route, which is built from BATCH_ENDPOINT_URI and friends, so an app without ROUTES behaves as before.

Pure: `parse_routes` reads nothing but the packaged schema, and imports jsonschema only when ROUTES is set.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from shared import settingvalues as values
from shared.redaction import shown_value

KEY = "ROUTES"
DEFAULT_NAME = "default"
SCHEMA_PATH = Path(__file__).with_name("routes.schema.json")
_AZURE_SCORING_HOST_SUFFIX = ".inference.ml.azure.com"


@dataclass(frozen=True, kw_only=True)
class Route:
    name: str  # DEFAULT_NAME for the default route; others match ^[a-z0-9][a-z0-9-]{0,31}$
    prefix: str  # "" for the default route; others a folder ending with "/", without a leading "/"
    endpoint_uri: str  # the batch endpoint's scoring URI (ends with /jobs)
    deployment: str | None  # None: the endpoint's default deployment
    required_columns: tuple[str, ...]
    discover_required_columns: bool  # requiredColumns "auto"
    shard_threshold_mb: int
    shard_part_mb: int
    max_jobs_in_flight: int
    endpoint_name: str | None  # for ARM (auto columns, cancel): given, or read from an Azure scoring URI's host
    drift_reference: str = ""  # `container/path` of the reference profile ("": no drift report)


@dataclass(frozen=True)
class Routes:
    default: Route
    others: tuple[Route, ...] = ()

    def for_input(self, name: str) -> Route:
        """The route of a blob name (its path inside the input container): the longest matching prefix wins."""
        matching = [route for route in self.others if name.startswith(route.prefix)]
        return max(matching, key=lambda route: len(route.prefix), default=self.default)

    def by_name(self, name: str) -> Route | None:
        return next((route for route in self.all if name and route.name == name), None)

    @property
    def all(self) -> tuple[Route, ...]:
        return (self.default, *self.others)


def endpoint_name_from_uri(uri: str) -> str | None:
    """In Azure the endpoint's name is the first label of its scoring URI's host (`<name>.<region>.inference...`)."""
    host = (urlsplit(uri.strip()).hostname or "").lower()
    return host.split(".", 1)[0] if host.endswith(_AZURE_SCORING_HOST_SUFFIX) else None


def parse_routes(text: str | None, *, default: Route) -> tuple[Routes, list[str]]:
    """(routes, problems): each problem is a `ROUTES...: ...` line, every one found at once, for the caller's
    ConfigError; with any problem, routes is the default route alone. Unset or blank ROUTES: the default alone."""
    only_default = Routes(default)
    if text is None or not text.strip():
        return only_default, []
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:  # its message never quotes the text
        return only_default, [f"{KEY}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"]
    problems: list[str] = []
    invalid_fields: set[tuple[int | str, ...]] = set()  # (route index, key): checked no further
    for error in _schema_errors(document):
        problems.extend(_schema_problems(error))
        invalid_fields.add(tuple(error.absolute_path)[:2])
    routes: list[Route] = []
    claims: list[tuple[str, str | None, str | None]] = []  # (where, name, prefix) for the clash checks
    for index, item in enumerate(document if isinstance(document, list) else []):
        if isinstance(item, dict):
            usable = {key: value for key, value in item.items() if (index, key) not in invalid_fields}
            route, claim = _route(f"{KEY}[{index}]", usable, default=default, problems=problems)
            routes.extend([route] if route else [])
            claims.append(claim)
    problems.extend(_clashes(claims))
    problems = list(dict.fromkeys(problems))  # once each (jsonschema reports `required` once per missing key)
    return (only_default, problems) if problems else (Routes(default, tuple(routes)), [])


def _route(
    where: str, item: Mapping[str, Any], *, default: Route, problems: list[str]
) -> tuple[Route | None, tuple[str, str | None, str | None]]:
    """One ROUTES item (its structurally valid keys) as a Route, or None after adding its problems to `problems`;
    and its (where, name, prefix) claim for the clash checks."""
    found = len(problems)
    name = item.get("name")
    prefix = _prefix(f"{where}.prefix", item.get("prefix"), problems)
    uri = _endpoint_uri(f"{where}.endpointUri", item.get("endpointUri"), problems)
    columns, discover = default.required_columns, default.discover_required_columns
    if "requiredColumns" in item:
        columns, discover = _columns(f"{where}.requiredColumns", item["requiredColumns"], problems)
    endpoint_name = item.get("endpointName") or (endpoint_name_from_uri(uri) if uri else None)
    if not endpoint_name and uri and uri == default.endpoint_uri:  # the default's endpoint: its name too
        endpoint_name = default.endpoint_name
    if discover and uri and not endpoint_name:
        inherited = "" if "requiredColumns" in item else " (inherited from REQUIRED_COLUMNS)"
        problems.append(
            f"{where}.requiredColumns: route {name if isinstance(name, str) else where!r} uses auto{inherited}, "
            "which reads the deployment's model through Azure ML's ARM API: set endpointName (the endpoint's "
            "scoring URI is not an Azure one its name can be read from)"
        )
    claim = (where, name if isinstance(name, str) else None, prefix)
    if len(problems) > found or not (isinstance(name, str) and prefix and uri):
        return None, claim
    route = Route(
        name=name,
        prefix=prefix,
        endpoint_uri=uri,
        deployment=item.get("deployment"),
        required_columns=columns,
        discover_required_columns=discover,
        shard_threshold_mb=int(item.get("shardThresholdMb", default.shard_threshold_mb)),
        shard_part_mb=int(item.get("shardPartMb", default.shard_part_mb)),
        max_jobs_in_flight=int(item.get("maxJobsInFlight", default.max_jobs_in_flight)),
        endpoint_name=endpoint_name,
        drift_reference=_drift_reference(f"{where}.driftReference", item, default=default, problems=problems),
    )
    return route, claim


def _drift_reference(where: str, item: Mapping[str, Any], *, default: Route, problems: list[str]) -> str:
    """The route's reference profile: its own (`""`: none for this route), else DRIFT_REFERENCE's."""
    raw = item.get("driftReference")
    if not isinstance(raw, str):
        return default.drift_reference
    try:
        return values.blob_path(raw.strip())
    except values.Invalid as exc:
        problems.append(f"{where}: {exc.template.format(value=shown_value(KEY, exc.value))}")
        return ""


def _prefix(where: str, raw: object, problems: list[str]) -> str | None:
    """A folder prefix as blob names start: no leading "/", one trailing "/" (added when missing)."""
    if not isinstance(raw, str):
        return None
    folder = raw.strip("/")
    if not folder:
        problems.append(f"{where}: {shown_value(KEY, raw)} is the default route's place; name a folder")
    elif any(segment in {"", ".", ".."} for segment in folder.split("/")):
        problems.append(f"{where}: {shown_value(KEY, raw)} has an empty, '.' or '..' segment")
    else:
        return folder + "/"
    return None


def _endpoint_uri(where: str, raw: object, problems: list[str]) -> str | None:
    if not isinstance(raw, str):
        return None
    parts = urlsplit(raw.strip())
    if parts.query or parts.fragment or "@" in parts.netloc:
        problems.append(
            f"{where}: {shown_value(KEY, raw)} must not carry a query string, fragment or user info "
            "(no key or SAS belongs in ROUTES: the app calls Azure ML with its managed identity)"
        )
        return None
    try:
        return values.scoring_uri(raw.strip())
    except values.Invalid as exc:
        problems.append(f"{where}: {exc.template.format(value=shown_value(KEY, exc.value))}")
        return None


def _columns(where: str, raw: str | list[str], problems: list[str]) -> tuple[tuple[str, ...], bool]:
    """(required columns, discover them): "auto", "a,b" as REQUIRED_COLUMNS reads it, or ["a", "b"]."""
    if isinstance(raw, list):
        return tuple(column.strip() for column in raw), False
    try:
        return values.column_list(raw), values.is_auto(raw)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return (), False


def _clashes(claims: Sequence[tuple[str, str | None, str | None]]) -> list[str]:
    """A reserved or repeated name, and one prefix claimed twice (which endpoint would score those blobs?)."""
    problems = []
    for index, (where, name, prefix) in enumerate(claims):
        if name == DEFAULT_NAME:
            problems.append(f"{where}.name: {DEFAULT_NAME!r} is reserved for the default route (BATCH_ENDPOINT_URI)")
        for earlier_where, earlier_name, earlier_prefix in claims[:index]:
            if name is not None and name == earlier_name:
                problems.append(f"{where}.name: {name!r} is already the name of {earlier_where}")
            if prefix is not None and prefix == earlier_prefix:
                problems.append(
                    f"{KEY}: routes {earlier_name or earlier_where!r} and {name or where!r} both claim prefix "
                    f"{shown_value(KEY, prefix)}"
                )
    return problems


# ---- structural validation (jsonschema) --------------------------------------------------------------------


class _SchemaError(Protocol):
    """What we read of a jsonschema ValidationError (jsonschema ships no type hints)."""

    validator: str
    validator_value: Any
    instance: Any
    schema: Mapping[str, Any]
    absolute_path: Sequence[str | int]


def _schema_errors(document: object) -> list[_SchemaError]:
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # lazy: import time is budgeted

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return list(Draft202012Validator(schema).iter_errors(document))  # in order: routes, then keys as the schema


_JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int, "number": float}
_A = {"object": "an object", "array": "an array", "integer": "an integer", "null": "null"}


def _a(json_type: str) -> str:
    return _A.get(json_type, f"a {json_type}")


def _json_type_of(value: object) -> str:
    return next((name for name, kind in _JSON_TYPES.items() if type(value) is kind), "null")


def _schema_problems(error: _SchemaError) -> list[str]:
    """jsonschema's own messages quote the value (maybe a whole route, SAS and all): say what is wrong ourselves."""
    where = KEY + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path)
    rule, expected, value, known = error.validator, error.validator_value, error.instance, error.schema
    if rule == "type":
        wanted = " or ".join(_a(kind) for kind in ([expected] if isinstance(expected, str) else expected))
        return [f"{where}: must be {wanted}, not {_a(_json_type_of(value))}"]
    if rule == "required":
        return [f"{where}.{key}: missing (required)" for key in expected if key not in value]
    if rule == "additionalProperties":
        allowed = known.get("properties", {})
        return [
            f"{where}: unknown key {shown_value(KEY, key)} (known: {', '.join(allowed)})"
            for key in value
            if key not in allowed
        ]
    if rule in {"minimum", "maximum"}:
        return [f"{where}: {value} is outside {known['minimum']}..{known['maximum']}"]
    if rule == "maxItems" and where == KEY:
        return [f"{KEY}: {len(value)} routes, at most {expected} allowed"]
    messages = {
        "pattern": f"{shown_value(KEY, str(value))} is not allowed",
        "minLength": "must not be empty",
        "maxLength": f"is longer than {expected} characters",
        "maxItems": f"lists more than {expected} items",
        "uniqueItems": "lists a column twice",
    }
    what = messages.get(rule, f"breaks the schema rule {rule!r}")
    description = known.get("description")
    return [f"{where}: {what}: {description}" if description and rule == "pattern" else f"{where}: {what}"]
