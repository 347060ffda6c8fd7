"""mfd.compaction against cases worked by hand from the kernel's formulas.

Every expected number is worked out in the comment above it from the kernel
source (mm/compaction.c, mm/vmstat.c, mm/page_alloc.c), not obtained by running
the code under test.  The zone used for the compaction_suitable() cases has
min = 1000 and low = 1250 pages (zoneinfo "min"/"low").
"""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from mfd.compaction import (
    WMARK_FORMULA_CHANGED,
    compact_gap,
    compaction_hpage_order,
    compaction_suitable_verdict,
    extfrag_for_order,
    fragmentation_score_node,
    fragmentation_score_wmark,
    fragmentation_score_zone,
    fragmentation_score_zone_weighted,
    proactive_verdict,
    zone_watermark_ok,
)
from mfd.fragindex import fill_contig_page_info, fragmentation_index, unusable_free_index

OLD = (6, 1)
MID = (6, 12)
NEW = (6, 18)
MIN, LOW = 1000, 1250


def orders(n, **blocks):
    """An nr_free list of n orders, zero but for blocks given as o<k>=count."""
    out = [0] * n
    for key, count in blocks.items():
        out[int(key[1:])] = count
    return out


# --- COMPACTION_HPAGE_ORDER ------------------------------------------------------

@pytest.mark.parametrize("page_size,order", [
    (4096, 9),      # PAGE_SHIFT 12: PMD_SHIFT = 12 + 9 = 21, order 21 - 12 = 9
    (16384, 11),    # PAGE_SHIFT 14: PMD_SHIFT = 14 + 11 = 25, order 11
    (65536, 13),    # PAGE_SHIFT 16: PMD_SHIFT = 16 + 13 = 29, order 13
])
def test_hpage_order_without_thp_comes_from_the_page_size(page_size, order):
    assert compaction_hpage_order(None, page_size) == order


@pytest.mark.parametrize("hpage_pmd_size,page_size,order", [
    (2 << 20, 4096, 9),        # 2 MiB / 4 KiB = 512 = 2^9
    (32 << 20, 16384, 11),     # 32 MiB / 16 KiB = 2048 = 2^11
    (512 << 20, 65536, 13),    # 512 MiB / 64 KiB = 8192 = 2^13
    (16 << 20, 65536, 8),      # ppc64 hash MMU: 16 MiB / 64 KiB = 256 = 2^8, not the formula's 13
])
def test_hpage_order_with_thp_comes_from_hpage_pmd_size(hpage_pmd_size, page_size, order):
    assert compaction_hpage_order(hpage_pmd_size, page_size) == order


@pytest.mark.parametrize("hpage_pmd_size,page_size", [
    (None, 3000), (None, 0), (None, -4096), (None, 2048),   # page size: not a power of two, or below 4 KiB
    (3 << 20, 4096),                                        # 3 MiB is not a power of two
    (4096, 4096), (2048, 4096), (0, 4096),                  # not larger than a page
])
def test_hpage_order_rejects_nonsense(hpage_pmd_size, page_size):
    with pytest.raises(ValueError):
        compaction_hpage_order(hpage_pmd_size, page_size)


def test_compact_gap_is_two_blocks_of_the_order():
    # 2UL << order
    assert [compact_gap(o) for o in (0, 3, 4, 9)] == [2, 16, 32, 1024]


# --- extfrag_for_order and the zone score -------------------------------------------

def test_extfrag_for_order_hand_computed():
    nr_free = [10, 5, 2, 0]     # free_pages = 10 + 5*2 + 2*4 = 28
    # order 0: every free page is usable -> 0
    # order 1: suitable = 5 + 2*2 = 9 blocks = 18 pages; 100 * (28 - 18) / 28 = 35.7 -> 35
    # order 2: suitable = 2 blocks = 8 pages;            100 * (28 - 8) / 28 = 71.4 -> 71
    # order 3: nothing suitable;                         100 * 28 / 28 = 100
    assert [extfrag_for_order(nr_free, o) for o in range(4)] == [0, 35, 71, 100]


