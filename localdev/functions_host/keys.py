"""Host keys from a local JSON file: master key, host-level function keys, per-function keys, and the
system keys of the extension webhooks."""

from __future__ import annotations

import enum
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The system keys the Azure Functions host creates for its extensions' webhooks (`code=` on
#: `/runtime/webhooks/eventgrid` and `/runtime/webhooks/blobs`); each opens only its own webhook.
EVENTGRID_EXTENSION_KEY = "eventgrid_extension"
BLOBS_EXTENSION_KEY = "blobs_extension"
SYSTEM_KEY_NAMES = (EVENTGRID_EXTENSION_KEY, BLOBS_EXTENSION_KEY)


class KeysFile(enum.Enum):
    """What `load_or_create_keys` did to the file (its path is logged; its keys never are)."""

    CREATED = "Created"
    UPDATED = "Added the missing system keys to"
    READ = "Using"


@dataclass(frozen=True)
class HostKeys:
    """Parsed keys file; see docs/functions-dev-host.md for its JSON shape."""

    master_key: str
    function_keys: dict[str, str] = field(default_factory=dict)
    per_function: dict[str, dict[str, str]] = field(default_factory=dict)
    system_keys: dict[str, str] = field(default_factory=dict)

    def is_master(self, key: str | None) -> bool:
        return bool(key) and hmac.compare_digest(str(key), self.master_key)

    def allows_function(self, function_name: str, key: str | None) -> bool:
        """FUNCTION level: any host function key, a key of that function, or the master key."""
        if not key:
            return False
        candidates = [*self.function_keys.values(), *self.per_function.get(function_name, {}).values()]
        return self.is_master(key) or any(hmac.compare_digest(str(key), c) for c in candidates)

    def allows_system(self, system_key_name: str, key: str | None) -> bool:
        """An extension webhook: that extension's system key, or the master key (as in Azure)."""
        if not key:
            return False
        expected = self.system_keys.get(system_key_name)
        return self.is_master(key) or (expected is not None and hmac.compare_digest(str(key), expected))


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
        system_keys={str(k): str(v) for k, v in (doc.get("systemKeys") or {}).items()},
    )


def _new_key() -> str:
    return secrets.token_urlsafe(32)


def _write_private(path: Path, doc: dict[str, Any]) -> None:
    """Write the file readable by its owner only; a replacement appears whole (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, indent=2)
    temp.replace(path)


def load_or_create_keys(path: Path) -> tuple[HostKeys, KeysFile]:
    """Read the keys file, or write a new one (mode 0600) with a fresh master key, a default function key
    and the system keys. A file from before the system keys gets them added, as the host adds an
    extension's system key the first time the extension loads."""
    if not path.is_file():
        doc: dict[str, Any] = {
            "masterKey": _new_key(),
            "functionKeys": {"default": _new_key()},
            "systemKeys": {name: _new_key() for name in SYSTEM_KEY_NAMES},
        }
        _write_private(path, doc)
        return _from_doc(doc, path), KeysFile.CREATED
    doc = json.loads(path.read_text(encoding="utf-8"))
    keys = _from_doc(doc, path)
    missing = [name for name in SYSTEM_KEY_NAMES if not keys.system_keys.get(name)]
    if not missing:
        return keys, KeysFile.READ
    doc["systemKeys"] = {**(doc.get("systemKeys") or {}), **{name: _new_key() for name in missing}}
    _write_private(path, doc)
    return _from_doc(doc, path), KeysFile.UPDATED
