"""How much more memory mfd's own memory cgroup lets it use.

Compiling the eBPF program loads LLVM inside BCC: in a cgroup of 64 MB mfd is
OOM-killed during the compile without a word.  So ``--source auto`` asks
first.  Measured here (cgroup v1 ``memory.max_usage_in_bytes`` of a cgroup
running ``mfd --count 1``): 72 MB with LLVM's pages in the page cache, 121 MB
with a cold cache (they are charged to the cgroup then), 90 MB with every
event group loaded.
"""
from __future__ import annotations

import os
from typing import Iterator, List, Optional, Tuple

# What the eBPF source needs, headroom included (see above).
EBPF_MEMORY = 128 << 20

# cgroup v1 reports "no limit" as a huge page-aligned number (PAGE_COUNTER_MAX pages).
_UNLIMITED_V1 = 1 << 60


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read(4096).strip()
    except (OSError, UnicodeDecodeError):
        return None


def _mounts(mountinfo: str) -> List[Tuple[str, str, str, List[str]]]:
    """(root, mount point, fstype, super options) of each cgroup mount."""
    out = []
    for line in (_read(mountinfo) or "").splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        if tail[0] in ("cgroup", "cgroup2"):
            out.append((fields[3], fields[4], tail[0], tail[2].split(",")))
    return out


def memory_cgroup_dirs(proc: str = "/proc/self") -> Iterator[Tuple[str, str, bool]]:
    """(this process's memory cgroup directory, the hierarchy's mount point,
    whether it is cgroup v2) for each hierarchy that has the memory controller."""
    mounts = _mounts(os.path.join(proc, "mountinfo"))
    for line in (_read(os.path.join(proc, "cgroup")) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        v2 = hid == "0" and controllers == ""
        if not v2 and "memory" not in controllers.split(","):
            continue
        for root, point, fstype, opts in mounts:
            if (fstype == "cgroup2") != v2 or (not v2 and "memory" not in opts):
                continue
            if path != root and not path.startswith(root.rstrip("/") + "/"):
                continue
            rel = os.path.relpath(path, root)
            yield os.path.normpath(os.path.join(point, rel)), point, v2
            break


def headroom(proc: str = "/proc/self") -> Optional[int]:
    """Bytes this process's memory cgroups let it allocate before their limit
    (the smallest limit - usage up the hierarchy), or None when unlimited or
    unknown."""
    best: Optional[int] = None
    for folder, top, v2 in memory_cgroup_dirs(proc):
        limit_name, usage_name = (("memory.max", "memory.current") if v2 else
                                  ("memory.limit_in_bytes", "memory.usage_in_bytes"))
        d = folder
        while True:
            limit, usage = _read(os.path.join(d, limit_name)), _read(os.path.join(d, usage_name))
            if limit and usage and limit != "max" and limit.isdigit() and usage.isdigit():
                if int(limit) < _UNLIMITED_V1:
                    room = max(0, int(limit) - int(usage))
                    best = room if best is None else min(best, room)
            if d == top or len(d) <= len(top):
                break
            d = os.path.dirname(d)
    return best


def memory_hierarchy(proc: str = "/proc/self") -> Optional[Tuple[str, bool]]:
    """(mount point, is cgroup v2) of the hierarchy that holds the memory
    controller, where /proc/kpagecgroup's inodes live (page_cgroup_ino() is
    the inode of the memcg's directory there), or None.  The controller is
    on one hierarchy at a time: a v1 mount with the "memory" option, or else
    the cgroup2 mount whose cgroup.controllers lists it."""
    mounts = _mounts(os.path.join(proc, "mountinfo"))
    for _root, point, fstype, opts in mounts:
        if fstype == "cgroup" and "memory" in opts:
            return point, False
    for _root, point, fstype, _opts in mounts:
        if fstype == "cgroup2" and "memory" in (_read(os.path.join(point, "cgroup.controllers"))
                                                 or "").split():
            return point, True
    return None
