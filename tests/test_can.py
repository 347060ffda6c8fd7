"""``mfd can``: the /proc/pagetypeinfo and zoneinfo-limits parsers on saved
files, the forecast's arithmetic on hand-worked cases, and the command on
this kernel against /proc/buddyinfo read around it."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from conftest import ROOT, mfd_argv, needs_root, run_mfd
from mfd.diagnose.can import blocks_now, compaction_bound, highatomic_pages, zone_can
from mfd.errors import UsageError
from mfd.model.pagetypes import ZoneLimits
from mfd.sources.pagetypeinfo import PageTypeInfoError, parse_pagetypeinfo
from mfd.sources.procfs import ProcfsError, parse_buddyinfo, parse_zone_limits

HERE = os.path.dirname(__file__)
PT = os.path.join(HERE, "fixtures", "pagetypeinfo")
PROC = os.path.join(HERE, "fixtures", "proc")


def _read(*parts):
    with open(os.path.join(*parts)) as f:
        return f.read()


# -- /proc/pagetypeinfo ----------------------------------------------------------------

def test_pagetypeinfo_of_this_kind_of_machine():
    pt = parse_pagetypeinfo(_read(PT, "one_node_6.18.txt"))
    assert (pt.pageblock_order, pt.pages_per_block) == (9, 512)
    assert pt.migratetypes == ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")
    assert pt.free[(0, "Normal")]["Movable"] == (0, 0, 0, 1, 1, 1, 1, 0, 1, 0, 4474)
    assert pt.blocks[(0, "Normal")] == {"Unmovable": 687, "Movable": 9952, "Reclaimable": 113,
                                        "HighAtomic": 0, "Isolate": 0}
    assert pt.mixed is None and not pt.capped
    # DMA: 1 order-8 Unmovable block, 1 order-9 and 3 order-10 Movable ones
    assert pt.free_pages((0, "DMA"), "Unmovable") == 256
    assert pt.free_pages((0, "DMA"), "Movable") == 512 + 3 * 1024


def test_pagetypeinfo_two_nodes_cma_capped_and_mixed():
    pt = parse_pagetypeinfo(_read(PT, "two_nodes_cma_capped.txt"))
    assert "CMA" in pt.migratetypes and len(pt.migratetypes) == 6
    assert pt.free[(0, "DMA32")]["Movable"][0] == 100000
    assert pt.capped == {(0, "DMA32", "Movable", 0)}
    assert pt.blocks[(0, "DMA32")]["CMA"] == 16
    assert pt.mixed == {(1, "Normal"): {"Unmovable": 3, "Movable": 7, "Reclaimable": 0,
                                        "HighAtomic": 0, "CMA": 0, "Isolate": 0}}
    assert set(pt.free) == {(0, "DMA32"), (1, "Normal")}


def _synthetic(nr_orders, order=13):
    cols = "".join(f"{o:6d} " for o in range(nr_orders))
    cells = "".join(f"{1:6d} " for _ in range(nr_orders))
    rows = "".join(f"Node    0, zone   Normal, type {t:>12s} {cells}\n"
                   for t in ("Unmovable", "Movable", "Reclaimable", "HighAtomic"))
    return (f"Page block order: {order}\nPages per block:  {1 << order}\n\n"
            f"Free pages count per migrate type at order {cols}\n{rows}\n"
            f"Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic \n"
            f"Node 0, zone   Normal            1            2            3            4 \n")


@pytest.mark.parametrize("nr_orders", [11, 12, 14])   # x86-64 4K, arm64 16K, arm64 64K
def test_pagetypeinfo_any_number_of_orders(nr_orders):
    pt = parse_pagetypeinfo(_synthetic(nr_orders))
    assert len(pt.free[(0, "Normal")]["Movable"]) == nr_orders
    assert pt.pageblock_order == 13 and pt.migratetypes[-1] == "HighAtomic"


@pytest.mark.parametrize("damage, where", [
    (lambda t: t.replace("Pages per block:  8192", "Pages per block:  8000"), r"2\^13"),
    (lambda t: t.replace("      1 \nNode    0, zone   Normal, type      Movable",
                         "      x \nNode    0, zone   Normal, type      Movable", 1), "line 5"),
    (lambda t: t.split("Number of blocks")[0], "truncated"),
    (lambda t: t.replace("            4 \n", "\n"), "block counts"),
    (lambda t: "garbage\n" + t, "line 1"),
])
def test_pagetypeinfo_damage_is_one_line(damage, where):
    with pytest.raises(PageTypeInfoError, match=where) as e:
        parse_pagetypeinfo(damage(_synthetic(11)))
    assert "\n" not in str(e.value)


@needs_root
def test_pagetypeinfo_live_sums_to_buddyinfo():
    """Summed over migratetypes, the free counts are buddyinfo's (read just
    before and after: the allocator moves on meanwhile)."""
    from mfd.sources.pagetypeinfo import read_pagetypeinfo
    for _attempt in range(5):
        before = parse_buddyinfo(_read("/proc/buddyinfo"))
        pt = read_pagetypeinfo()
        after = parse_buddyinfo(_read("/proc/buddyinfo"))
        ok = True
        for key, types in pt.free.items():
            total = [sum(c[o] for c in types.values()) for o in range(len(next(iter(types.values()))))]
            lo = [min(a, b) for a, b in zip(before[key], after[key])]
            hi = [max(a, b) for a, b in zip(before[key], after[key])]
            capped = {o for (n, z, _t, o) in pt.capped if (n, z) == key}
            ok &= all(lo[o] - 64 <= total[o] <= hi[o] + 64 for o in range(len(total))
                      if o not in capped)
        if ok:
            return
        time.sleep(0.2)
    pytest.fail(f"pagetypeinfo free counts {total} outside buddyinfo's {lo}..{hi}")


# -- /proc/zoneinfo limits -------------------------------------------------------------

def test_zone_limits_of_a_6_18_zoneinfo():
    zones = parse_zone_limits(_read(PROC, "one_node", "zoneinfo"))
    by = {(z.node, z.zone): z for z in zones}
    assert [z.zone_idx for z in zones] == list(range(len(zones)))
    normal = by[(0, "Normal")]
    assert normal.min < normal.low < normal.high
    assert len(normal.protection) == len(zones)
    assert normal.free >= 0 and normal.present > 0


def test_zone_limits_with_and_without_promo():
    text = _read(PROC, "one_node", "zoneinfo")
    with_promo = parse_zone_limits(text)
    without = parse_zone_limits("\n".join(ln for ln in text.split("\n")
                                          if ln.split()[:1] != ["promo"]))
    assert any(z.promo is not None for z in with_promo) == ("promo" in text)
    assert all(z.promo is None for z in without)
    assert [(z.min, z.low, z.high) for z in with_promo] == \
        [(z.min, z.low, z.high) for z in without]


def test_zone_limits_truncated_is_one_line():
    text = _read(PROC, "one_node", "zoneinfo")
    cut = text[:text.index("        low")]
    with pytest.raises(ProcfsError, match="no 'low' line"):
        parse_zone_limits(cut)


@needs_root
def test_zone_limits_live_match_zoneinfo_numbers():
    text = _read("/proc/zoneinfo")
    for z in parse_zone_limits(text):
        assert z.high >= z.low >= z.min >= 0
    assert len(parse_zone_limits(text)) == text.count("\nNode ") + text.startswith("Node ")


# -- the forecast ------------------------------------------------------------------------

def _limits(free, mn=100, low=125, high=150, cma=0, node=0, zone="Normal"):
    return ZoneLimits(node=node, zone=zone, zone_idx=2, free=free, boost=0, min=mn, low=low,
                      high=high, promo=None, managed=free * 2, present=free * 2,
                      protection=(0, 0, 0), nr_free_cma=cma, nr_free_pages_blocks=None,
                      pcp_count=0)


def test_blocks_now_counts_larger_blocks_in_units_of_the_order():
    nr_free = [5, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3]     # two order-9, three order-10 blocks
    assert blocks_now(nr_free, 9) == 2 + 3 * 2      # an order-10 block is two order-9 ones
    assert blocks_now(nr_free, 10) == 3
    assert blocks_now(nr_free, 0) == 5 + 2 * 512 + 3 * 1024
    assert blocks_now(nr_free, 11) == 0


def test_bound_never_exceeds_free_pages_nor_the_movable_region():
    pt = parse_pagetypeinfo(_read(PT, "two_nodes_cma_capped.txt"))
    nr_free = [1000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    free_pages = 1000 + 1024
    # node 1 Normal: 200 Movable blocks of 512 pages, but only 2024 free pages:
    # at most 2024 >> 9 = 3 order-9 blocks after compaction; 2 now (one order-10)
    assert compaction_bound(9, nr_free, free_pages, pt, (1, "Normal")) == (3, "pagetypeinfo")
    assert compaction_bound(9, nr_free, free_pages, None, (1, "Normal")) == (3, "free pages")
    # 10 Movable pages' worth: a region of 2 blocks caps it below the free pages
    tiny = parse_pagetypeinfo(_synthetic(11, order=9).replace(
        "Node 0, zone   Normal            1            2            3            4",
        "Node 0, zone   Normal            1            2            0            0"))
    # two Movable pageblocks, plus what is free on the Unmovable and Reclaimable
    # lists: one block of each order, so >= 9: 1 + 1*2 = 3 on each (HighAtomic's
    # are held back and do not count)
    assert compaction_bound(9, [0] * 11, 100 << 9, tiny, (0, "Normal")) == (2 + 3 + 3,
                                                                            "pagetypeinfo")


def test_highatomic_follows_the_kernel_version():
    pt = parse_pagetypeinfo(_read(PT, "two_nodes_cma_capped.txt"))
    # 6.1: nr_reserved_highatomic, one whole block; 6.18: the free HighAtomic pages
    assert highatomic_pages(pt, (0, "DMA32"), (6, 1)) == 512
    assert highatomic_pages(pt, (0, "DMA32"), (6, 18)) == 512      # one free order-9 block
    assert highatomic_pages(pt, (1, "Normal"), (6, 1)) == 0
    assert highatomic_pages(None, (1, "Normal"), (6, 18)) == 0


def test_zone_can_verdicts():
    nr_free = [100, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0]    # 100 + 2048 free pages
    free = 100 + 4 * 512
    ok = zone_can(9, nr_free, _limits(free), (6, 18), 500)
    assert ok.now == 4 and ok.verdict.verdict == "allocatable"
    # the same free pages, none in a block of order >= 9: 2148 free, gap mark
    # low(125) + 2<<9 = 1149: compaction has room; fragindex of 2148 order-0
    # pages at order 9 is 1000 - (1000 + 2148000/512) / 2148 = 1000 - 2 = 998 > 500
    frag = zone_can(9, [free] + [0] * 10, _limits(free), (6, 18), 500)
    assert frag.now == 0 and frag.verdict.verdict == "compaction_can_help"
    assert frag.verdict.fragindex == 998
    # below the gap: reclaim first
    low = zone_can(9, [1000] + [0] * 10, _limits(1000), (6, 1), 500)
    assert low.verdict.verdict == "reclaim_first"
    # above MAX order: no verdict, no block now
    giant = zone_can(18, nr_free, _limits(free), (6, 18), 500)
    assert giant.verdict is None and giant.now == 0


# -- the command ---------------------------------------------------------------------------

@pytest.mark.parametrize("ask, order", [("512@2M", 9), ("4@1G", 18), ("100@9", 9),
                                        ("1@4k", 0), ("2@8MiB", 11)])
def test_ask_spellings(ask, order):
    from mfd.cli.can import parse_ask
    a = parse_ask(ask, 4096)
    assert a.order == order and a.count == int(ask.split("@")[0])


@pytest.mark.parametrize("ask", ["512", "0@2M", "5@3M", "1@2K", "x@9", "1@99", "-1@9", "@9"])
def test_bad_asks_are_usage_errors(ask):
    from mfd.cli.can import parse_ask
    with pytest.raises(UsageError):
        parse_ask(ask, 4096)


def _order_blocks(order):
    return sum(blocks_now(c, order) for c in parse_buddyinfo(_read("/proc/buddyinfo")).values())


@needs_root
def test_can_now_equals_buddyinfo_and_exit_status():
    for _attempt in range(5):
        before = _order_blocks(9)
        r = run_mfd("can", "--json", "1@2M")
        after = _order_blocks(9)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)["asks"][0]
        if min(before, after) <= doc["now"] <= max(before, after):
            break
    else:
        pytest.fail(f"mfd can said {doc['now']}, buddyinfo {before} then {after}")
    assert doc["order"] == 9 and doc["fits_now"] is True
    assert all(z["now"] <= z["after_compaction"] for z in doc["zones"])
    assert {z["after_compaction_basis"] for z in doc["zones"]} == {"pagetypeinfo"}
    too_many = run_mfd("can", f"{doc['now'] * 1000 + 1}@2M")
    assert too_many.returncode == 1 and "fits now: no" in too_many.stdout
    assert run_mfd("can", "3@3M").returncode == 2
    assert run_mfd("can", "1@2M", "-c", "Bogus").returncode == 2


def test_can_without_root_counts_free_pages_only():
    """As nobody: /proc/pagetypeinfo is root's; the bound says what it used."""
    if not ROOT:
        pytest.skip("needs root to become nobody")
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        *mfd_argv("can", "--json", "1@2M")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    zones = json.loads(r.stdout)["asks"][0]["zones"]
    assert {z["after_compaction_basis"] for z in zones} == {"free pages"}
    assert r.stderr.count("root only") == 1


