"""Event Grid's error responses for the publish endpoint."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


class PublishError(Exception):
    """A rejected publish request: HTTP status, Event Grid error code and message."""

    def __init__(self, status: int, code: str, message: str, detail_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail_code = detail_code

    def body(self) -> dict[str, object]:
        """The `{"error": {...}}` body, with the report id Event Grid appends to every message."""
        now = datetime.now(UTC).strftime("%m/%d/%Y %I:%M:%S %p")
        message = (
            f"{self.message} Report '{uuid.uuid4()}:0:{now} (UTC)' to our forums for assistance "
            "or raise a support ticket."
        )
        error: dict[str, object] = {"code": self.code, "message": message}
        if self.detail_code:
            error["details"] = [{"code": self.detail_code, "message": message}]
        return {"error": error}


def bad_request(message: str, detail_code: str = "InputJsonInvalid") -> PublishError:
    return PublishError(400, "BadRequest", message, detail_code)


def unauthorized(message: str) -> PublishError:
    return PublishError(401, "Unauthorized", message)


def too_large(message: str) -> PublishError:
    return PublishError(413, "RequestEntityTooLarge", message, "RequestEntityTooLarge")