def test_extfrag_of_a_zone_without_free_pages_is_zero():
    # extfrag_for_order() returns 0 when free_pages == 0 (unusable_index would print 1.000)
    assert extfrag_for_order([0] * 11, 9) == 0


def test_zone_scores_for_11_12_and_14_orders():
    # x86-64, 4 KiB pages, 11 orders, hpage order 9: 512 single pages + one order-9 block:
    # free = 512 + 512 = 1024, usable for order 9 = 512 -> 100 * 512 / 1024 = 50
    assert fragmentation_score_zone(orders(11, o0=512, o9=1), 9) == 50
    # one order-10 block only: it holds two order-9 blocks = 1024 pages = all free -> 0
    assert fragmentation_score_zone(orders(11, o10=1), 9) == 0
    # arm64 16 KiB pages, 12 orders, hpage order 11: 2048 single pages + one order-11 block:
    # free = 2048 + 2048 = 4096, unusable 2048 -> 50
    assert fragmentation_score_zone(orders(12, o0=2048, o11=1), 11) == 50
    # arm64 64 KiB pages, 14 orders, hpage order 13: 100 single pages + one order-13 block:
    # free = 100 + 8192 = 8292, unusable 100 -> 10000 / 8292 = 1.2 -> 1
    assert fragmentation_score_zone(orders(14, o0=100, o13=1), 13) == 1
    # the same zone seen at order 12 (the 13-block holds two 12-blocks): 10000 / 8292 -> 1 again,
    # and at order 9 on a 4K-sized list it would not even exist: a 14-order list is not cut short
    assert extfrag_for_order(orders(14, o0=100, o13=1), 12) == 1


@pytest.mark.parametrize("nr_free,order", [
    ([10, 5, 2, 0], 1), ([10, 5, 2, 0], 2), (orders(11, o0=9728, o9=1), 9),
    (orders(11, o0=5632, o9=1), 9), (orders(14, o0=100, o13=1), 13), (orders(11, o3=7, o8=1), 9),
])
def test_zone_score_is_the_debugfs_unusable_index_divided_by_10(nr_free, order):
    # KERNEL-MM 1.2 test oracle: floor(floor(1000x)/10) = floor(100x), so the score is the
    # debugfs extfrag/unusable_index (mm/vmstat.c unusable_free_index()) in thousandths / 10
    oracle = unusable_free_index(order, fill_contig_page_info(nr_free, order)) // 10
    assert extfrag_for_order(nr_free, order) == oracle


# --- the floors of the weighted node score (KERNEL-MM 1.3) -----------------------------

def test_one_populated_zone_with_score_s_gives_node_score_s_minus_1():
    # floor(P * s / (P + 1)) = s - 1 for 0 < s < P + 1: 1_000_000 * 87 / 1_000_001 = 86.99991
    assert fragmentation_score_zone_weighted(1_000_000, 87, 1_000_000) == 86
    # through the node: the zone below scores 50 (512 singles + one order-9 block)
    assert fragmentation_score_node([(1_000_000, orders(11, o0=512, o9=1))], 9) == 49
    # and a zone score of 0 stays 0 (no negative floor)
    assert fragmentation_score_node([(1_000_000, orders(11, o10=4))], 9) == 0


