"""Where samples come from.

A snapshot source has a ``name`` (what ``Snapshot.source`` and recordings
say), ``snapshot()`` and ``close()``:

* :mod:`.zonewalk`  the eBPF zone walker (root, BCC);
* :mod:`.procfs`    /proc/buddyinfo and /proc/zoneinfo (anyone).

Event sources (:mod:`.events`) add one interval of typed event results to a
sample; :mod:`.vmstat` reads /proc/vmstat counters.  A new source is one
module here and one line where the CLI picks it.
"""
from __future__ import annotations

import os
from typing import Callable, Protocol

from ..errors import MfdError, PermissionDenied
from ..kernel import cgroupmem
from ..model import Snapshot
from ..term import note as stderr_note

SNAPSHOT_SOURCES = ("auto", "bpf", "procfs")


class SnapshotSource(Protocol):
    name: str

    def snapshot(self) -> Snapshot: ...

    def close(self) -> None: ...


def open_snapshot_source(want: str = "auto", pgdat_path: str = "auto", debug: bool = False,
                         note: Callable[[str], None] = stderr_note,
                         loader: str = "auto") -> SnapshotSource:
    """The source for ``--source``: ``bpf`` fails rather than fall back, and so
    does a forced ``--pgdat-path``; ``auto`` falls back to /proc and says why, once."""
    from .procfs import ProcfsSource

    if want == "procfs":
        return ProcfsSource()
    forced = want == "bpf" or pgdat_path != "auto"
    if not forced and os.geteuid() == 0:
        room = cgroupmem.headroom()
        if room is not None and room < cgroupmem.EBPF_MEMORY:
            note(f"the memory cgroup lets mfd use {room >> 20} MiB more, and compiling "
                 f"the eBPF walker needs about {cgroupmem.EBPF_MEMORY >> 20} MiB: reading "
                 f"/proc instead (raise the cgroup's memory limit, or force --source bpf)")
            return ProcfsSource()
    from .zonewalk import ZonewalkSource
    try:
        return ZonewalkSource(pgdat_path=pgdat_path, note=note, debug=debug, loader=loader)
    except MfdError as e:
        if forced:
            raise
        if isinstance(e, PermissionDenied):
            note("not root: reading /proc instead of eBPF (run with sudo for the eBPF source)")
        else:
            note(f"{e}; falling back to /proc")
        return ProcfsSource()