@needs_root
def test_can_without_argument_reports_thp_and_hugetlb_sizes():
    r = run_mfd("can", "--json")
    assert r.returncode == 0, r.stderr
    labels = [a["label"] for a in json.loads(r.stdout)["asks"]]
    sizes = sorted(int(d[len("hugepages-"):-2]) << 10 for d in os.listdir("/sys/kernel/mm/hugepages"))
    if os.path.exists("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"):
        assert labels[0] == "THP"
    assert len(labels) >= len(set(sizes) - {2 << 20}) + 1


@needs_root
def test_can_verdict_follows_a_workload_taking_the_large_blocks():
    """HugeBlocks takes the free order >= 9 blocks as hugetlb pages: "now"
    follows /proc/buddyinfo down, and up again when they are given back
    (not all the way: freeing a hugetlb page allocates its vmemmap again
    where HVO is on, which splits some blocks)."""
    import workloads

    def now():
        for _attempt in range(5):
            before = _order_blocks(9)
            doc = json.loads(run_mfd("can", "--json", "1@2M").stdout)["asks"][0]
            after = _order_blocks(9)
            if min(before, after) - 8 <= doc["now"] <= max(before, after) + 8:
                return doc
        pytest.fail(f"mfd can said {doc['now']}, buddyinfo {before} then {after}")
    first = now()["now"]
    ask = f"{first // 2}@2M"         # fits before and after, not while the blocks are taken
    assert run_mfd("can", ask).returncode == 0
    with workloads.HugeBlocks(floor_mib=1024) as hb:
        during = now()
        taken = hb.taken
        held = run_mfd("can", ask)
    after = now()["now"]
    assert held.returncode == 1 and "fits now: no" in held.stdout, held.stdout
    assert run_mfd("can", ask).returncode == 0
    print(f"order-9 blocks: {first} before, {during['now']} with {taken} taken, {after} after")
    assert taken > first // 2 and during["now"] < first // 2
    assert after > during["now"] + taken // 2
    assert during["fits_now"] == (during["now"] >= 1)