def test_dma32_95_and_normal_91_give_node_score_90():
    dma32 = orders(11, o0=9728, o9=1)    # free 9728 + 512 = 10240: 100 * 9728 / 10240 = 95.0 -> 95
    normal = orders(11, o0=5632, o9=1)   # free 5632 + 512 = 6144:  100 * 5632 / 6144 = 91.67 -> 91
    assert fragmentation_score_zone(dma32, 9) == 95
    assert fragmentation_score_zone(normal, 9) == 91
    # node_present = 1_048_576 + 15_728_640 = 16_777_216
    # DMA32:  1_048_576 * 95 / 16_777_217 = 5.94  -> 5
    # Normal: 15_728_640 * 91 / 16_777_217 = 85.31 -> 85
    assert fragmentation_score_zone_weighted(1_048_576, 95, 16_777_216) == 5
    assert fragmentation_score_zone_weighted(15_728_640, 91, 16_777_216) == 85
    score = fragmentation_score_node([(1_048_576, dma32), (15_728_640, normal)], 9)
    assert score == 90
    # ... which does not exceed the default high watermark 90, although both zones score above it
    for kernel in (OLD, NEW):
        assert proactive_verdict(score, 20, False, kernel).verdict == "will_not"


def test_an_unpopulated_zone_adds_nothing_and_does_not_dilute():
    normal = orders(11, o0=512, o9=1)     # score 50
    # present 0: skipped; node_present stays 1_000_000 -> 1_000_000 * 50 / 1_000_001 -> 49
    assert fragmentation_score_node([(0, orders(11, o0=1)), (1_000_000, normal)], 9) == 49
    # a real second zone does dilute: node_present 2_000_000:
    # 1_000_000 * 50 / 2_000_001 = 24.99 -> 24, plus the empty-free zone's 1_000_000 * 0 -> 0
    assert fragmentation_score_node([(1_000_000, orders(11)), (1_000_000, normal)], 9) == 24


def test_weighted_score_rejects_negative_inputs():
    with pytest.raises(ValueError):
        fragmentation_score_zone_weighted(-1, 50, 100)
    with pytest.raises(ValueError):
        fragmentation_score_node([(-5, orders(11))], 9)


# --- fragmentation_score_wmark() ----------------------------------------------------------

@pytest.mark.parametrize("p,old,new", [
    # old: low = max(100 - p, 5), high = min(low + 10, 100)
    # new: low = 100 - p, high = min(low + min(10, low // 2), 100)
    (0, (100, 100), (100, 100)),   # new: leeway min(10, 50) = 10, min(110, 100) = 100
    (20, (80, 90), (80, 90)),      # new: leeway min(10, 40) = 10
    (81, (19, 29), (19, 28)),      # new: leeway min(10, 9) = 9
    (90, (10, 20), (10, 15)),      # new: leeway min(10, 5) = 5
    (95, (5, 15), (5, 7)),         # new: leeway min(10, 2) = 2
    (100, (5, 15), (0, 0)),        # old: low capped at 5; new: leeway min(10, 0) = 0
])
def test_wmark_tables(p, old, new):
    for kernel in (OLD, MID):
        pair = (fragmentation_score_wmark(p, True, kernel), fragmentation_score_wmark(p, False, kernel))
        assert pair == old
    assert (fragmentation_score_wmark(p, True, NEW), fragmentation_score_wmark(p, False, NEW)) == new


def test_wmark_version_cut():
    assert WMARK_FORMULA_CHANGED == (6, 16)
    # p = 90: high is 20 with the old formula, 15 with the new one
    assert fragmentation_score_wmark(90, False, (6, 15)) == 20
    assert fragmentation_score_wmark(90, False, (6, 12, 19)) == 20
    assert fragmentation_score_wmark(90, False, (6, 16)) == 15
    assert fragmentation_score_wmark(90, False, (6, 18, 2)) == 15
    assert fragmentation_score_wmark(90, False, (7, 1)) == 15
    assert fragmentation_score_wmark(90, False, (5, 15)) == 20


@pytest.mark.parametrize("p,kernel", [(-1, OLD), (101, NEW), (20, (6,)), (20, ("6", "1"))])
def test_wmark_rejects_bad_input(p, kernel):
    with pytest.raises(ValueError):
        fragmentation_score_wmark(p, True, kernel)


# --- should_proactive_compact_node() ---------------------------------------------------------

