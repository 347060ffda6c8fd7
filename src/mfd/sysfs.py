"""Small readers of /proc and /sys facts the collectors share."""
from __future__ import annotations

import os
from typing import Dict, List, Optional


def parse_cpulist(text: str) -> List[int]:
    """Parse the kernel's list format ("0-1,3") used by node/online, has_memory."""
    out: List[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def memory_nodes(sysfs: str = "/sys") -> List[int]:
    """Node ids with memory (N_MEMORY), as /proc/buddyinfo walks them.

    Falls back to the online nodes on kernels without has_memory (before
    2.6.37), and to node 0 when the node directory is missing (!CONFIG_NUMA).
    """
    base = os.path.join(sysfs, "devices", "system", "node")
    for name in ("has_memory", "online"):
        try:
            with open(os.path.join(base, name)) as f:
                nodes = parse_cpulist(f.read())
            if nodes:
                return nodes
        except (OSError, ValueError):
            continue
    return [0]


def kallsyms_lookup(names, path: str = "/proc/kallsyms") -> Dict[str, int]:
    """Addresses of the given vmlinux symbols; absent or zeroed (kptr_restrict) ones are left out.

    One regex over the whole file: /proc/kallsyms has 100k+ lines and a
    Python loop over them costs more than generating the file does.
    """
    import re

    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError:
        return {}
    alt = b"|".join(re.escape(n.encode()) for n in names)
    found: Dict[str, int] = {}
    for m in re.finditer(rb"^([0-9a-fA-F]+) \S (" + alt + rb")$", text, re.M):
        addr = int(m.group(1), 16)
        if addr:
            found.setdefault(m.group(2).decode(), addr)
    return found


def kernel_release() -> str:
    return os.uname().release


def read_first_line(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.readline().strip()
    except OSError:
        return None


def kernel_config(option: str) -> Optional[str]:
    """Value of a CONFIG_ option ("y", "m", a string) from /proc/config.gz or
    /boot/config-$(uname -r); "" when known to be unset; None when no config is readable."""
    import gzip

    key = option if option.startswith("CONFIG_") else "CONFIG_" + option
    sources = [("/proc/config.gz", gzip.open),
               ("/boot/config-" + os.uname().release, open)]
    for path, opener in sources:
        try:
            with opener(path, "rt") as f:
                for line in f:
                    if line.startswith(key + "="):
                        return line.split("=", 1)[1].strip()
                    if line.startswith("# " + key + " is not set"):
                        return ""
            return ""
        except OSError:
            continue
    return None