def test_kernel_version_and_sizes(tmp_path):
    from mfd.kernel import facts
    assert facts.kernel_version("6.18.44-fc-v1147") == (6, 18, 44)
    assert facts.kernel_version("6.1.0-57-amd64") == (6, 1, 0)
    assert facts.kernel_version("5.15") == (5, 15)
    assert facts.kernel_version("weird") == (0, 0)
    for name in ("hugepages-2048kB", "hugepages-1048576kB", "hugepages-junk", "other"):
        (tmp_path / name).mkdir()
    assert facts.hugetlb_sizes(str(tmp_path)) == [2 << 20, 1 << 30]
    assert facts.hugetlb_sizes(str(tmp_path / "absent")) == []
    (tmp_path / "thp").write_text("2097152\n")
    assert facts.hpage_pmd_size(str(tmp_path / "thp")) == 2 << 20
    assert facts.hpage_pmd_size(str(tmp_path / "none")) is None
    (tmp_path / "vm").mkdir()
    (tmp_path / "vm" / "extfrag_threshold").write_text("500\n")
    assert facts.sysctl_int("vm/extfrag_threshold", 1, root=str(tmp_path)) == 500
    assert facts.sysctl_int("vm/absent", 7, root=str(tmp_path)) == 7


def test_the_pageblock_map_bounds_orders_of_pageblock_order_and_up():
    """mfd can --map: pinned blocks cannot be freed, so the bound is the
    aligned runs of free and compactable pageblocks whose used pages fit in
    the Movable/CMA free pages below pageblock order."""
    import numpy as np
    from mfd import pageblocks as pb
    from mfd.model.pagetypes import PageTypeInfo
    from mfd.model.physmap import ZoneMap
    F, C, X = pb.FREE, pb.COMPACTABLE, pb.PINNED
    classes = np.array([F, F, C, C, X, C, F, F], np.uint8)       # blocks 8..15
    movable = np.where(classes == C, 12, np.where(classes == X, 500, 0)).astype(np.uint32)
    zm = ZoneMap(0, "Normal", 8 * 512, 16 * 512, 8, classes, movable)
    nr_free = [10, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0]                  # 4 free order-9 blocks
    lim = _limits(free=4 * 512 + 3 * 500 + 24)
    # 24 free Movable order-0 pages: room for two compactable blocks' 12 used pages each
    pt = PageTypeInfo(9, 512, ("Unmovable", "Movable"),
                      free={(0, "Normal"): {"Movable": (24,) + (0,) * 8 + (4, 0),
                                            "Unmovable": (0,) * 11}},
                      blocks={(0, "Normal"): {"Movable": 8, "Unmovable": 0}})
    r9 = zone_can(9, nr_free, lim, (6, 18), 500, pt, zm, 512)
    assert (r9.now, r9.bound, r9.bound_basis) == (4, 6, "pageblock map")
    # order 10: pairs (8,9)=FF (10,11)=CC (12,13)=XC (14,15)=FF; CC needs 24 pages
    r10 = zone_can(10, nr_free, lim, (6, 18), 500, pt, zm, 512)
    assert (r10.bound, r10.bound_basis) == (3, "pageblock map")
    # below pageblock order the map adds nothing
    assert zone_can(4, nr_free, lim, (6, 18), 500, pt, zm, 512).bound_basis == "pagetypeinfo"


