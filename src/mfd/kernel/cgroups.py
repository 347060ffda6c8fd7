"""cgroup v2 ids to paths.

bpf_get_current_cgroup_id() (kernel/bpf/helpers.c) returns the kernfs id of
the current task's cgroup on the default (v2) hierarchy.  On 64-bit the id
is also the inode number of the cgroup's directory (kernfs_ino(),
fs/kernfs/inode.c), so walking the cgroup2 mount and reading st_ino maps ids
to paths, as bcc's cgroup tools and page-types -c do.  Ids are not reused
within a boot on 64-bit, so a map can only miss new cgroups: it is walked
again when an unknown id appears, at most once per ``refresh_every``
seconds.  With cgroup v1 only, every task is in the v2 root (id 1): "/".
"""
from __future__ import annotations

import os
import time
from typing import Callable, Dict, Optional

ROOT_ID = 1
MAX_DIRS = 100_000            # bound the walk on hosts with very many cgroups
MAX_PATH = 1024               # characters of a path mfd shows or exports


def _text(name: str) -> str:
    """A directory name as text: a cgroup name is whatever bytes its creator
    chose (a delegated user@UID.service may make one), and a name that is not
    UTF-8 reads as lone surrogates, which no encoder takes: they become
    backslash escapes, so every exporter and file can write the path."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def cgroup2_mount(mounts: str = "/proc/self/mounts") -> Optional[str]:
    """Where the cgroup2 hierarchy is mounted (/sys/fs/cgroup, or
    /sys/fs/cgroup/unified on hybrid systems), or None."""
    try:
        with open(mounts) as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "cgroup2":
                    return parts[1].replace("\\040", " ")
    except OSError:
        pass
    return None


def walk(root: str, limit: int = MAX_DIRS) -> Dict[int, str]:
    """st_ino -> path below ``root`` ("/" for the root itself), symlinks not
    followed, at most ``limit`` directories."""
    out: Dict[int, str] = {}
    try:
        out[os.stat(root).st_ino] = "/"
    except OSError:
        return out
    stack = [(root, "")]
    while stack and len(out) < limit:
        path, rel = stack.pop()
        try:
            with os.scandir(path) as it:
                for e in it:
                    if len(out) >= limit:
                        break
                    if e.is_dir(follow_symlinks=False):
                        sub = f"{rel}/{_text(e.name)}"
                        if len(sub) > MAX_PATH:
                            sub = sub[:MAX_PATH - 3] + "..."
                        try:
                            out[e.inode()] = sub
                        except OSError:
                            continue
                        stack.append((e.path, sub))
        except OSError:
            continue
    return out


class CgroupNames:
    """``name(id)``: the cgroup's path ("/system.slice/x.service"), "/" for
    the root, or "cgroup:<id>" for one that is gone or beyond the walk."""

    def __init__(self, note: Callable[[str], None], mounts: str = "/proc/self/mounts",
                 refresh_every: float = 1.0):
        self.root = cgroup2_mount(mounts)
        self.refresh_every = refresh_every
        self._names: Dict[int, str] = {ROOT_ID: "/"}
        self._walked = float("-inf")
        if self.root is None:
            note("no cgroup2 hierarchy is mounted (cgroup v1 only): every event is in the "
                 "v2 root, shown as /")

    def _refresh(self) -> None:
        now = time.monotonic()
        if self.root is None or now - self._walked < self.refresh_every:
            return
        self._walked = now
        self._names = {ROOT_ID: "/", **walk(self.root)}

    def name(self, cgroup_id: int) -> str:
        if cgroup_id not in self._names:
            self._refresh()
        return self._names.get(cgroup_id, f"cgroup:{cgroup_id}")
