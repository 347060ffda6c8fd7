"""Make sure tracefs (and, on request, debugfs) are mounted.

BCC reads tracepoint formats from tracefs, and the kernel's own fragmentation
indices live in debugfs (/sys/kernel/debug/extfrag).  Many minimal and
container-style boots mount neither.  Root can mount them; we do it once and
say so, the way perf does.
"""
from __future__ import annotations

import os
import subprocess
from typing import Callable, Optional

TRACEFS = "/sys/kernel/tracing"
DEBUGFS = "/sys/kernel/debug"


def _mounted(path: str, fstype: str, mounts: str = "/proc/self/mounts") -> bool:
    try:
        with open(mounts) as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[1] == path and fields[2] == fstype:
                    return True
    except OSError:
        pass
    return False


def _mount(fstype: str, path: str, note: Optional[Callable[[str], None]]) -> bool:
    if _mounted(path, fstype):
        return True
    if os.geteuid() != 0:
        return False
    try:
        subprocess.run(["mount", "-t", fstype, "nodev", path], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError):
        return False
    if note:
        note(f"mounted {fstype} on {path}")
    return True


def ensure_tracefs(note: Optional[Callable[[str], None]] = None) -> bool:
    """Mount tracefs at /sys/kernel/tracing if it is not there.  True when usable."""
    if os.path.isdir(os.path.join(TRACEFS, "events")):
        return True
    return _mount("tracefs", TRACEFS, note)


def ensure_debugfs(note: Optional[Callable[[str], None]] = None) -> bool:
    """Mount debugfs at /sys/kernel/debug if it is not there.  True when usable."""
    if _mounted(DEBUGFS, "debugfs"):
        return True
    return _mount("debugfs", DEBUGFS, note)


def tracepoint_exists(category: str, event: str) -> bool:
    return os.path.isdir(os.path.join(TRACEFS, "events", category, event))
