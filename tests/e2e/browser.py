"""What the browser tests share: Debian's chromium, or a clear skip (a failure under CI=true)."""

from __future__ import annotations

import os
import shutil

import pytest


def chromium_or_skip() -> str:
    """The path of Debian's `chromium`, which Playwright drives (it never downloads a browser here)."""
    path = shutil.which("chromium")
    if path is None:
        reason = "no `chromium` on PATH: Debian's chromium package is what these tests drive (make install adds it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the browser tests")
        pytest.skip(reason)
    return path
