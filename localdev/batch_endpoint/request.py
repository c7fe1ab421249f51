"""Parse and validate an invoke body the way the batch endpoint does (contract doc §3)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from localdev.batch_endpoint.errors import OUTPUT_TYPE_MESSAGE, validation_error
from localdev.batch_endpoint.uris import BlobLocation, datastore_location, resolve_uri

INPUT_TYPES = {
    "urifile": "UriFile",
    "urifolder": "UriFolder",
    "uri_file": "UriFile",
    "uri_folder": "UriFolder",
}
OUTPUT_FILE_TYPES = {"urifile", "uri_file"}
DEFAULT_OUTPUT_NAME = "score"
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")
_DURATION = re.compile(r"^P(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)$")


@dataclass
class JobRequest:
    """What a valid invoke asks for, with the echo the job resource carries."""

    name: str | None
    input_type: str
    input_uri: str
    input_location: BlobLocation
    output_location: BlobLocation | None
    output_file_name: str | None
    overrides: dict[str, Any] = field(default_factory=dict)
    input_echo: dict[str, Any] = field(default_factory=dict)
    output_echo: dict[str, Any] = field(default_factory=dict)
    user_properties: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)


def ci_get(mapping: Mapping[str, Any], key: str) -> Any:
    """Property names are matched case-insensitively, as the service does for both spellings."""
    wanted = key.lower()
    for name, value in mapping.items():
        if name.lower() == wanted:
            return value
    return None


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise validation_error(f"'{what}' must be a JSON object.")
    return value


def _int(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise validation_error(f"'{what}' must be an integer.")
    try:
        number = int(value)
    except ValueError:
        raise validation_error(f"'{what}' must be an integer.") from None
    if number < minimum:
        raise validation_error(f"'{what}' must be at least {minimum}.")
    return number


def duration_seconds(value: Any, what: str = "retrySettings.timeout") -> float:
    """ISO-8601 durations (`PT5M`) as the SDK sends them; plain seconds are accepted too."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value.strip().upper())) and value.strip() != "PT":
        seconds = sum(float(match[k] or 0) * mult for k, mult in (("h", 3600), ("m", 60), ("s", 1)))
    else:
        raise validation_error(f"'{what}' must be an ISO-8601 duration such as 'PT30S'.")
    if seconds <= 0:
        raise validation_error(f"'{what}' must be positive.")
    return seconds


def _parse_inputs(props: Mapping[str, Any], datastores: Mapping[str, str]) -> tuple[str, str, dict[str, Any]]:
    input_data = ci_get(props, "inputData")
    if input_data is not None:
        inputs = _object(input_data, "properties.InputData")
        data_inputs: list[tuple[str, dict[str, Any]]] = []
        for name, raw_spec in inputs.items():
            spec = _object(raw_spec, f"properties.InputData.{name}")
            kind = str(ci_get(spec, "jobInputType") or "")
            if kind.lower() == "literal":
                raise validation_error(
                    "Literal inputs are only supported by pipeline component deployments; "
                    "model deployments take exactly one data input."
                )
            data_inputs.append((name, spec))
        if len(data_inputs) != 1:
            raise validation_error(
                f"Model deployments take exactly one input of type UriFile or UriFolder; got {len(data_inputs)}."
            )
        name, spec = data_inputs[0]
        kind = str(ci_get(spec, "jobInputType") or "")
        if kind.lower() not in INPUT_TYPES:
            raise validation_error(
                f"Input type '{kind}' is not supported for model deployments; use UriFile or UriFolder."
            )
        uri = ci_get(spec, "uri")
        resolve_uri(uri, datastores, for_output=False)
        return INPUT_TYPES[kind.lower()], uri, {name: {"jobInputType": INPUT_TYPES[kind.lower()], "uri": uri}}
    dataset = ci_get(props, "dataset")
    if dataset is not None:
        dataset = _object(dataset, "properties.dataset")
        kind = str(ci_get(dataset, "dataInputType") or "")
        if kind.lower() != "dataurl":
            raise validation_error(
                f"Dataset input type '{kind}' is not supported by the emulator; use DataUrl with a 'Path'."
            )
        uri = ci_get(dataset, "path")
        resolve_uri(uri, datastores, for_output=False)
        # A legacy DataUrl names a folder unless it points at something that looks like a file.
        input_type = "UriFile" if re.search(r"\.[A-Za-z0-9]+$", str(uri).rstrip("/")) else "UriFolder"
        return input_type, uri, {"input": {"jobInputType": input_type, "uri": uri}}
    raise validation_error("The job must have exactly one input: properties.InputData or properties.dataset.")


