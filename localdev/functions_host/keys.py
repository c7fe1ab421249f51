"""Host keys from a local JSON file: master key, host-level function keys and per-function keys."""

from __future__ import annotations

import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class HostKeys:
    """Parsed keys file; see docs/functions-dev-host.md for its JSON shape."""

    master_key: str
    function_keys: dict[str, str] = field(default_factory=dict)
    per_function: dict[str, dict[str, str]] = field(default_factory=dict)

    def is_master(self, key: str | None) -> bool:
        return bool(key) and hmac.compare_digest(str(key), self.master_key)

    def allows_function(self, function_name: str, key: str | None) -> bool:
        """FUNCTION level: any host function key, a key of that function, or the master key."""
        if not key:
            return False
        candidates = [*self.function_keys.values(), *self.per_function.get(function_name, {}).values()]
        return self.is_master(key) or any(hmac.compare_digest(str(key), c) for c in candidates)


def _from_doc(doc: dict[str, Any], path: Path) -> HostKeys:
    master = doc.get("masterKey")
    if not isinstance(master, str) or not master:
        raise ValueError(f"{path}: masterKey is missing or empty")
    return HostKeys(
        master_key=master,
        function_keys={str(k): str(v) for k, v in (doc.get("functionKeys") or {}).items()},
        per_function={
            str(fn): {str(k): str(v) for k, v in keys.items()} for fn, keys in (doc.get("functions") or {}).items()
        },
    )


def load_or_create_keys(path: Path) -> tuple[HostKeys, bool]:
    """Read the keys file, or write a new one (mode 0600) with a fresh master and default function key."""
    if path.is_file():
        return _from_doc(json.loads(path.read_text(encoding="utf-8")), path), False
    doc = {"masterKey": secrets.token_urlsafe(32), "functionKeys": {"default": secrets.token_urlsafe(32)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, indent=2)
    return _from_doc(doc, path), True