def test_orders_above_the_buddy_allocator_count_huge_blocks_and_no_target_limit():
    """1 GiB pages come from alloc_contig_pages(): its isolation migrates THPs
    (cc->alloc_contig) into any free memory, so a GiB of THPs next to a free
    GiB is one page after compaction."""
    import numpy as np
    from mfd import pageblocks as pb
    from mfd.diagnose.can import map_bound
    from mfd.model.physmap import ZoneMap
    classes = np.array([pb.HUGE] * 256 + [pb.FREE] * 256 + [pb.FREE] * 512, np.uint8)
    movable = np.where(classes == pb.HUGE, 512, 0).astype(np.uint32)
    zm = ZoneMap(0, "Normal", 0, 1024 * 512, 0, classes, movable)
    assert map_bound(18, zm, 9, targets=0, contig=True) == 2
    assert map_bound(18, zm, 9, targets=0, contig=False) == 1     # compaction skips THPs


def test_capped_pagetypeinfo_counts_give_no_target_limit():
    from mfd.diagnose.can import migration_targets
    from mfd.model.pagetypes import PageTypeInfo
    free = {(0, "Normal"): {"Movable": (100000,) + (0,) * 10, "Unmovable": (5,) + (0,) * 10}}
    pt = PageTypeInfo(9, 512, ("Unmovable", "Movable"), free=free, blocks={})
    assert migration_targets(pt, (0, "Normal"), 9) == 100005          # every type counts
    capped = PageTypeInfo(9, 512, ("Unmovable", "Movable"), free=free, blocks={},
                          capped=frozenset({(0, "Normal", "Movable", 0)}))
    assert migration_targets(capped, (0, "Normal"), 9) is None