def _parse_output(
    props: Mapping[str, Any], datastores: Mapping[str, str], file_name: str | None
) -> tuple[BlobLocation | None, dict[str, Any]]:
    output_data = ci_get(props, "outputData")
    if output_data is not None:
        outputs = _object(output_data, "properties.OutputData")
        if len(outputs) != 1:
            raise validation_error(f"Model deployments take exactly one output; got {len(outputs)}.")
        name, spec = next(iter(outputs.items()))
        spec = _object(spec, f"properties.OutputData.{name}")
        kind = str(ci_get(spec, "jobOutputType") or "")
        if kind.lower() not in OUTPUT_FILE_TYPES:
            raise validation_error(OUTPUT_TYPE_MESSAGE)
        uri = ci_get(spec, "uri")
        location = resolve_uri(uri, datastores, for_output=True)
        return location, {name: {"jobOutputType": "UriFile", "uri": uri}}
    output_dataset = ci_get(props, "outputDataset")
    if output_dataset is not None:
        output_dataset = _object(output_dataset, "properties.outputDataset")
        datastore_id = str(ci_get(output_dataset, "datastoreId") or "")
        datastore = datastore_id.rstrip("/").rsplit("/", 1)[-1]
        if not datastore:
            raise validation_error("'properties.outputDataset.datastoreId' is required.")
        folder = str(ci_get(output_dataset, "path") or "").strip("/")
        path = f"{folder}/{file_name or 'predictions.csv'}".strip("/")
        location = datastore_location(datastore, path, datastores)
        return location, {DEFAULT_OUTPUT_NAME: {"jobOutputType": "UriFile", "uri": location.as_uri()}}
    return None, {}


def _parse_overrides(props: Mapping[str, Any]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if (value := ci_get(props, "miniBatchSize")) is not None:
        overrides["mini_batch_size"] = _int(value, "miniBatchSize", 1)
    if (value := ci_get(props, "errorThreshold")) is not None:
        overrides["error_threshold"] = _int(value, "errorThreshold", -1)
    if (value := ci_get(props, "maxConcurrencyPerInstance")) is not None:
        overrides["max_concurrency_per_instance"] = _int(value, "maxConcurrencyPerInstance", 1)
    if (compute := ci_get(props, "compute")) is not None:
        compute = _object(compute, "properties.compute")
        if (value := ci_get(compute, "instanceCount")) is not None:
            overrides["instance_count"] = _int(value, "compute.instanceCount", 1)
    if (retry := ci_get(props, "retrySettings")) is not None:
        retry = _object(retry, "properties.retrySettings")
        if (value := ci_get(retry, "maxRetries")) is not None:
            overrides["max_retries"] = _int(value, "retrySettings.maxRetries", 0)
        if (value := ci_get(retry, "timeout")) is not None:
            overrides["timeout"] = duration_seconds(value)
    return overrides


def parse_job_request(body: Any, datastores: Mapping[str, str]) -> JobRequest:
    """Validate an invoke body; raises ApiError (400) for what Azure rejects at invoke."""
    if not isinstance(body, dict):
        raise validation_error("The request body must be a JSON object with a 'properties' object.")
    props = ci_get(body, "properties")
    if not isinstance(props, dict):
        raise validation_error("The request body must be a JSON object with a 'properties' object.")
    name = ci_get(props, "name")
    if name is not None and (not isinstance(name, str) or not _JOB_NAME.match(name)):
        raise validation_error(
            "'properties.name' must start with a letter or digit and contain only letters, digits, '-' and '_'."
        )
    file_name = ci_get(props, "outputFileName")
    if file_name is not None and (not isinstance(file_name, str) or not file_name or "/" in file_name):
        raise validation_error("'properties.outputFileName' must be a file name without '/'.")
    input_type, input_uri, input_echo = _parse_inputs(props, datastores)
    output_location, output_echo = _parse_output(props, datastores, file_name)
    user_properties = ci_get(props, "properties") or {}
    tags = ci_get(props, "tags") or {}
    return JobRequest(
        name=name,
        input_type=input_type,
        input_uri=input_uri,
        input_location=resolve_uri(input_uri, datastores, for_output=False),
        output_location=output_location,
        output_file_name=file_name,
        overrides=_parse_overrides(props),
        input_echo=input_echo,
        output_echo=output_echo,
        user_properties=_object(user_properties, "properties.properties"),
        tags=_object(tags, "properties.tags"),
    )
