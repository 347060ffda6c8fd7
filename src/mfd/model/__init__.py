"""mfd's records: what sources produce and sinks consume.

Names follow the kernel: a *node* is a ``struct pglist_data``, a *zone* a
``struct zone``, ``nr_free[order]`` is ``zone->free_area[order].nr_free``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .events import (GROUPS, RESULT_TYPES, AllocFailure, AllocOrder, AllocResult,
                     CompactionResult, CompactionZone, DirectCompaction, Events, ExtfragResult,
                     ExtfragRow, GroupResult, HistBucket, KcompactdWake)
from .filter import Filter, zone_names
from .snapshot import NodeSnapshot, Snapshot, ZoneSnapshot

__all__ = ["Snapshot", "NodeSnapshot", "ZoneSnapshot", "Filter", "zone_names", "Sample",
           "Events", "GroupResult", "GROUPS", "RESULT_TYPES", "ExtfragResult", "ExtfragRow",
           "AllocResult", "AllocOrder", "AllocFailure", "CompactionResult", "CompactionZone",
           "DirectCompaction", "KcompactdWake", "HistBucket"]


@dataclass(frozen=True)
class Sample:
    """What one tick of the sampling loop produced: the snapshot, and the
    events of the interval when event groups are loaded."""

    snapshot: Snapshot
    interval: float                    # seconds since the previous sample (or -d)
    seq: int                           # 0, 1, 2, ... within this run
    events: Optional[Events] = None
