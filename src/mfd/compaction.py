"""Will the kernel compact?  Its own rules, as pure functions of numbers user space can read.

Two questions, answered the way the kernel answers them:

* proactive compaction (mm/compaction.c): the zone and node *fragmentation
  score*, the watermarks derived from ``vm.compaction_proactiveness`` and
  ``should_proactive_compact_node()``;
* reactive compaction for one zone and order: ``__zone_watermark_ok()``
  (mm/page_alloc.c) and the ``compaction_suitable()`` chain, seen from
  kcompactd (caller watermark W = the zone's min watermark).

Inputs are what /proc/buddyinfo, /proc/pagetypeinfo, /proc/zoneinfo and the
vm sysctls show; nothing here reads them.  The buddy arithmetic
(``fill_contig_page_info()``, ``__fragmentation_index()``) comes from
:mod:`mfd.fragindex`.

``kernel`` arguments are release tuples such as ``(6, 1)`` or ``(6, 12, 19)``;
only the first two numbers are compared.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence, Tuple

from .fragindex import fill_contig_page_info, fragmentation_index

__all__ = [
    "PAGE_ALLOC_COSTLY_ORDER",
    "EXTFRAG_THRESHOLD_DEFAULT",
    "COMPACTION_PROACTIVENESS_DEFAULT",
    "WMARK_FORMULA_CHANGED",
    "SUITABLE_WMARK_FROM_CALLER",
    "PCP_MIGRATETYPES",
    "compaction_hpage_order",
    "compact_gap",
    "extfrag_for_order",
    "fragmentation_score_zone",
    "fragmentation_score_zone_weighted",
    "fragmentation_score_node",
    "fragmentation_score_wmark",
    "ProactiveVerdict",
    "proactive_verdict",
    "WatermarkCheck",
    "zone_watermark_ok",
    "SuitableVerdict",
    "compaction_suitable_verdict",
]

# include/linux/mmzone.h: orders above this are "costly"; compaction_suitable()
# applies the fragindex veto and the low watermark only to them.
PAGE_ALLOC_COSTLY_ORDER = 3

# vm.extfrag_threshold (sysctl_extfrag_threshold, range 0..1000): kernel/sysctl.c
# in 6.1, mm/compaction.c vm_compaction[] in 6.18.
EXTFRAG_THRESHOLD_DEFAULT = 500

# vm.compaction_proactiveness (sysctl_compaction_proactiveness, range 0..100).
COMPACTION_PROACTIVENESS_DEFAULT = 20

# fragmentation_score_wmark() changed formula with Michal Clapinski's two
# patches "mm/compaction: remove low watermark cap for proactive compaction"
# and "mm/compaction: reduce the difference between low and high watermarks"
# (v4 posted 2025-04-04).  Verified: the old formula is in 6.12.19 and the new
# one in 6.18.2 (KERNEL-MM.md); both patches are listed under "Michal Clapinski
# (2)" in Andrew Morton's "[GIT PULL] MM updates for 6.16-rc1" (2025-05-31),
# which pr-tracker-bot reports merged into torvalds/linux master on
# 2025-06-01: so the first release with the new formula is 6.16.
WMARK_FORMULA_CHANGED = (6, 16)

# "mm: compaction: push watermark into compaction_suitable() callers"
# (Johannes Weiner, listed in "[GIT PULL] MM updates for 6.15-rc1"): from then
# on __compaction_suitable() adds compact_gap() to the caller's watermark W
# (plus low - min for costly orders) instead of using min or low itself.
SUITABLE_WMARK_FROM_CALLER = (6, 15)

# MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE (< MIGRATE_PCPTYPES),
# spelled as /proc/pagetypeinfo prints them (mm/page_alloc.c migratetype_names[]).
PCP_MIGRATETYPES = ("Unmovable", "Movable", "Reclaimable")

_MIN_PAGE_SIZE = 4096      # the smallest PAGE_SIZE of any Linux architecture


def _release(kernel: Sequence[int]) -> Tuple[int, int]:
    """(major, minor) of a release tuple; ValueError for anything else."""
    if len(kernel) < 2 or not all(isinstance(n, int) and n >= 0 for n in kernel[:2]):
        raise ValueError(f"kernel release must look like (6, 1), not {kernel!r}")
    return kernel[0], kernel[1]


def _log2_exact(value: int, what: str) -> int:
    """log2 of a positive power of two; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value & (value - 1):
        raise ValueError(f"{what} must be a power of two, not {value!r}")
    return value.bit_length() - 1


