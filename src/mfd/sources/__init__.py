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

from typing import Callable, Protocol

from ..errors import MfdError, PermissionDenied
from ..model import Snapshot
from ..term import note as stderr_note

SNAPSHOT_SOURCES = ("auto", "bpf", "procfs")


class SnapshotSource(Protocol):
    name: str

    def snapshot(self) -> Snapshot: ...

    def close(self) -> None: ...


def open_snapshot_source(want: str = "auto", pgdat_path: str = "auto", debug: bool = False,
                         note: Callable[[str], None] = stderr_note) -> SnapshotSource:
    """The source for ``--source``: ``bpf`` fails rather than fall back;
    ``auto`` falls back to /proc and says why, once."""
    from .procfs import ProcfsSource

    if want == "procfs":
        return ProcfsSource()
    from .zonewalk import ZonewalkSource
    try:
        return ZonewalkSource(pgdat_path=pgdat_path, note=note, debug=debug)
    except MfdError as e:
        if want == "bpf":
            raise
        if isinstance(e, PermissionDenied):
            note("not root: reading /proc instead of eBPF (run with sudo for the eBPF source)")
        else:
            note(f"{e}; falling back to /proc")
        return ProcfsSource()
