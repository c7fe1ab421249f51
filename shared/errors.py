"""One error tree for the whole app.

TransientError: worth retrying later (throttling, outages, races). PermanentError: retrying
cannot help (bad input, missing rights, a rejected request). Callers branch on these two
classes, never on SDK exceptions, which the adapters translate at the boundary.
"""

from __future__ import annotations


class DropScoreError(Exception):
    """Base of every error the app raises on purpose."""

    code = "DropScoreError"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigError(DropScoreError):
    """One or more app settings are missing or invalid; the message lists all of them."""

    code = "ConfigError"

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("Invalid app settings: " + "; ".join(problems))


class TransientError(DropScoreError):
    """Try again later; nothing is known to be wrong with the request itself."""

    code = "Transient"


class EventTooEarly(TransientError):
    """An Azure ML run event for a job whose POST's answer is not recorded yet: deliver the event again later."""

    code = "EventTooEarly"


class PermanentError(DropScoreError):
    """Retrying the same request cannot succeed."""

    code = "Permanent"


class InputInvalid(PermanentError):
    """The input CSV failed validation; `code` names the rule, the message says what to fix."""


class ScoringUnavailable(TransientError):
    """The batch endpoint answered 408/429/5xx after our retries, or did not answer.

    `ambiguous` is True when the request may have reached the service (timeout, dropped
    connection): a POST in that state may have created a job, so it must not be re-sent blindly.
    """

    code = "ScoringUnavailable"

    def __init__(self, message: str, *, ambiguous: bool) -> None:
        super().__init__(message)
        self.ambiguous = ambiguous


class ScoringAuthError(PermanentError):
    """401/403 from the batch endpoint: the identity lacks a token or a role."""

    code = "ScoringAuthorization"


class ScoringRequestError(PermanentError):
    """The batch endpoint rejected the request (400 and other 4xx); the service's message is kept."""

    code = "ScoringRequestRejected"


class JobNameTaken(PermanentError):
    """409 on invoke: a job with our deterministic name already exists (a previous POST landed)."""

    code = "JobNameTaken"


class RemoteJobNotFound(PermanentError):
    code = "RemoteJobNotFound"


class BlobMissing(PermanentError):
    code = "BlobMissing"


class BlobChanged(PermanentError):
    """The blob was overwritten after the trigger fired; its new version has a trigger of its own."""

    code = "BlobChanged"


class StorageAuthError(PermanentError):
    """401/403 from Blob, Table or Queue storage: the identity lacks a data role."""

    code = "StorageAuthorization"


class StorageRequestError(PermanentError):
    """Storage rejected a request (a 4xx other than the outcomes each adapter expects)."""

    code = "StorageRequestRejected"


class ResourceMissing(PermanentError):
    """A container, table, queue, deployment, datastore or subscription the settings name does not exist."""

    code = "ResourceMissing"


class AccessDenied(PermanentError):
    """401/403 from Azure Resource Manager: the identity may not read that resource."""

    code = "AccessDenied"


class ModelSchemaUnavailable(PermanentError):
    """The model's input columns cannot be known (REQUIRED_COLUMNS=auto): no usable MLflow signature, a model
    kept somewhere we cannot read, or a deployment without a model. The message says which."""

    code = "ModelSchemaUnavailable"


class ReferenceInvalid(PermanentError):
    """A drift reference profile that cannot be used (not JSON, not a profile, bins that make no sense). The job
    still completes: its drift report says why nothing was compared."""

    code = "ReferenceInvalid"


class BlobExists(PermanentError):
    """A write that must not replace anything (If-None-Match: *) found a blob at the name."""

    code = "BlobExists"


class Conflict(PermanentError):
    """An operator's action does not fit the job as it is now (HTTP 409); `code` names why, `state` is the job's."""

    code = "Conflict"

    def __init__(self, message: str, *, state: str) -> None:
        super().__init__(message)
        self.state = state


class JobActive(Conflict):
    """The job is still being worked on (scored, filed): redrive it once it has ended and been filed."""

    code = "JobActive"


class WrongState(Conflict):
    """The action cannot apply to a job in this state (cancel a finished job, redrive a completed one)."""

    code = "WrongState"


class InputGone(Conflict):
    """A redrive's input is not where the job filed it (never filed, deleted, or replaced since)."""

    code = "InputGone"


class InputNameTaken(Conflict):
    """A redrive would copy the input back to its name, but another blob is there now (a newer upload)."""

    code = "InputNameTaken"


class TopicAuthError(PermanentError):
    """401/403 from the Event Grid topic: the identity may not publish there."""

    code = "EventGridAuthorization"


class StaleJob(TransientError):
    """An ETag-conditional ledger write lost a race (HTTP 412): reload and decide again."""

    code = "StaleJob"


class JobExists(DropScoreError):
    """Insert-only creation found the row already there (a duplicate trigger)."""

    code = "JobExists"