def _non_negative(value: int, what: str) -> int:
    if value < 0:
        raise ValueError(f"{what} cannot be negative ({value})")
    return value


# --- COMPACTION_HPAGE_ORDER ----------------------------------------------------

def compaction_hpage_order(hpage_pmd_size: Optional[int], page_size: int) -> int:
    """``COMPACTION_HPAGE_ORDER`` (top of mm/compaction.c, same 6.1 .. 7.1).

    With THP it is ``HPAGE_PMD_ORDER``: pass
    /sys/kernel/mm/transparent_hugepage/hpage_pmd_size and get
    ``log2(hpage_pmd_size / page_size)``.  Without THP (``None``) it is
    ``PMD_SHIFT - PAGE_SHIFT``: a page-table page holds ``page_size / 8``
    entries, so ``PMD_SHIFT = PAGE_SHIFT + (PAGE_SHIFT - 3)`` and the order is
    ``PAGE_SHIFT - 3``: 9 for 4 KiB, 11 for 16 KiB, 13 for 64 KiB pages.
    (/proc/meminfo Hugepagesize follows ``default_hugepagesz=``: not used.)
    """
    page_shift = _log2_exact(page_size, "page size")
    if page_size < _MIN_PAGE_SIZE:
        raise ValueError(f"page size {page_size} is below {_MIN_PAGE_SIZE}")
    if hpage_pmd_size is None:
        return page_shift - 3
    pmd_shift = _log2_exact(hpage_pmd_size, "hpage_pmd_size")
    if pmd_shift <= page_shift:
        raise ValueError(f"hpage_pmd_size {hpage_pmd_size} is not larger than the page size {page_size}")
    return pmd_shift - page_shift


def compact_gap(order: int) -> int:
    """``compact_gap()`` (include/linux/compaction.h): ``2UL << order`` free pages
    of headroom, because migration holds source and target pages at once."""
    return 2 << _non_negative(order, "order")


# --- fragmentation score ---------------------------------------------------------

def extfrag_for_order(nr_free: Sequence[int], order: int) -> int:
    """``extfrag_for_order()`` (mm/vmstat.c, same 6.1 .. 7.1): the percentage of
    free pages that sit in blocks smaller than ``2^order``, floored.

    0 when the zone has no free page (unlike debugfs unusable_index, which
    prints 1.000 then).  ``nr_free`` counts every migratetype, as /proc/buddyinfo.
    """
    info = fill_contig_page_info(nr_free, order)
    if info.free_pages == 0:
        return 0
    unusable = info.free_pages - (info.free_blocks_suitable << order)
    return unusable * 100 // info.free_pages        # div_u64(): floor


def fragmentation_score_zone(nr_free: Sequence[int], hpage_order: int) -> int:
    """``fragmentation_score_zone()`` (mm/compaction.c): the zone's *unweighted*
    score, ``extfrag_for_order(zone, COMPACTION_HPAGE_ORDER)``.  kcompactd stops
    compacting a zone once this is <= the low watermark (``__compact_finished()``)."""
    return extfrag_for_order(nr_free, hpage_order)


