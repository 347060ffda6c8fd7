"""Synthetic snapshots and recordings with known content (tests and bench/).

Everything is built from real model objects and written through the real
:class:`mfd.sinks.recorder.Recorder`, so a fixture recording is exactly what
``mfd --record`` writes.
"""
from __future__ import annotations

import random
from typing import Callable, Optional, Sequence

from mfd.derive import Frame
from mfd.model import (AllocOrder, AllocResult, CompactionResult, Events, ExtfragResult,
                       ExtfragRow, NodeSnapshot, Sample, Snapshot, ZoneSnapshot)
from mfd.sinks.recorder import Recorder

NR_ORDERS = 11
THIS_MACHINE = ("DMA", "DMA32", "Normal", "Movable", "Device")   # 3 populated + 2 empty
POPULATED = 3
FRAGMENTED = [4000] + [0] * (NR_ORDERS - 1)      # every free page alone: unusable 1.0 at >= 1
WHOLE = [0] * (NR_ORDERS - 1) + [100]             # all in order-10 blocks: unusable 0


def snapshot(t: float, nr_free: Callable[[int, int], Sequence[int]], nodes: int = 1,
             zones: Sequence[str] = THIS_MACHINE, populated: int = POPULATED,
             source: str = "procfs", pgdat: Optional[int] = None) -> Snapshot:
    """A snapshot at ``t``; ``nr_free(node, zone_idx)`` gives each populated zone's counts."""
    out = []
    for n in range(nodes):
        zs = []
        for i, name in enumerate(zones):
            live = i < populated
            counts = tuple(nr_free(n, i)) if live else (0,) * NR_ORDERS
            size = (1 << 20) if live else 0
            zs.append(ZoneSnapshot(node=n, zone=name, zone_idx=i,
                                   start_pfn=(n * len(zones) + i) << 20 if live else 0,
                                   spanned=size, present=size, managed=size - 1000 * live,
                                   nr_free=counts))
        out.append(NodeSnapshot(node=n, nr_zones=populated, start_pfn=n * len(zones) << 20,
                                present=populated << 20, spanned=populated << 20,
                                zones=tuple(zs), pgdat=pgdat))
    return Snapshot(time=t, source=source, nr_orders=NR_ORDERS, nodes=tuple(out),
                    pgdat_path="memcg" if source == "bpf" else None)


def random_walk(seed: int = 1) -> Callable[[int, int], list]:
    """Plausible counts that drift from sample to sample."""
    rng = random.Random(seed)
    state = {}

    def counts(node, zone):
        cur = state.setdefault((node, zone), [rng.randrange(50, 20000) >> (o // 2)
                                              for o in range(NR_ORDERS)])
        for o in range(NR_ORDERS):
            cur[o] = max(0, cur[o] + rng.randrange(-cur[o] // 20 - 2, cur[o] // 20 + 3))
        return cur
    return counts


def record(path: str, n: int, start: float = 1_700_000_000.0, interval: float = 1.0,
           nr_free: Callable[[int, float, int, int], Sequence[int]] = None,
           events: Callable[[int], Optional[dict]] = lambda i: None, **layout) -> None:
    """Write ``n`` samples ``interval`` apart; ``nr_free(i, t, node, zone_idx)``."""
    walk = random_walk()
    nr_free = nr_free or (lambda i, t, node, zone: walk(node, zone))
    rec = Recorder(path, interval=interval, host="fixture", kernel="6.18.0-test")
    try:
        for i in range(n):
            t = start + i * interval
            snap = snapshot(t, lambda node, zone: nr_free(i, t, node, zone), **layout)
            rec.emit(Frame(Sample(snapshot=snap, interval=interval, seq=i, events=events(i))))
    finally:
        rec.close()


def halves(n: int) -> Callable[[int, float, int, int], list]:
    """Zone 2 (Normal) fragmented in the first half of ``n`` samples, whole in the second;
    the other zones keep a steady mix."""
    def counts(i, t, node, zone):
        if zone == 2:
            return FRAGMENTED if i < n // 2 else WHOLE
        return [50 * (NR_ORDERS - o) for o in range(NR_ORDERS)]
    return counts


def event_counts(i: int) -> Events:
    """Events as mfd.sources.events produces them (interval, rates and running
    totals beside the counts): 2 steals per 1 s sample, a compaction every tenth."""
    return Events(1.0, results=(
        ExtfragResult(events=2, change_ownership=1, cumulative=2 * (i + 1), rate=2.0,
                      by_process=(ExtfragRow(pid=1, comm="x", events=2, change_ownership=1,
                                             cumulative=2 * (i + 1), rate=2.0),)),
        AllocResult(probe="tracepoint", allocs=100, rate=100.0,
                    by_order=(AllocOrder(order=0, allocs=100, rate=100.0),)),
        CompactionResult(begin=int(i % 10 == 0),
                         vmstat={"compact_stall": int(i % 10 == 0),
                                 "compact_migrate_scanned": 50})))
