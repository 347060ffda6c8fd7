"""Per-zone figures, computed once per sample: what every sink reads.

A :class:`Frame` is one sample with the user's filter and, per zone, the
seed's per-order columns (mm/vmstat.c's ``struct contig_page_info``) and both
kernel indices.  They are computed on first use and kept, so a sample that
goes to the table, the recorder and the live view costs the math once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from . import fragindex
from .model import Filter, NodeSnapshot, Sample, ZoneSnapshot


@dataclass(frozen=True)
class OrderStats:
    """The seed's per-order columns: fill_contig_page_info() plus both indices (x1000)."""

    order: int
    nr_free: int
    total: int          # free_blocks_total
    suitable: int       # free_blocks_suitable for this order
    free: int           # free_pages
    extfrag: int        # __fragmentation_index()
    unusable: int       # unusable_free_index()


def order_stats(nr_free: Sequence[int]) -> Tuple[OrderStats, ...]:
    max_order = len(nr_free) - 1
    return tuple(OrderStats(order, n, info.free_blocks_total, info.free_blocks_suitable,
                            info.free_pages,
                            fragindex.fragmentation_index(order, info, max_order),
                            fragindex.unusable_free_index(order, info))
                 for order, (n, info) in enumerate(zip(nr_free,
                                                       fragindex.contig_page_infos(nr_free))))


@dataclass(frozen=True)
class ZoneFigures:
    """One zone of one sample and its figures per order."""

    zone: ZoneSnapshot
    orders: Tuple[OrderStats, ...]

    @property
    def extfrag(self) -> Tuple[int, ...]:
        """extfrag_index per order, x1000 (debugfs extfrag/extfrag_index)."""
        return tuple(s.extfrag for s in self.orders)

    @property
    def unusable(self) -> Tuple[int, ...]:
        """unusable_index per order, x1000 (debugfs extfrag/unusable_index)."""
        return tuple(s.unusable for s in self.orders)


def zone_figures(z: ZoneSnapshot) -> ZoneFigures:
    return ZoneFigures(z, order_stats(z.nr_free))


class Frame:
    """A sample as the sinks see it: the snapshot, the events, the filter,
    and each zone's figures (computed once, on first use)."""

    __slots__ = ("sample", "filter", "_figures")

    def __init__(self, sample: Sample, flt: Filter = Filter()):
        self.sample = sample
        self.filter = flt
        self._figures: Dict[Tuple[int, int], ZoneFigures] = {}

    @property
    def snapshot(self):
        return self.sample.snapshot

    def figures(self, z: ZoneSnapshot) -> ZoneFigures:
        key = (z.node, z.zone_idx)
        f = self._figures.get(key)
        if f is None:
            f = self._figures[key] = zone_figures(z)
        return f

    def zones(self, empty: bool = False) -> List[ZoneFigures]:
        """The zones that pass the filter (empty ones with ``empty`` or ``-c``)."""
        return [self.figures(z) for z in self.filter.zones(self.sample.snapshot, empty)]

    def all_zones(self) -> List[ZoneFigures]:
        """Every zone, filter or not (what a recording keeps)."""
        return [self.figures(z) for z in self.sample.snapshot.zones()]

    def nodes(self) -> List[NodeSnapshot]:
        return self.filter.nodes(self.sample.snapshot)


def derive(sample: Sample, flt: Optional[Filter] = None) -> Frame:
    return Frame(sample, flt or Filter())