def test_proactive_verdict_is_strict_at_high():
    # p = 20: high 90 in both formulas; the rule is node_score > high
    at = proactive_verdict(90, 20, False, OLD)
    above = proactive_verdict(91, 20, False, OLD)
    assert (at.verdict, at.low, at.high, at.score) == ("will_not", 80, 90, 90)
    assert (above.verdict, above.low, above.high, above.score) == ("will_compact", 80, 90, 91)
    assert "90" in at.reason and "91" in above.reason and "80" in above.reason


def test_proactive_verdict_follows_the_version_at_high_proactiveness():
    # p = 95: 6.1 high 15, 6.18 high 7
    assert proactive_verdict(7, 95, False, NEW).verdict == "will_not"
    assert proactive_verdict(8, 95, False, NEW).verdict == "will_compact"
    assert proactive_verdict(8, 95, False, OLD).verdict == "will_not"
    assert proactive_verdict(16, 95, False, OLD).verdict == "will_compact"
    # p = 100: 6.18 high 0, so any fragmentation at all starts kcompactd; 6.1 still waits for 15
    assert proactive_verdict(0, 100, False, NEW).verdict == "will_not"
    assert proactive_verdict(1, 100, False, NEW).verdict == "will_compact"
    assert proactive_verdict(1, 100, False, OLD).verdict == "will_not"


def test_proactive_verdict_disabled_and_kswapd():
    # !sysctl_compaction_proactiveness comes first, then kswapd_is_running()
    assert proactive_verdict(100, 0, False, OLD).verdict == "disabled"
    assert proactive_verdict(100, 0, True, NEW).verdict == "disabled"
    busy = proactive_verdict(100, 20, True, NEW)
    assert busy.verdict == "kswapd_running" and busy.high == 90 and "100" in busy.reason
    # kswapd not running and the same score: compaction
    assert proactive_verdict(100, 20, False, NEW).verdict == "will_compact"


def test_proactive_verdict_is_frozen():
    v = proactive_verdict(10, 20, False, OLD)
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.verdict = "will_compact"


# --- __zone_watermark_ok() -------------------------------------------------------------------

def test_watermark_order0_is_strict():
    # free > mark + lowmem_reserve
    assert zone_watermark_ok(0, 1001, 1000).ok
    assert not zone_watermark_ok(0, 1000, 1000).ok
    # with a reserve of 100 for the caller's highest zone: needed 900 + 100 = 1000
    assert not zone_watermark_ok(0, 1000, 900, lowmem_reserve=100)
    check = zone_watermark_ok(0, 1001, 900, lowmem_reserve=100)
    assert check and (check.free, check.needed, check.block_found) == (1001, 1000, None)


def test_watermark_subtracts_order_highatomic_and_cma():
    block9 = orders(11, o9=1)
    # order 4 subtracts 2^4 - 1 = 15: 1016 - 15 = 1001 > 1000, 1015 - 15 = 1000 is not
    assert zone_watermark_ok(4, 1016, 1000, nr_free=orders(11, o4=1)).ok
    assert not zone_watermark_ok(4, 1015, 1000, nr_free=orders(11, o4=1)).ok
    # highatomic: 1513 - 512 = 1001 passes, 1513 - 513 = 1000 does not
    assert zone_watermark_ok(0, 1513, 1000, highatomic=512).ok
    assert not zone_watermark_ok(0, 1513, 1000, highatomic=513).ok
    # free CMA pages count only with ALLOC_CMA: 1200 - 200 = 1000 fails, 1200 passes
    assert not zone_watermark_ok(0, 1200, 1000, nr_free_cma=200).ok
    assert zone_watermark_ok(0, 1200, 1000, nr_free_cma=200, alloc_cma=True).ok
    # all together at order 9: 3000 - 511 - 100 - 300 = 2089
    check = zone_watermark_ok(9, 3000, 2000, highatomic=100, nr_free_cma=300, nr_free=block9)
    assert (check.ok, check.free, check.needed) == (True, 2089, 2000)


