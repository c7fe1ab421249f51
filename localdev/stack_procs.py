"""Process identity for the stack: is pid N still the process `up` started, and stop it for good.

A pid alone can be reused after a reboot or a long time; the kernel's start time of the process
(field 22 of /proc/<pid>/stat) is fixed for its whole life, so pid + start time names one process.
Zombies count as stopped: after `up` exits its children are reparented, and not every init reaps.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (the command name in parentheses may hold spaces)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split()


def start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def is_running(pid: int, expected_start: int | None = None) -> bool:
    """True while `pid` exists, is not a zombie, and (when given) started at `expected_start`."""
    fields = _stat_fields(pid)
    if not fields or fields[0] in {"Z", "X"}:
        return False
    return expected_start is None or int(fields[19]) == expected_start


def group_members(pgid: int) -> list[int]:
    """Live processes in process group `pgid` (scoring workers, node children, ...)."""
    members = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and fields[0] not in {"Z", "X"} and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains `text` (the stack directory, in tests)."""
    found = []
    needle = text.encode()
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and is_running(int(entry.name)):
            found.append(int(entry.name))
    return found


def _reap(pid: int) -> None:
    # Our own child (the demo runs the stack in-process) must be waited on or it stays a zombie.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_group(pid: int, timeout: float = 15.0, *, crash: bool = False) -> bool:
    """SIGTERM the process group led by `pid` (each part runs in its own session), SIGKILL what is
    left after `timeout`; with `crash`, SIGKILL at once (`kill -9`: nothing gets to clean up, as in a
    crash). Returns True when nothing of the group is left running."""
    steps = ((signal.SIGKILL, 5.0),) if crash else ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0))
    for sig, wait in steps:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not is_running(pid) and not group_members(pid):
                return True
            time.sleep(0.05)
    return not is_running(pid) and not group_members(pid)
