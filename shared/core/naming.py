"""Deterministic names and keys: the same input always gives the same name, so every retry lands in the same place."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import uuid

from shared.models import EventType

#: Blobs, rows and messages the health check writes and deletes at once; intake never takes them for input.
HEALTH_PROBE_PREFIX = "_dropscore-health"
_NAMESPACE = uuid.UUID("6f1d2a52-8d3c-4f0e-9a57-3c1b0d9e5a41")
_JOB_KEY_LENGTH = 40
_JOB_KEY = re.compile(rf"[0-9a-f]{{{_JOB_KEY_LENGTH}}}")


def unquote_etag(etag: str) -> str:
    """ETags arrive quoted (SDKs) and unquoted (some events); compare them unquoted."""
    return etag.strip().strip('"')


def job_key(account: str, container: str, name: str, etag: str) -> str:
    """The ledger key of one blob version: a hash, since Table keys forbid '/' and other path characters."""
    text = f"{account}/{container}/{name}\n{unquote_etag(etag)}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_JOB_KEY_LENGTH]


def is_job_key(text: str) -> bool:
    """True for text shaped like a `job_key` (what the HTTP API accepts as a job id)."""
    return _JOB_KEY.fullmatch(text) is not None


def aml_job_name(job_id: str, attempt: int) -> str:
    """Deterministic Azure ML job name: a repeated POST for the same attempt names the same job."""
    return f"dropscore-{job_id[:32]}-{attempt}"


_AML_JOB_NAME = re.compile(r"dropscore-([0-9a-f]{32})-([0-9]+)")


def key_prefix_of(aml_name: str) -> str | None:
    """The job-key prefix an `aml_job_name` carries; None for a name that is not ours."""
    match = _AML_JOB_NAME.fullmatch(aml_name)
    return match.group(1) if match else None


def repeatability_id(job_id: str, attempt: int) -> str:
    """The same `repeatability_request-id` for every POST of one attempt, as the SDK does on resend."""
    return str(uuid.uuid5(_NAMESPACE, f"{job_id}/{attempt}"))


def aml_output_path(prefix: str, job_id: str, attempt: int) -> str:
    """Where Azure ML writes this attempt's predictions; unique per attempt since AML never overwrites."""
    return f"{prefix}/{job_id}/{attempt}/predictions.csv"


def datastore_uri(datastore: str, path: str) -> str:
    return f"azureml://datastores/{datastore}/paths/{path}"


def predictions_name(input_name: str) -> str:
    """The predictions file sits next to the input's path in the output container."""
    return f"{input_name}.predictions.csv"


def reason_name(input_name: str) -> str:
    return f"{input_name}.reason.json"


def drift_report_name(input_name: str) -> str:
    """The drift report sits beside the predictions in the output container (overwritten by a re-run)."""
    return f"{input_name}.drift.json"


def event_id(job_id: str, event_type: EventType | str, attempt: int) -> str:
    """Deterministic per job, attempt and type, so subscribers can drop duplicates."""
    suffix = str(event_type).rsplit(".", 1)[-1]
    return f"{job_id}-{attempt}-{suffix}"


def blob_subject(container: str, name: str) -> str:
    """Azure's own BlobCreated subject convention, so subscribers filter the same way."""
    return f"/blobServices/default/containers/{container}/blobs/{name}"


def completion_message(job_id: str) -> str:
    return json.dumps({"jobId": job_id})


def parse_completion_message(body: str) -> str:
    """The job id in a completion message; ValueError for anything else."""
    try:
        message = json.loads(body)
    except json.JSONDecodeError:
        message = None
    if not isinstance(message, dict) or not isinstance(message.get("jobId"), str) or not message["jobId"]:
        raise ValueError('a completion message is {"jobId": "<id>"}')
    return str(message["jobId"])


#: The rejection code of an input whose name cannot be used.
BAD_NAME = "BadName"
#: Azure's limit for a blob name; every name we derive from an input must fit too.
MAX_BLOB_NAME = 1024
#: A file name's limit on the Linux compute that mounts the input (ext4 and most others: 255 bytes).
MAX_SEGMENT_BYTES = 255
_LONGEST_SUFFIX = max(len(predictions_name("")), len(reason_name("")), len(drift_report_name("")))
#: Unicode's bidirectional controls: they make a name display differently from what it is.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def name_problem(name: str) -> str | None:
    """Why an input's name cannot be used (dot segments, control or bidi characters, too long), or None."""
    if any(segment in {"", ".", ".."} for segment in name.split("/")):
        return "it has an empty, '.' or '..' path segment"
    if any(unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS for char in name):
        return "it holds a control or bidirectional-override character"
    longest = max(len(segment.encode("utf-8")) for segment in name.split("/"))
    if longest > MAX_SEGMENT_BYTES:
        return (
            f"a path segment is {longest} bytes; Azure ML's compute mounts inputs as files, whose names "
            f"may have at most {MAX_SEGMENT_BYTES} bytes"
        )
    if len(name) + _LONGEST_SUFFIX > MAX_BLOB_NAME:
        return (
            f"it is {len(name)} characters long; names derived from it (+{_LONGEST_SUFFIX}) would pass "
            f"Azure's {MAX_BLOB_NAME}-character limit"
        )
    return None


def is_health_probe(name: str) -> bool:
    """Only the health check's own folder: `_dropscore-healthy.csv` is an ordinary input."""
    return name.startswith(HEALTH_PROBE_PREFIX + "/")