def test_watermark_block_must_be_on_an_allowed_list():
    plenty = 100_000
    cma_only = {"Movable": orders(11, o0=10), "CMA": orders(11, o9=1), "HighAtomic": orders(11, o10=1)}
    # an order-9 block exists only on CMA (and HighAtomic): not usable without ALLOC_CMA
    check = zone_watermark_ok(9, plenty, 1000, free_by_type=cma_only)
    assert (check.ok, check.block_found, check.approximate) == (False, False, False)
    # ALLOC_CMA makes the CMA list count
    assert zone_watermark_ok(9, plenty, 1000, free_by_type=cma_only, alloc_cma=True).ok
    # a Reclaimable order-10 block serves order 9 (any order >= the request)
    assert zone_watermark_ok(9, plenty, 1000, free_by_type={"Reclaimable": orders(11, o10=1)}).ok
    # an order-8 Movable block does not
    assert not zone_watermark_ok(9, plenty, 1000, free_by_type={"Movable": orders(11, o8=3)}).ok


def test_watermark_from_buddyinfo_is_approximate():
    # buddyinfo counts the HighAtomic order-10 block as free: optimistic, flagged approximate
    check = zone_watermark_ok(9, 100_000, 1000, nr_free=orders(11, o0=10, o10=1))
    assert (check.ok, check.block_found, check.approximate) == (True, True, True)
    # pagetypeinfo knows it is HighAtomic: no block
    exact = zone_watermark_ok(9, 100_000, 1000, free_by_type={"HighAtomic": orders(11, o10=1)},
                              nr_free=orders(11, o10=1))
    assert (exact.ok, exact.approximate) == (False, False)


def test_watermark_high_order_needs_block_counts():
    with pytest.raises(ValueError):
        zone_watermark_ok(9, 100_000, 1000)
    with pytest.raises(ValueError):
        zone_watermark_ok(-1, 100_000, 1000)


# --- compaction_suitable(), kcompactd view (W = min) -------------------------------------------

def suitable(order, nr_free, kernel=OLD, **kw):
    free = sum(n << k for k, n in enumerate(nr_free))       # NR_FREE_PAGES consistent with buddyinfo
    return compaction_suitable_verdict(order, free, MIN, LOW, kernel, free_by_type={"Movable": nr_free}, **kw)


@pytest.mark.parametrize("kernel", [OLD, NEW])
def test_allocatable_at_the_strict_boundary(kernel):
    # order 9, one Movable order-9 block:
    # 999 singles: free 999 + 512 = 1511, minus 2^9 - 1 = 511 -> 1000, not > min 1000
    below = suitable(9, orders(11, o0=999, o9=1), kernel)
    assert below.verdict != "allocatable"
    # 1000 singles: free 1512 - 511 = 1001 > 1000 -> allocatable now
    at = suitable(9, orders(11, o0=1000, o9=1), kernel)
    assert (at.verdict, at.order, at.free, at.needed, at.fragindex) == ("allocatable", 9, 1001, 1000, None)
    assert not at.approximate and "1001" in at.reason


@pytest.mark.parametrize("kernel", [OLD, NEW])
def test_reclaim_first_at_the_strict_boundary(kernel):
    # order 9 > 3: order-0 target = low + 2 << 9 = 1250 + 1024 = 2274
    # (6.18: min + 1024 + (low - min) = 1000 + 1024 + 250 = 2274)
    # 2274 single pages: no order-9 block, and 2274 is not > 2274 -> reclaim first
    v = suitable(9, orders(11, o0=2274), kernel)
    assert (v.verdict, v.free, v.needed, v.fragindex) == ("reclaim_first", 2274, 2274, None)
    assert "2274" in v.reason
    # 2275 passes the gap; fragindex at order 9 for 2275 single pages:
    # 1000 - (1000 + 2275*1000/512) / 2275 = 1000 - (1000 + 4443) / 2275 = 1000 - 2 = 998 > 500
    v = suitable(9, orders(11, o0=2275), kernel)
    assert (v.verdict, v.free, v.needed, v.fragindex, v.threshold) == \
        ("compaction_can_help", 2275, 2274, 998, 500)


