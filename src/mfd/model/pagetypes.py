"""What the allocator weighs beyond the buddy counts, as records: each zone's
watermarks and reserves (/proc/zoneinfo) and its free blocks and pageblocks
per migratetype (/proc/pagetypeinfo)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Optional, Tuple

ZoneKey = Tuple[int, str]            # (node, zone name as the kernel spells it)


@dataclass(frozen=True)
class PageTypeInfo:
    """``free[(node, zone)][type]``: free blocks per order on that migratetype's
    free list; a cell the kernel stopped counting at 100000 (it prints
    ``>100000``) holds 100000 and is in ``capped`` as (node, zone, type,
    order).  ``blocks[(node, zone)][type]``: pageblocks of that type.
    ``mixed``: the "Number of mixed blocks" section (CONFIG_PAGE_OWNER with
    page_owner=on), else None.  ``migratetypes``: the kernel's
    migratetype_names[] as printed (the set depends on CONFIG_CMA and
    CONFIG_MEMORY_ISOLATION)."""
    pageblock_order: int
    pages_per_block: int
    migratetypes: Tuple[str, ...]
    free: Dict[ZoneKey, Dict[str, Tuple[int, ...]]] = field(default_factory=dict)
    blocks: Dict[ZoneKey, Dict[str, int]] = field(default_factory=dict)
    capped: FrozenSet[Tuple[int, str, str, int]] = frozenset()
    mixed: Optional[Dict[ZoneKey, Dict[str, int]]] = None

    def free_pages(self, key: ZoneKey, mtype: str) -> int:
        """Free pages on one migratetype's lists (a lower bound where capped)."""
        return sum(n << o for o, n in enumerate(self.free.get(key, {}).get(mtype, ())))


@dataclass(frozen=True)
class ZoneLimits:
    """What /proc/zoneinfo says of one zone's watermarks and reserves
    (mm/vmstat.c zoneinfo_show_print()): what the allocator's
    __zone_watermark_ok() and compaction_suitable() weigh.

    ``min``/``low``/``high`` include ``boost`` (wmark_pages() adds
    watermark_boost); ``promo`` only since 6.x's memory tiering (None
    before); ``protection`` is lowmem_reserve[], one per zone index;
    ``nr_free_pages_blocks`` (6.15+, free pages in whole free pageblocks,
    what vm.defrag_mode weighs) is None where absent; ``pcp_count`` the
    pages on the per-CPU lists (free, but not in the buddy lists)."""
    node: int
    zone: str
    zone_idx: int
    free: int
    boost: int
    min: int
    low: int
    high: int
    promo: Optional[int]
    managed: int
    present: int
    protection: Tuple[int, ...]
    nr_free_cma: int
    nr_free_pages_blocks: Optional[int]
    pcp_count: int