def fragmentation_score_zone_weighted(present_pages: int, zone_score: int,
                                      node_present_pages: int) -> int:
    """``fragmentation_score_zone_weighted()`` (mm/compaction.c, 6.1 .. 7.1):
    ``div64_ul(present_pages * score, node_present_pages + 1)``.

    The weight is *present* pages (not managed), the ``+ 1`` is the kernel's and
    the division floors: a node with one populated zone of score s > 0 scores s - 1.
    """
    for value, what in ((present_pages, "present_pages"), (zone_score, "zone score"),
                        (node_present_pages, "node_present_pages")):
        _non_negative(value, what)
    return present_pages * zone_score // (node_present_pages + 1)


def fragmentation_score_node(zones: Iterable[Tuple[int, Sequence[int]]], hpage_order: int) -> int:
    """``fragmentation_score_node()`` (mm/compaction.c): the sum of the weighted
    zone scores of one node.

    ``zones`` holds ``(present_pages, nr_free)`` for the node's zones;
    ``node_present_pages`` is the sum of their present pages, as the kernel's
    ``pgdat->node_present_pages``.  Unpopulated zones are skipped (6.12+
    ``populated_zone()``; in 6.1 they add 0 anyway).  This is the score
    ``should_proactive_compact_node()`` compares with the high watermark.
    """
    populated = [(present, nr_free) for present, nr_free in zones if _non_negative(present, "present_pages")]
    node_present = sum(present for present, _ in populated)
    return sum(fragmentation_score_zone_weighted(present, fragmentation_score_zone(nr_free, hpage_order),
                                                 node_present)
               for present, nr_free in populated)


# --- proactive compaction ----------------------------------------------------------