def test_highatomic_is_subtracted_in_the_gap_check_too():
    # the gap check passes ALLOC_CMA only, no ALLOC_RESERVES: 2275 - 1 = 2274 is not > 2274
    v = suitable(9, orders(11, o0=2275), highatomic=1)
    assert (v.verdict, v.free, v.needed) == ("reclaim_first", 2274, 2274)


def test_no_fragmentation_only_above_order_3():
    # order 4, 200 order-3 blocks: free 1600, no order-4 block
    # gap: low + 2 << 4 = 1250 + 32 = 1282 < 1600
    # fragindex: 1000 - (1000 + 1600*1000/16) / 200 = 1000 - 101000/200 = 1000 - 505 = 495 <= 500
    v = suitable(4, orders(11, o3=200))
    assert (v.verdict, v.free, v.needed, v.fragindex, v.threshold) == \
        ("no_fragmentation", 1600, 1282, 495, 500)
    assert "495" in v.reason and "500" in v.reason
    # order 3, 300 order-2 blocks: free 1200, no order-3 block; gap min + 16 = 1016 < 1200;
    # the index would be 1000 - (1000 + 1200*1000/8) / 300 = 1000 - 503 = 497 <= 500 ...
    assert fragmentation_index(3, fill_contig_page_info(orders(11, o2=300), 3)) == 497
    # ... but order 3 is not costly: no veto, and the kernel does not even compute it
    v = suitable(3, orders(11, o2=300))
    assert (v.verdict, v.free, v.needed, v.fragindex) == ("compaction_can_help", 1200, 1016, None)


def test_extfrag_threshold_is_inclusive():
    # the order-4 zone above has fragindex 495
    assert suitable(4, orders(11, o3=200), extfrag_threshold=495).verdict == "no_fragmentation"
    v = suitable(4, orders(11, o3=200), extfrag_threshold=494)
    assert (v.verdict, v.fragindex, v.threshold) == ("compaction_can_help", 495, 494)
    with pytest.raises(ValueError):
        suitable(4, orders(11, o3=200), extfrag_threshold=1001)


def test_negative_fragindex_is_not_a_veto():
    # order 9; the only order-9 block is CMA, 2000 Movable singles: free 2000 + 512 = 2512
    # step 1 (no ALLOC_CMA): 2512 - 511 - 512 = 1489 > 1000 but no usable block -> fails
    # gap (ALLOC_CMA): 2512 > 2274; fragindex = -1000 (a suitable block exists) -> not in 0..500
    by_type = {"Movable": orders(11, o0=2000), "CMA": orders(11, o9=1)}
    v = compaction_suitable_verdict(9, 2512, MIN, LOW, OLD, nr_free_cma=512, free_by_type=by_type)
    assert (v.verdict, v.free, v.needed, v.fragindex) == ("compaction_can_help", 2512, 2274, -1000)
    # with ALLOC_CMA the CMA block makes it allocatable: 2512 - 511 = 2001 > 1000
    v = compaction_suitable_verdict(9, 2512, MIN, LOW, OLD, nr_free_cma=512, free_by_type=by_type,
                                    alloc_cma=True)
    assert (v.verdict, v.free) == ("allocatable", 2001)


def test_fragindex_uses_every_type_of_pagetypeinfo():
    # the order-4 zone again, split over two types: totals are 200 order-3 blocks -> 495
    by_type = {"Movable": orders(11, o3=150), "Unmovable": orders(11, o3=50)}
    v = compaction_suitable_verdict(4, 1600, MIN, LOW, NEW, free_by_type=by_type)
    assert (v.verdict, v.fragindex, v.approximate) == ("no_fragmentation", 495, False)


