"""``mfd can``: how many blocks of one order a node and zone can give, now
and after perfect compaction, and what the kernel would decide for that
order.  Pure: the numbers come from /proc, read by the caller."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

from ..compaction import SuitableVerdict, compaction_suitable_verdict
from ..model.pagetypes import PageTypeInfo, ZoneLimits
from ..model.physmap import ZoneMap

# Yu Zhao's "mm/page_alloc: keep track of free highatomic": __zone_watermark_ok()
# subtracts the *free* highatomic pages (the HighAtomic free rows of
# pagetypeinfo) instead of nr_reserved_highatomic (whole reserved blocks).
# Absent in 6.12.19, present in 6.18.2 (KERNEL-MM.md); the first release
# between them is not verified: 6.13 is its merge window's release.
FREE_HIGHATOMIC_SINCE = (6, 13)

# Compaction's free scanner takes its targets from Movable and CMA pageblocks
# (suitable_migration_target(), mm/compaction.c).
TARGET_TYPES = ("Movable", "CMA")

# What a verdict means, for people (compaction.SuitableVerdict.verdict).
VERDICT_TEXT = {
    "allocatable": "allocatable now",
    "reclaim_first": "too little free memory: the kernel reclaims first",
    "no_fragmentation": "lack of memory, not fragmentation: the kernel won't compact",
    "compaction_can_help": "fragmentation: compaction can help",
}


@dataclass(frozen=True)
class ZoneCan:
    """One zone's answer for ``order``.

    ``now``: free blocks of order >= ``order`` in order-``order`` units (what
    /proc/buddyinfo shows).  ``bound``: at most this many after perfect
    compaction; ``bound_basis`` says from what ("pageblock map": aligned
    free and compactable pageblocks, see map_bound(); "pagetypeinfo": free pages
    plus the used pages of Movable and CMA pageblocks; "free pages": the
    free pages alone, not root).  ``verdict``: the kernel's
    compaction_suitable() chain for this order, None above the buddy
    allocator's largest order (gigantic pages come from alloc_contig_pages(),
    which no watermark chain decides)."""
    node: int
    zone: str
    order: int
    now: int
    bound: int
    bound_basis: str
    verdict: Optional[SuitableVerdict]


def size_text(order: int, page_size: int) -> str:
    """The size of an order-``order`` block: "2 MiB", "1 GiB"."""
    size = page_size << order
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} B"


def blocks_now(nr_free: Sequence[int], order: int) -> int:
    """Free blocks of order >= ``order``, counted in order-``order`` units
    (fill_contig_page_info()'s free_blocks_suitable)."""
    return sum(n << (k - order) for k, n in enumerate(nr_free) if k >= order)


def compaction_bound(order: int, nr_free: Sequence[int], free_pages: int,
                     pt: Optional[PageTypeInfo], key: Tuple[int, str]) -> Tuple[int, str]:
    """An upper bound on order-``order`` blocks after perfect compaction.

    Compaction moves pages, it frees none: never more than free_pages >>
    order.  With pagetypeinfo, a block can become free only where every page
    is free or movable: inside Movable and CMA pageblocks (the only migration
    targets, suitable_migration_target()), or where it is free already on
    the Unmovable or Reclaimable lists.  Blocks of pages are counted as if all their used
    pages were movable and the blocks adjacent: an approximation, and an
    upper bound (pinned pages, unmovable pages inside Movable blocks and
    orders above pageblock_order need the pageblock map).
    """
    total = free_pages >> order
    now = blocks_now(nr_free, order)
    if pt is None or key not in pt.blocks:
        return max(now, total), "free pages"
    per_block = pt.pages_per_block
    blocks = pt.blocks[key]
    movable_region = sum(blocks.get(t, 0) for t in TARGET_TYPES) * per_block
    # Free blocks already there on the other lists an allocation may take
    # (__zone_watermark_ok(): Unmovable and Reclaimable; HighAtomic is held
    # back for atomic requests, Isolate for alloc_contig_range()).
    free_elsewhere = sum(blocks_now(pt.free.get(key, {}).get(t, ()), order)
                         for t in ("Unmovable", "Reclaimable"))
    return max(now, min(total, (movable_region >> order) + free_elsewhere)), "pagetypeinfo"


def migration_targets(pt: Optional[PageTypeInfo], key: Tuple[int, str],
                      pageblock_order: int) -> Optional[int]:
    """Free pages compaction may migrate into: free pages below pageblock
    order, of every migratetype (suitable_migration_target() takes only
    Movable and CMA blocks, but direct compaction at MIN_COMPACT_PRIORITY
    sets ignore_block_suitable, as hugetlb's __GFP_RETRY_MAYFAIL reaches;
    6.18's isolate_freepages_block() skips buddies of the requested order and
    up, and a free block of pageblock order is one the bound counts already).
    None (no limit) without pagetypeinfo, or where a count it needs was
    capped at 100000 (a lower bound cannot bound from above)."""
    if pt is None or key not in pt.free:
        return None
    if any(n == key[0] and z == key[1] and o < pageblock_order for n, z, _t, o in pt.capped):
        return None
    return sum(n << o for counts in pt.free[key].values() for o, n in enumerate(counts)
               if o < pageblock_order)


def map_bound(order: int, zm: ZoneMap, pageblock_order: int, targets: Optional[int],
              contig: bool = False) -> Optional[int]:
    """Order-``order`` blocks after perfect compaction, from the pageblock
    map: aligned runs of free, compactable and uncertain pageblocks whose
    movable pages fit in the migration targets (pageblocks.after_compaction()),
    in order-``order`` units.  ``contig``: the order is above the buddy
    allocator's, so the blocks come from alloc_contig_pages(), whose
    isolation (cc->alloc_contig) migrates THPs and hugetlb pages too and
    takes its targets from any free memory: huge blocks count, no target
    limit.  None below pageblock order, where free pages inside pinned
    blocks count too and the map says nothing new."""
    if order < pageblock_order:
        return None
    from .. import pageblocks as pb     # numpy: only with a map, not for every mfd can
    group = 1 << (order - pageblock_order)
    return pb.after_compaction(zm.classes, zm.movable_pages, zm.first_block, group,
                               None if contig else targets, huge_ok=contig)


def highatomic_pages(pt: Optional[PageTypeInfo], key: Tuple[int, str],
                     kernel: Tuple[int, ...]) -> int:
    """What __zone_watermark_unusable_free() holds back for HighAtomic: the
    free HighAtomic pages (FREE_HIGHATOMIC_SINCE), before that the reserved
    blocks (nr_reserved_highatomic, counted as whole pageblocks).  0 when
    pagetypeinfo could not be read."""
    if pt is None or key not in pt.blocks:
        return 0
    if tuple(kernel[:2]) >= FREE_HIGHATOMIC_SINCE:
        return pt.free_pages(key, "HighAtomic")
    return pt.blocks[key].get("HighAtomic", 0) * pt.pages_per_block


def zone_can(order: int, nr_free: Sequence[int], limits: ZoneLimits, kernel: Tuple[int, ...],
             extfrag_threshold: int, pt: Optional[PageTypeInfo] = None,
             zm: Optional[ZoneMap] = None, block_pages: int = 512) -> ZoneCan:
    """``zm``: the zone's pageblock map (mfd can --map), which bounds orders
    of pageblock order and up by what is really movable."""
    key = (limits.node, limits.zone)
    now = blocks_now(nr_free, order)
    bound, basis = compaction_bound(order, nr_free, limits.free, pt, key)
    if zm is not None:
        pbo = block_pages.bit_length() - 1
        targets = migration_targets(pt, key, pbo)
        by_map = map_bound(order, zm, pbo, targets, contig=order >= len(nr_free))
        if by_map is not None and by_map <= bound:
            bound, basis = max(now, by_map), "pageblock map"
    verdict = None
    if order < len(nr_free):
        free_by_type: Optional[Dict[str, Sequence[int]]] = pt.free.get(key) if pt else None
        verdict = compaction_suitable_verdict(
            order, limits.free, limits.min, limits.low, tuple(kernel[:2]),
            lowmem_reserve=0,   # kcompactd passes the zone's own index (kcompactd_do_work())
            nr_free_cma=limits.nr_free_cma, highatomic=highatomic_pages(pt, key, kernel),
            # buddyinfo's totals for the fragindex (pagetypeinfo caps cells at
            # 100000), pagetypeinfo's types for the free-block test
            nr_free=nr_free, free_by_type=free_by_type,
            extfrag_threshold=extfrag_threshold)
    return ZoneCan(limits.node, limits.zone, order, now, bound, basis, verdict)
