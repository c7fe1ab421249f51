"""Translate azure-core transport/service failures into the app's error tree."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

from shared.errors import TransientError

P = ParamSpec("P")
R = TypeVar("R")


def transient_on_outage(func: Callable[P, R]) -> Callable[P, R]:
    """Outages and throttling become TransientError (azure-core has already retried them)."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise TransientError(f"storage unreachable: {type(exc).__name__}") from exc
        except HttpResponseError as exc:
            if exc.status_code is not None and (exc.status_code >= 500 or exc.status_code in {408, 429}):
                raise TransientError(f"storage answered HTTP {exc.status_code}") from exc
            raise

    return wrapper
