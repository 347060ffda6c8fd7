"""mfd's records: what sources produce and sinks consume.

Names follow the kernel: a *node* is a ``struct pglist_data``, a *zone* a
``struct zone``, ``nr_free[order]`` is ``zone->free_area[order].nr_free``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from .filter import Filter, zone_names
from .snapshot import NodeSnapshot, Snapshot, ZoneSnapshot

if TYPE_CHECKING:
    from .events import Events

__all__ = ["Snapshot", "NodeSnapshot", "ZoneSnapshot", "Filter", "zone_names", "Sample",
           "Events", "GroupResult", "GROUPS", "RESULT_TYPES", "ExtfragResult", "ExtfragRow",
           "AllocResult", "AllocOrder", "AllocFailure", "CompactionResult", "CompactionZone",
           "DirectCompaction", "KcompactdWake", "HistBucket"]

# The event records are imported on first use (PEP 562): their dataclasses
# cost about 10 ms at import, a fifth of mfd's own start-up, and the snapshot
# monitor, the default command, never needs them.
_EVENT_NAMES = frozenset(__all__[__all__.index("Events"):])


def __getattr__(name: str):
    if name in _EVENT_NAMES:
        return getattr(importlib.import_module(".events", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Sample:
    """What one tick of the sampling loop produced: the snapshot, and the
    events of the interval when event groups are loaded."""

    snapshot: Snapshot
    interval: float                    # seconds since the previous sample (or -d)
    seq: int                           # 0, 1, 2, ... within this run
    events: Optional[Events] = None
