"""Snapshot records: the buddy allocator of every node and zone at one moment.

Names follow the kernel: a *node* is a ``struct pglist_data``, a *zone* a
``struct zone``, ``nr_free[order]`` is ``zone->free_area[order].nr_free``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple


@dataclass(frozen=True)
class ZoneSnapshot:
    """One ``struct zone`` at one moment."""

    node: int                 # pgdat->node_id
    zone: str                 # zone->name as the kernel spells it ("DMA32", "Normal", ...)
    zone_idx: int             # index in pgdat->node_zones[] (enum zone_type)
    start_pfn: int            # zone->zone_start_pfn
    spanned: int              # zone->spanned_pages
    present: int              # zone->present_pages
    managed: int              # zone->managed_pages
    nr_free: Tuple[int, ...]  # free_area[order].nr_free, one per order (NR_PAGE_ORDERS)

    @property
    def populated(self) -> bool:
        """populated_zone(): the kernel's test, present_pages != 0."""
        return self.present != 0

    @property
    def free_pages(self) -> int:
        return sum(n << order for order, n in enumerate(self.nr_free))


@dataclass(frozen=True)
class NodeSnapshot:
    """One ``struct pglist_data`` at one moment."""

    node: int                 # pgdat->node_id
    nr_zones: int             # pgdat->nr_zones (highest populated zone index + 1)
    start_pfn: int            # pgdat->node_start_pfn
    present: int              # pgdat->node_present_pages
    spanned: int              # pgdat->node_spanned_pages
    zones: Tuple[ZoneSnapshot, ...]
    # Kernel address of the pglist_data.  Shown only on a root terminal; never
    # written to recordings, JSON, exports or metrics.
    pgdat: Optional[int] = field(default=None, compare=False)


@dataclass(frozen=True)
class Snapshot:
    """Every node and zone of the buddy allocator at one moment."""

    time: float               # time.time() when the sample was taken
    source: str               # "bpf" or "procfs"
    nr_orders: int            # NR_PAGE_ORDERS of the running kernel
    nodes: Tuple[NodeSnapshot, ...]
    pgdat_path: Optional[str] = None   # "kallsyms" or "memcg" for the bpf source

    def zones(self):
        for node in self.nodes:
            yield from node.zones
