"""Make sure tracefs (and, on request, debugfs) are mounted.

BCC reads tracepoint formats from tracefs, and the kernel's own fragmentation
indices live in debugfs (/sys/kernel/debug/extfrag).  Many minimal and
container-style boots mount neither.  Root can mount them; we do it once and
say so, the way perf does.
"""
from __future__ import annotations

import os
import subprocess
from typing import Callable, Dict, List, Optional

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


# Why the last attempt to mount a path failed (for mount_hint()).
_mount_errors: Dict[str, str] = {}


def _mount(fstype: str, path: str, note: Optional[Callable[[str], None]]) -> bool:
    if _mounted(path, fstype):
        return True
    if os.geteuid() != 0:
        _mount_errors[path] = "not root"
        return False
    try:
        r = subprocess.run(["mount", "-t", fstype, "nodev", path],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    except OSError as e:
        _mount_errors[path] = f"cannot run mount: {e.strerror or e}"
        return False
    if r.returncode != 0:
        lines = r.stderr.strip().splitlines()
        _mount_errors[path] = lines[-1] if lines else f"mount exit status {r.returncode}"
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


def mount_hint(fstype: str = "tracefs", path: str = TRACEFS) -> str:
    """One line saying that ``fstype`` is missing, why mfd could not mount it,
    and the command that mounts it."""
    why = _mount_errors.get(path)
    return (f"{fstype} is not mounted on {path} and mfd could not mount it"
            + (f" ({why})" if why else "")
            + f": run 'mount -t {fstype} nodev {path}' as root")


def tracepoint_exists(category: str, event: str) -> bool:
    return os.path.isdir(os.path.join(TRACEFS, "events", category, event))


def kprobe_event_names(path: str = os.path.join(TRACEFS, "kprobe_events")) -> List[str]:
    """Names of the tracefs kprobe events ("p:kprobes/NAME SYMBOL ..." lines)."""
    try:
        with open(path) as f:
            lines = f.read(1 << 20).splitlines()
    except OSError:
        return []
    names = []
    for line in lines:
        head = line.split(None, 1)[0] if line.strip() else ""
        _kind, _, name = head.partition(":")
        if name:
            names.append(name.rpartition("/")[2])
    return names


def remove_kprobe_event(name: str, path: str = os.path.join(TRACEFS, "kprobe_events")) -> bool:
    """Remove a tracefs kprobe event ("-:kprobes/NAME"); False if the kernel
    refused (EBUSY while a perf event still holds it, or already gone)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        os.write(fd, f"-:kprobes/{name}\n".encode())
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
