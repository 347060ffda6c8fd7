"""Per-interval changes of /proc/vmstat counters (compact_* and friends)."""
from __future__ import annotations

from typing import Dict, Sequence

from ..errors import MfdError

VMSTAT = "/proc/vmstat"


def read_vmstat(prefixes: Sequence[str] = ("",), path: str = VMSTAT) -> Dict[str, int]:
    """Counters whose names start with one of ``prefixes``."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise MfdError(f"cannot read {path}: {e.strerror or e}") from e
    out: Dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith(tuple(prefixes)):
            try:
                out[name] = int(value)
            except ValueError:
                continue
    return out


class VmstatDelta:
    """``delta()`` gives each counter's growth since the previous call (the
    first call: since construction).  Counters are cumulative since boot; a
    counter the kernel lacks (compact_daemon_* before 4.6, say) is absent."""

    def __init__(self, prefixes: Sequence[str] = ("compact_",), path: str = VMSTAT):
        self.prefixes, self.path = tuple(prefixes), path
        self._prev = read_vmstat(self.prefixes, path)

    def delta(self) -> Dict[str, int]:
        cur = read_vmstat(self.prefixes, self.path)
        out = {name: value - self._prev.get(name, value) for name, value in cur.items()}
        self._prev = cur
        return out
