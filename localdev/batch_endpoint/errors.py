"""ARM-style errors: `{"error": {"code": ..., "message": ...}}` with an HTTP status."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the HTTP layer turns into an ARM-style JSON body."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def validation_error(message: str) -> ApiError:
    return ApiError(400, "UserError", message)


# The text Azure answers a UriFolder output with (contract doc §7, issues i1/i2).
OUTPUT_TYPE_MESSAGE = (
    "The Job request provided has the following validation errors. Please resolve them and try again.\n"
    "Errors:\n"
    '[{"PropertyName":"OutputData.Values[0].JobOutputType","ErrorMessage":"Job output type must be '
    '\'uri_file\'.","AttemptedValue":"uri_folder","ErrorCode":"PredicateValidator"}]'
)

NO_DEPLOYMENT_MESSAGE = (
    "No valid deployments to route to. Please check that the endpoint has at least one deployment with "
    "positive weight values or use a deployment specific header to route."
)


class JobCanceledError(Exception):
    """The job saw its cancel event."""


class JobFailedError(Exception):
    """The job ends Failed with this message in properties.error."""