def fragmentation_score_wmark(proactiveness: int, low: bool, kernel: Tuple[int, int]) -> int:
    """``fragmentation_score_wmark()`` (mm/compaction.c) for ``vm.compaction_proactiveness``.

    Before :data:`WMARK_FORMULA_CHANGED` (6.1 .. 6.12 verified):
    ``low = max(100 - p, 5)``, ``high = min(low + 10, 100)``.
    From it (6.18 verified): ``low = 100 - p``,
    ``high = min(low + min(10, low / 2), 100)`` (integer division).
    """
    if isinstance(proactiveness, bool) or not 0 <= proactiveness <= 100:
        raise ValueError(f"compaction_proactiveness must be 0..100, not {proactiveness!r}")
    if _release(kernel) >= WMARK_FORMULA_CHANGED:
        wmark_low = 100 - proactiveness
        leeway = min(10, wmark_low // 2)
        return wmark_low if low else min(wmark_low + leeway, 100)
    wmark_low = max(100 - proactiveness, 5)
    return wmark_low if low else min(wmark_low + 10, 100)


@dataclass(frozen=True)
class ProactiveVerdict:
    """What ``should_proactive_compact_node()`` decides for one node."""

    verdict: str      # "will_compact", "will_not", "disabled" or "kswapd_running"
    score: int        # fragmentation_score_node()
    low: int          # fragmentation_score_wmark(low=True): where each zone's run stops
    high: int         # fragmentation_score_wmark(low=False): the start threshold
    reason: str


def proactive_verdict(node_score: int, proactiveness: int, kswapd_running: bool,
                      kernel: Tuple[int, int]) -> ProactiveVerdict:
    """``should_proactive_compact_node()`` (mm/compaction.c, same rule 6.1 .. 6.18).

    False when ``proactiveness == 0`` or ``kswapd_is_running()`` (kswapd's task
    state is R); otherwise ``node_score > high``, strictly.  kcompactd checks
    every 500 ms (``HPAGE_FRAG_CHECK_INTERVAL_MSEC``), 32 s after a run that
    made no progress.
    """
    low = fragmentation_score_wmark(proactiveness, True, kernel)
    high = fragmentation_score_wmark(proactiveness, False, kernel)
    if proactiveness == 0:
        verdict, reason = "disabled", "vm.compaction_proactiveness is 0: no proactive compaction"
    elif kswapd_running:
        verdict, reason = "kswapd_running", (f"kswapd is running on the node: kcompactd skips proactive "
                                             f"compaction (score {node_score}, high {high})")
    elif node_score > high:
        verdict, reason = "will_compact", (f"node score {node_score} > high {high}: kcompactd compacts, "
                                           f"each zone until its own score <= low {low}")
    else:
        verdict, reason = "will_not", f"node score {node_score} <= high {high}: no proactive compaction"
    return ProactiveVerdict(verdict, node_score, low, high, reason)


# --- watermark check -----------------------------------------------------------------

@dataclass(frozen=True)
class WatermarkCheck:
    """The outcome of :func:`zone_watermark_ok`; true in a boolean context when it passes."""

    ok: bool
    order: int
    free: int                     # free pages left after the deductions
    needed: int                   # mark + lowmem_reserve: free must be strictly above
    block_found: Optional[bool]   # a usable free block of >= order (None for order 0)
    approximate: bool             # block_found came from per-order totals, not per type

    def __bool__(self) -> bool:
        return self.ok


def _unusable_free(order: int, nr_free_cma: int, highatomic: int, alloc_cma: bool,
                   nr_unaccepted: int) -> int:
    """``__zone_watermark_unusable_free()`` (mm/page_alloc.c) for a caller without
    ``ALLOC_RESERVES`` (6.1: ``ALLOC_HARDER|ALLOC_OOM``): ``2^order - 1``, the
    highatomic pages (6.1 ``nr_reserved_highatomic``; 6.18 ``nr_free_highatomic``:
    the caller passes the right one), free CMA pages without ``ALLOC_CMA``, and
    ``NR_UNACCEPTED`` where CONFIG_UNACCEPTED_MEMORY has it (seen in a 6.5-era
    tree; absent from 6.1; not checked in 6.18: pass 0 where zoneinfo has no
    nr_unaccepted)."""
    unusable = (1 << order) - 1 + highatomic + nr_unaccepted
    if not alloc_cma:
        unusable += nr_free_cma
    return unusable


def _free_block_exists(order: int, alloc_cma: bool, free_by_type: Optional[Mapping[str, Sequence[int]]],
                       nr_free: Optional[Sequence[int]]) -> Tuple[Optional[bool], bool]:
    """The high-order loop of ``__zone_watermark_ok()``: a free block of order
    >= ``order`` on an Unmovable/Movable/Reclaimable list, or on CMA with
    ``ALLOC_CMA`` (HighAtomic counts only for ``ALLOC_HIGHATOMIC|ALLOC_OOM``,
    which no compaction caller has).  Returns (found, approximate): from
    per-order totals (buddyinfo) the answer is optimistic, since the block may
    be CMA, HighAtomic or Isolate."""
    if order == 0:
        return None, False
    if free_by_type is not None:
        types = PCP_MIGRATETYPES + (("CMA",) if alloc_cma else ())
        return any(any(free_by_type.get(mt, ())[order:]) for mt in types), False
    if nr_free is not None:
        return any(nr_free[order:]), True
    raise ValueError(f"an order-{order} check needs free_by_type (pagetypeinfo) or nr_free (buddyinfo)")


def zone_watermark_ok(order: int, free_pages: int, mark: int, *, lowmem_reserve: int = 0,
                      nr_free_cma: int = 0, highatomic: int = 0, alloc_cma: bool = False,
                      free_by_type: Optional[Mapping[str, Sequence[int]]] = None,
                      nr_free: Optional[Sequence[int]] = None, nr_unaccepted: int = 0) -> WatermarkCheck:
    """``__zone_watermark_ok()`` (mm/page_alloc.c, 6.1 and 6.18) for one zone.

    ``free_pages`` is NR_FREE_PAGES (zoneinfo ``nr_free_pages``), ``mark`` the
    watermark (zoneinfo min/low/high, boost included), ``lowmem_reserve`` the
    zoneinfo ``protection:`` entry of the highest zone index the caller may use
    (0 for kcompactd, which passes the zone's own index).  Passes when
    ``free - unusable > mark + lowmem_reserve`` (strict) and, for order > 0, a
    usable free block of that order exists: ``free_by_type`` maps pagetypeinfo
    type names to per-order counts; without it ``nr_free`` (buddyinfo) is used
    and the result is marked approximate.  The mark reductions of
    ``ALLOC_RESERVES`` callers (``__GFP_HIGH``, atomic, OOM) are not modelled.
    """
    order = _non_negative(order, "order")
    free = free_pages - _unusable_free(order, nr_free_cma, highatomic, alloc_cma, nr_unaccepted)
    needed = mark + lowmem_reserve
    block, approximate = _free_block_exists(order, alloc_cma, free_by_type, nr_free)
    ok = free > needed and (order == 0 or bool(block))
    return WatermarkCheck(ok, order, free, needed, block, approximate)


# --- compaction_suitable() -------------------------------------------------------------

@dataclass(frozen=True)
class SuitableVerdict:
    """What the ``compaction_suitable()`` chain decides for one zone and order."""

    verdict: str              # "allocatable", "reclaim_first", "no_fragmentation", "compaction_can_help"
    order: int
    free: int                 # free pages of the last watermark check, after its deductions
    needed: int               # what that check required free to be strictly above
    fragindex: Optional[int]  # __fragmentation_index() x1000, None when the kernel does not consult it
    threshold: int            # vm.extfrag_threshold
    approximate: bool         # the order-o block test used buddyinfo totals
    reason: str


def _gap_mark(order: int, wmark: int, min_wmark: int, low_wmark: int, kernel: Tuple[int, int]) -> int:
    """The order-0 target of ``__compaction_suitable()`` (mm/compaction.c).

    6.1 .. 6.14: ``(low if order > 3 else min) + compact_gap(order)``, whatever
    the caller's watermark.  From :data:`SUITABLE_WMARK_FROM_CALLER`:
    ``W + compact_gap(order)``, plus ``low - min`` when order > 3.  With W = min
    (kcompactd) both give the same number."""
    if _release(kernel) >= SUITABLE_WMARK_FROM_CALLER:
        extra = low_wmark - min_wmark if order > PAGE_ALLOC_COSTLY_ORDER else 0
        return wmark + compact_gap(order) + extra
    base = low_wmark if order > PAGE_ALLOC_COSTLY_ORDER else min_wmark
    return base + compact_gap(order)


def _nr_free_totals(nr_free: Optional[Sequence[int]],
                    free_by_type: Optional[Mapping[str, Sequence[int]]]) -> Optional[Sequence[int]]:
    """Per-order totals over every migratetype (``zone->free_area[k].nr_free``,
    what ``fill_contig_page_info()`` reads): buddyinfo, or pagetypeinfo summed."""
    if nr_free is not None or free_by_type is None:
        return nr_free
    width = max((len(counts) for counts in free_by_type.values()), default=0)
    return [sum(counts[k] for counts in free_by_type.values() if k < len(counts)) for k in range(width)]


def _fragindex_vetoes(order: int, nr_free: Sequence[int], threshold: int) -> Tuple[Optional[int], bool]:
    """The fragindex veto of ``compaction_suitable()`` (6.1 .. 6.18): only for
    order > PAGE_ALLOC_COSTLY_ORDER, and only when ``0 <= fragindex <= threshold``
    ("lack of memory, not fragmentation").  Returns (fragindex or None, vetoed)."""
    if order <= PAGE_ALLOC_COSTLY_ORDER:
        return None, False
    index = fragmentation_index(order, fill_contig_page_info(nr_free, order), len(nr_free) - 1)
    return index, 0 <= index <= threshold


def compaction_suitable_verdict(order: int, free_pages: int, min_wmark: int, low_wmark: int,
                                kernel: Tuple[int, int], *, wmark: Optional[int] = None,
                                lowmem_reserve: int = 0, nr_free_cma: int = 0, highatomic: int = 0,
                                alloc_cma: bool = False, nr_free: Optional[Sequence[int]] = None,
                                free_by_type: Optional[Mapping[str, Sequence[int]]] = None,
                                extfrag_threshold: int = EXTFRAG_THRESHOLD_DEFAULT,
                                nr_unaccepted: int = 0) -> SuitableVerdict:
    """The kernel's "can compaction run, will it help?" for one zone and order.

    6.1 ``compaction_suitable()`` / 6.18 ``compaction_suit_allocation_order()``
    then ``compaction_suitable()`` (mm/compaction.c), as kcompactd calls them
    (``kcompactd_do_work()``): W = ``wmark`` (default ``min_wmark``; kcompactd
    uses high under 6.18 ``vm.defrag_mode``, where it also counts
    ``nr_free_pages_blocks`` for step 1: pass that as ``free_pages`` only if
    you accept that step 2 then uses it too), alloc_flags without ALLOC_CMA
    unless ``alloc_cma``.

    1. ``zone_watermark_ok(order, W)`` passes -> "allocatable".
    2. The order-0 check at :func:`_gap_mark`, with ALLOC_CMA, fails ->
       "reclaim_first" (COMPACT_SKIPPED).
    3. order > 3 and ``0 <= fragindex <= extfrag_threshold`` -> "no_fragmentation"
       (COMPACT_NOT_SUITABLE_ZONE: the kernel reclaims instead).
    4. Otherwise "compaction_can_help" (deferral is not visible from user space).

    The extra 6.12+ order-0 check without CMA in compaction_suit_allocation_order()
    applies only to *async* callers without ALLOC_CMA (direct compaction's first
    try); kcompactd is sync (``async = false``), so it is not part of this view.
    Order -1 (compact_memory, proactive runs) skips every check: not accepted here.
    """
    order = _non_negative(order, "order")
    if not 0 <= extfrag_threshold <= 1000:
        raise ValueError(f"extfrag_threshold must be 0..1000, not {extfrag_threshold}")
    w = min_wmark if wmark is None else wmark
    totals = _nr_free_totals(nr_free, free_by_type)
    shared = dict(lowmem_reserve=lowmem_reserve, nr_free_cma=nr_free_cma, highatomic=highatomic,
                  nr_unaccepted=nr_unaccepted)
    first = zone_watermark_ok(order, free_pages, w, alloc_cma=alloc_cma, free_by_type=free_by_type,
                              nr_free=totals, **shared)
    if first.ok:
        return _verdict("allocatable", order, first, None, extfrag_threshold, first.approximate,
                        f"order {order} already passes watermark {w}: free {first.free} > {first.needed} "
                        f"and a free block of order >= {order} exists")
    gap = zone_watermark_ok(0, free_pages, _gap_mark(order, w, min_wmark, low_wmark, kernel),
                            alloc_cma=True, **shared)
    if not gap.ok:
        return _verdict("reclaim_first", order, gap, None, extfrag_threshold, first.approximate,
                        f"too little free memory: {gap.free} <= {gap.needed} (watermark + compaction gap "
                        f"for order {order}): the kernel reclaims first, compaction is skipped")
    index, vetoed = _fragindex_vetoes(order, totals, extfrag_threshold)
    if vetoed:
        return _verdict("no_fragmentation", order, gap, index, extfrag_threshold, first.approximate,
                        f"lack of memory, not fragmentation: fragindex {index} <= vm.extfrag_threshold "
                        f"{extfrag_threshold}: the kernel reclaims, it won't compact")
    return _verdict("compaction_can_help", order, gap, index, extfrag_threshold, first.approximate,
                    f"fragmentation: free {gap.free} > {gap.needed} but no usable order-{order} block; "
                    f"compaction can help")


def _verdict(verdict: str, order: int, check: WatermarkCheck, index: Optional[int], threshold: int,
             approximate: bool, reason: str) -> SuitableVerdict:
    """A :class:`SuitableVerdict` for ``order`` carrying the numbers of the deciding check."""
    return SuitableVerdict(verdict, order, check.free, check.needed, index, threshold, approximate, reason)
