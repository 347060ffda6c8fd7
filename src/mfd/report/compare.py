"""Two recordings side by side (``mfd report A.db --compare B.db``): per
node, zone and order the distributions of the kernel's two indices (median,
p90, max over the samples), per zone the time with no free block of the THP
order, and the event rates.  Pure: it takes the two Reports and the index
distributions folded while they were built.

Percentiles are nearest-rank over the samples (the value at rank
ceil(q * n)), so every figure shown is one the kernel printed at a sample.
The distributions are counters of the stored x1000 integers: their size is
bounded by the distinct values (at most 2001 per zone and order), not by the
length of the recording.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .build import Report, ZoneSummary

INDICES = ("unusable", "extfrag")
QUANTILES = (("median", 0.5), ("p90", 0.9))

ZoneKey = Tuple[int, str]                 # (node, zone name): zone_idx may differ by kernel


def nearest_rank(counts: Counter, q: float) -> Optional[int]:
    """The value at rank ceil(q * n) (1-based) of the values counted; None when empty."""
    n = sum(counts.values())
    if not n:
        return None
    rank = max(1, math.ceil(q * n))
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= rank:
            return value
    return max(counts)      # not reached: the ranks add up to n


@dataclass
class Distributions:
    """Per (node, zone, order) a Counter of each index's x1000 values: fed
    one recorded sample at a time (build()'s sink)."""

    by: Dict[str, Dict[Tuple[int, str, int], Counter]] = field(
        default_factory=lambda: {name: {} for name in INDICES})

    def __call__(self, rec) -> None:
        for z in rec.zones:
            if not z.present:
                continue        # the kernel prints no index for an empty zone
            for name, values in (("unusable", z.unusable), ("extfrag", z.extfrag)):
                table = self.by[name]
                for order, v in enumerate(values):
                    c = table.get((z.node, z.zone, order))
                    if c is None:
                        c = table[(z.node, z.zone, order)] = Counter()
                    c[v] += 1

    def stats(self, name: str, key: Tuple[int, str, int]) -> Optional[Tuple[int, int, int]]:
        """(median, p90, max) of one index at (node, zone, order), or None."""
        c = self.by[name].get(key)
        if not c:
            return None
        return nearest_rank(c, 0.5), nearest_rank(c, 0.9), max(c)


@dataclass
class ZoneTotals:
    """One zone's time over a recording, merged across runs (its zone_idx
    may differ between kernels; the comparison matches node and name)."""
    nr_orders: int = 0
    seconds: float = 0.0
    no_block: List[float] = field(default_factory=list)


@dataclass
class Side:
    label: str
    report: Report
    dist: Distributions
    zones: Dict[ZoneKey, ZoneTotals] = field(default_factory=dict)

    def __post_init__(self):
        for s in self.report.zones.values():
            z = self.zones.setdefault((s.node, s.zone), ZoneTotals())
            z.nr_orders = max(z.nr_orders, s.nr_orders)
            z.seconds += s.seconds
            z.no_block += [0.0] * (s.nr_orders - len(z.no_block))
            for o, secs in enumerate(s.no_block):
                z.no_block[o] += secs

    def zone(self, key: ZoneKey) -> Optional[ZoneTotals]:
        return self.zones.get(key)

    @property
    def zone_keys(self) -> List[ZoneKey]:
        return sorted(self.zones)

    @property
    def nr_orders(self) -> int:
        return max((z.nr_orders for z in self.zones.values()), default=0)

    def rate(self, name: str) -> Optional[float]:
        """Events per second of event time; None when this side did not
        record the counter (its group was not loaded) or no events at all."""
        secs = self.report.event_seconds
        if not secs or name not in self.report.events:
            return None
        return self.report.events[name] / secs


@dataclass
class Comparison:
    a: Side
    b: Side
    hpage_order: int

    @property
    def sides(self) -> Tuple[Side, Side]:
        return self.a, self.b

    def common_zones(self) -> List[ZoneKey]:
        return sorted(set(self.a.zone_keys) & set(self.b.zone_keys))

    def only_in(self, side: Side) -> List[ZoneKey]:
        other = self.b if side is self.a else self.a
        return sorted(set(side.zone_keys) - set(other.zone_keys))

    def orders(self, key: ZoneKey) -> range:
        """Orders 1 and up that both recordings hold for the zone (order 0's
        unusable index is always 0)."""
        n = min(self.a.zone(key).nr_orders, self.b.zone(key).nr_orders)
        return range(1, n)

    def index_rows(self, name: str, zones: Optional[Sequence[ZoneKey]] = None) -> List[tuple]:
        """(node, zone, order, stats A, stats B) for every common zone (or
        ``zones``) and order."""
        rows = []
        for key in self.common_zones() if zones is None else zones:
            for o in self.orders(key):
                rows.append((key[0], key[1], o, self.a.dist.stats(name, key + (o,)),
                             self.b.dist.stats(name, key + (o,))))
        return rows

    def no_block(self, side: Side, key: ZoneKey) -> Optional[Tuple[float, float]]:
        """(seconds with no free block of the THP order or larger, share of the
        zone's recorded time), or None when the zone has no such order."""
        z = side.zone(key)
        if z is None or self.hpage_order >= z.nr_orders:
            return None
        secs = z.no_block[self.hpage_order]
        return secs, (secs / z.seconds if z.seconds else 0.0)

    def event_names(self) -> List[str]:
        return sorted({k for side in self.sides for k, v in side.report.events.items() if v})


def shown_zones(cmp: "Comparison", limit: int) -> List[ZoneKey]:
    """The common zones a picture or page shows: all, or the ``limit`` whose
    worse side has the highest median unusable index at the THP order."""
    zones = cmp.common_zones()
    if len(zones) <= limit:
        return zones

    def worst(key):
        meds = [side.dist.stats("unusable", key + (cmp.hpage_order,)) for side in cmp.sides]
        return -max((m[0] for m in meds if m is not None), default=0), key
    return sorted(sorted(zones, key=worst)[:limit])


def default_labels(paths: Sequence[str]) -> Tuple[str, str]:
    """The files' base names, or "A" and "B" when those are the same."""
    import os
    names = [os.path.basename(p) for p in paths]
    return (names[0], names[1]) if names[0] != names[1] else ("A", "B")