@pytest.mark.parametrize("order,needed", [
    (1, 1004),    # min + 2 << 1
    (2, 1008),    # min + 2 << 2
    (3, 1016),    # min + 2 << 3
    (4, 1282),    # low + 2 << 4 (6.18: min + 32 + 250)
    (9, 2274),    # low + 2 << 9
    (10, 3298),   # low + 2 << 10 = 1250 + 2048
])
def test_kcompactd_gap_target_is_the_same_in_61_and_618(order, needed):
    # an empty zone: never allocatable, the gap check fails and reports its target
    for kernel in (OLD, MID, NEW):
        v = compaction_suitable_verdict(order, 0, MIN, LOW, kernel, nr_free=orders(11))
        assert (v.verdict, v.free, v.needed) == ("reclaim_first", 0, needed)


def test_caller_watermark_matters_from_615_only():
    # W = high 1500 (6.18 defrag_mode kcompactd, vmscan compaction_ready()), order 4 zone above:
    # 6.1/6.12 ignore W in the gap check: low + 32 = 1282 < 1600 -> fragindex veto
    for kernel in (OLD, MID, (6, 14)):
        v = suitable(4, orders(11, o3=200), kernel, wmark=1500)
        assert (v.verdict, v.needed) == ("no_fragmentation", 1282)
    # 6.15+: W + 32 + (low - min) = 1500 + 32 + 250 = 1782 >= 1600 -> reclaim first
    for kernel in ((6, 15), NEW):
        v = suitable(4, orders(11, o3=200), kernel, wmark=1500)
        assert (v.verdict, v.needed) == ("reclaim_first", 1782)


def test_suitable_with_12_and_14_orders():
    # arm64 16K pages, 12 orders, order 11: gap low + 2 << 11 = 1250 + 4096 = 5346 >= 3000
    v = suitable(11, orders(12, o0=3000))
    assert (v.verdict, v.needed) == ("reclaim_first", 5346)
    # arm64 64K pages, 14 orders, order 13: five order-12 blocks, free 5 * 4096 = 20480
    # gap: 1250 + 2 << 13 = 17634 < 20480
    # fragindex: 1000 - (1000 + 20480*1000/8192) / 5 = 1000 - 3500 / 5 = 1000 - 700 = 300
    v = suitable(13, orders(14, o12=5))
    assert (v.verdict, v.needed, v.fragindex) == ("no_fragmentation", 17634, 300)
    # plus one order-13 block: free 20480 + 8192 = 28672, minus 8191 = 20481 > 1000 -> allocatable
    v = suitable(13, orders(14, o12=5, o13=1))
    assert (v.verdict, v.free) == ("allocatable", 20481)


def test_buddyinfo_only_verdict_is_flagged_approximate():
    nr_free = orders(11, o0=1000, o9=1)     # free 1512, as in the allocatable case
    v = compaction_suitable_verdict(9, 1512, MIN, LOW, NEW, nr_free=nr_free)
    assert (v.verdict, v.approximate) == ("allocatable", True)


def test_suitable_rejects_order_minus_1():
    # order -1 (compact_memory, proactive runs) skips every check in the kernel
    with pytest.raises(ValueError):
        compaction_suitable_verdict(-1, 10_000, MIN, LOW, NEW, nr_free=orders(11))


# --- the module stays pure ------------------------------------------------------------------------

def test_module_imports_only_fragindex_and_stdlib_and_runs_nothing():
    path = Path(__file__).parent.parent / "src" / "mfd" / "compaction.py"
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    assert imported == {"__future__", "dataclasses", "typing", ".fragindex"}
    # top level: docstring, imports, constants, functions and classes only
    allowed = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)
    for node in tree.body[1:]:
        assert isinstance(node, allowed), ast.dump(node)[:80]
        if isinstance(node, ast.Assign):
            assert not any(isinstance(n, ast.Call) for n in ast.walk(node.value)), ast.dump(node)[:80]
