"""mfd map's rules and parsers on synthetic input: kpageflags words built bit
by bit as 6.1 and 6.18 write them (KERNEL-MM.md 4.2-4.5), fake memory-block
and node trees, fake kpage files, and the terminal picture."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

from mfd import pageblocks as pb
from mfd.kernel.kpageflags import (MemoryBlocks, memory_blocks, parse_iomem_ram,
                                   read_entries)
from mfd.model import Filter
from mfd.model.physmap import PhysMap, ZoneMap
from mfd.sinks import maptext
from mfd.sinks.mapdoc import map_doc

P = 512


def bits(*names):
    return int(pb._bits(*names)) if names else 0


BUDDY, LRU, ANON, MMAP = bits("BUDDY"), bits("LRU"), bits("ANON"), bits("MMAP")
HEAD, TAIL = bits("COMPOUND_HEAD"), bits("COMPOUND_TAIL")
THP, HUGE = bits("THP"), bits("HUGE")


def block(*pages, fill=0):
    """One pageblock: ``pages`` are (count, flags) runs, the rest ``fill``."""
    out = np.full(P, fill, np.uint64)
    at = 0
    for count, flags in pages:
        out[at:at + count] = flags
        at += count
    return out


def one(flags, valid=None, unevictable_movable=True):
    valid = np.ones(len(flags), bool) if valid is None else valid
    t = pb.classify(np.asarray(flags, np.uint64), valid, P, unevictable_movable)
    return pb.CLASSES[int(t.classes[0])], t


THP_BLOCK = block((1, HEAD | THP | ANON | LRU | MMAP), (P - 1, TAIL | THP | ANON | MMAP))

CASES = {
    # every page of a free buddy block reads BUDDY, not only its head
    "free buddy": (block(fill=BUDDY), "free"),
    "free and movable": (block((100, BUDDY), fill=LRU | ANON | MMAP), "compactable"),
    "page cache": (block(fill=LRU | bits("UPTODATE")), "compactable"),
    # a new page still in a per-CPU LRU batch: no LRU yet
    "lru batch": (block((1, ANON | bits("SWAPBACKED")), fill=BUDDY), "compactable"),
    "one slab page": (block((1, bits("SLAB")), fill=LRU), "pinned"),
    "one page table": (block((1, bits("PGTABLE")), fill=BUDDY), "pinned"),
    "reserved": (block(fill=bits("RESERVED")), "pinned"),
    # the zero page is mapped: unmovable comes before movable
    "zero page mapped": (block((1, bits("ZERO_PAGE", "MMAP")), fill=LRU), "pinned"),
    "offline (balloon)": (block((8, bits("OFFLINE")), fill=BUDDY), "pinned"),
    "hwpoison": (block((1, bits("HWPOISON")), fill=LRU), "pinned"),
    # per-CPU free pages and flagless kernel pages read 0
    "pcp pages": (block((3, 0), fill=BUDDY), "uncertain"),
    "pmd thp": (THP_BLOCK, "huge"),
    "hugetlb 2M": (block((1, HEAD | HUGE), (P - 1, TAIL | HUGE)), "huge"),
    # a pageblock inside a 1 GiB hugetlb page: tails only
    "hugetlb 1G tail": (block(fill=TAIL | HUGE), "huge"),
    # 6.1's huge zero page reads THP|ZERO_PAGE: it never moves
    "huge zero page": (block((1, HEAD | THP | bits("ZERO_PAGE")), (P - 1, TAIL | THP | bits("ZERO_PAGE"))),
                       "pinned"),
    # 6.18 flags mTHP THP too: 16-page folios are movable, not a huge block
    "mthp": (np.tile(block((1, HEAD | THP | ANON | LRU | MMAP),
                           (15, TAIL | THP | ANON | MMAP))[:16], P // 16), "compactable"),
    # 6.18 migrates large folios: 4-page page-cache folios are movable
    "6.18 large folios": (np.tile(block((1, HEAD | LRU | THP | bits("UPTODATE")),
                                        (3, TAIL | THP))[:4], P // 4), "compactable"),
    # a compound kernel allocation (kmalloc_large): never free, never movable
    "kernel compound": (block((1, HEAD), (7, TAIL), fill=BUDDY), "pinned"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_block_classes(name):
    flags, want = CASES[name]
    assert one(flags)[0] == want


def test_large_folios_pin_their_block_before_6_9():
    """6.1 reads a tail's own flags (TAIL and THP, no LRU: tails are what
    their head is), and its compaction skips every compound page outside
    alloc_contig: a 4-page page-cache folio pins the block; a PMD THP is a
    huge block on both."""
    folios = np.tile(block((1, HEAD | LRU | THP | bits("UPTODATE")), (3, TAIL | THP))[:4], P // 4)
    valid = np.ones(P, bool)
    t = pb.classify(folios, valid, P, large_folios_move=False)
    assert pb.CLASSES[t.classes[0]] == "pinned" and t.kind_pages == {"large_folio": P}
    assert pb.CLASSES[pb.classify(folios, valid, P).classes[0]] == "compactable"
    assert pb.CLASSES[pb.classify(THP_BLOCK, valid, P, large_folios_move=False).classes[0]] == "huge"


@pytest.mark.parametrize("semantics", ["6.1", "6.18"])
def test_holes_on_both_kernels(semantics):
    """6.1..6.12 flag a missing page KPF_NOPAGE; 6.18 reads 0 there, and the
    hole comes from the memory blocks (valid False)."""
    flags = block(fill=LRU)
    valid = np.ones(P, bool)
    if semantics == "6.1":
        flags[200:] = bits("NOPAGE")
    else:
        flags[200:] = 0
        valid[200:] = False
    assert one(flags, valid)[0] == "hole"
    # the same zeros inside memory that exists are uncertain, not a hole
    assert one(block((200, LRU), fill=0))[0] == "uncertain"


def test_unevictable_pins_only_when_compaction_may_not_move_it():
    flags = block((1, LRU | bits("UNEVICTABLE", "MLOCKED")), fill=LRU)
    assert one(flags, unevictable_movable=True)[0] == "compactable"
    cls, t = one(flags, unevictable_movable=False)
    assert cls == "pinned" and t.kind_pages == {"unevictable": 1}


def test_pinning_kinds_and_their_cgroups():
    flags = np.concatenate([block((2, bits("SLAB")), fill=LRU),
                            block((3, bits("PGTABLE")), (1, bits("SLAB")), fill=BUDDY),
                            block(fill=BUDDY)])
    t = pb.classify(flags, np.ones(len(flags), bool), P)
    assert [pb.CLASSES[c] for c in t.classes] == ["pinned", "pinned", "free"]
    assert t.kind_pages == {"slab": 3, "page_table": 3}
    assert t.kind_blocks == {"slab": 2, "page_table": 1}
    cgroups = np.zeros(len(flags), np.uint64)
    cgroups[P:P + 3] = 4242          # page tables are __GFP_ACCOUNT: charged
    cgroups[5] = 77                  # an LRU page's memcg does not pin
    assert pb.pinning_cgroups(cgroups, t.page_unmovable) == {0: 3, 4242: 3}


def test_tally_adds_batches_in_order():
    a = pb.classify(block(fill=BUDDY), np.ones(P, bool), P)
    b = pb.classify(np.concatenate([block((1, bits("SLAB"))), block(fill=LRU)]),
                    np.ones(2 * P, bool), P)
    a.add(b)
    assert list(a.classes) == [pb.FREE, pb.PINNED, pb.COMPACTABLE]
    assert list(a.movable_pages) == [0, 0, P]
    assert a.counts()["pinned"] == 1 and a.kind_pages == {"slab": 1}


def test_runs_and_cells():
    c = np.array([pb.FREE] * 3 + [pb.PINNED] + [pb.HOLE] * 2, np.uint8)
    assert pb.runs(c) == [["free", 3], ["pinned", 1], ["hole", 2]]
    assert pb.runs(np.zeros(0, np.uint8)) == []
    assert list(pb.worst_per_cell(c, 4)) == [pb.PINNED, pb.HOLE]


def test_after_compaction_aligned_groups_and_targets():
    F, C, X, U = pb.FREE, pb.COMPACTABLE, pb.PINNED, pb.UNCERTAIN
    c = np.array([F, C, F, F, X, F, F, U], np.uint8)
    movable = np.where(c == C, 10, 0).astype(np.uint32)         # C: 10 pages to migrate
    # groups of 2 aligned to block 0: (0,1) (2,3) (4,5)x (6,7): uncertain pages
    # may be per-CPU free pages, so an upper bound counts them in
    assert pb.after_compaction(c, movable, 0, 2, None) == 3
    # classes[0] is block 1: aligned pairs are (2,3)=(C,F) (4,5)=(F,X)x (6,7)=(F,F)
    assert pb.after_compaction(c, movable, 1, 2, None) == 2
    assert pb.after_compaction(c, movable, 0, 8, None) == 0
    # the compactable block's 10 pages must find room: the others need none
    assert pb.after_compaction(c, movable, 0, 1, 9) == 6
    assert pb.after_compaction(c, movable, 0, 1, 10) == 7
    assert pb.after_compaction(c, movable, 0, 2, 0) == 2       # (2,3), (6,7)


def test_the_fewest_pages_in_use_go_first():
    c = np.array([pb.COMPACTABLE] * 3 + [pb.FREE], np.uint8)
    movable = np.array([10, 30, 20, 0], np.uint32)
    assert [pb.after_compaction(c, movable, 0, 1, t) for t in (0, 10, 30, 59, 60)] == \
        [1, 2, 3, 3, 4]


# -- the kpage files and where memory is ------------------------------------

def test_read_entries_in_batches_and_short_at_the_end(tmp_path, monkeypatch):
    import mfd.kernel.kpageflags as kp
    path = tmp_path / "kpageflags"
    np.arange(1000, dtype=np.uint64).tofile(path)
    monkeypatch.setattr(kp, "BATCH", 64)
    calls = []
    real = os.pread
    monkeypatch.setattr(kp.os, "pread", lambda fd, n, off: calls.append(n) or real(fd, n, off))
    fd = os.open(path, os.O_RDONLY)
    try:
        got = read_entries(fd, 100, 300)
        assert list(got) == list(range(100, 400)) and max(calls) == 64 * 8
        assert len(read_entries(fd, 990, 50)) == 10        # the file ends: shorter
    finally:
        os.close(fd)


def _sysfs(tmp, blocks, nodes, size=0x8000000, zones=None):
    mem = tmp / "devices/system/memory"
    mem.mkdir(parents=True)
    (mem / "block_size_bytes").write_text(f"{size:x}\n")
    for i, state in blocks.items():
        (mem / f"memory{i}").mkdir()
        (mem / f"memory{i}" / "state").write_text(state + "\n")
        if zones and i in zones:
            (mem / f"memory{i}" / "valid_zones").write_text(zones[i] + "\n")
    for node, ids in nodes.items():
        d = tmp / f"devices/system/node/node{node}"
        d.mkdir(parents=True)
        for i in ids:
            (d / f"memory{i}").mkdir()
    return str(tmp)


def test_memory_blocks_offline_absent_and_per_node(tmp_path):
    root = _sysfs(tmp_path, {0: "online", 1: "offline", 3: "online", 4: "online"},
                  {0: [0, 1], 1: [3, 4]})
    mb = memory_blocks(root)
    per = 0x8000000 // 4096
    assert mb.block_pages == per and mb.offline == 1
    pfns = np.array([0, per, 2 * per, 3 * per, 4 * per + 5, 9 * per])
    assert list(mb.valid(pfns, 0)) == [True, False, False, False, False, False]
    assert list(mb.valid(pfns, 1)) == [False, False, False, True, True, False]
    assert memory_blocks(str(tmp_path / "none")) is None


def test_iomem_system_ram_top_level_only():
    text = ("00000000-00000fff : Reserved\n00001000-0009fbff : System RAM\n"
            "00100000-bffdffff : System RAM\n  01000000-01ffffff : Kernel code\n"
            "100000000-63fffffff : System RAM\n")
    assert parse_iomem_ram(text) == [(1, 0x9f), (0x100, 0xbffe0), (0x100000, 0x640000)]


def _zoneinfo(zones):
    out = []
    for node, name, start, spanned in zones:
        out.append(f"Node {node}, zone {name:>8}\n  pages free     0\n        min      0\n"
                   f"        low      0\n        high     0\n        spanned  {spanned}\n"
                   f"        present  {spanned}\n        managed  {spanned}\n"
                   f"        protection: (0, 0, 0, 0)\n  start_pfn:           {start}\n")
    return "".join(out)


def test_zones_that_overlap_across_nodes_are_split_by_memory_block(tmp_path):
    """Node 1's Normal zone spans node 0's: each pfn is drawn in the zone
    of the node that owns its memory block, the rest are holes."""
    from mfd.sources.pagemap import take_map
    per = 0x8000000 // 4096                          # 32768 pages per memory block
    root = _sysfs(tmp_path, {i: "online" for i in range(4)}, {0: [0, 2], 1: [1, 3]})
    (tmp_path / "zoneinfo").write_text(_zoneinfo([(0, "Normal", 0, 3 * per),
                                                  (1, "Normal", per, 3 * per)]))
    (tmp_path / "buddyinfo").write_text("Node 0, zone   Normal 0 0 0 0 0 0 0 0 0 0 0\n"
                                        "Node 1, zone   Normal 0 0 0 0 0 0 0 0 0 0 0\n")
    flags = np.full(4 * per, BUDDY, np.uint64)
    flags[2 * per + 7] = bits("SLAB")                # in node 0's second block
    flags.tofile(tmp_path / "kpageflags")
    said = []
    pm = take_map(Filter(), said.append, pagetypes=False, zoneinfo=str(tmp_path / "zoneinfo"),
                  buddyinfo=str(tmp_path / "buddyinfo"), flags_path=str(tmp_path / "kpageflags"),
                  cgroup_path=str(tmp_path / "no-kpagecgroup"), sysfs=root)
    by = {z.node: z for z in pm.zones}
    per_blocks = per // P
    c0, c1 = (np.bincount(by[n].classes, minlength=6) for n in (0, 1))
    assert c0[pb.FREE] == 2 * per_blocks - 1 and c0[pb.PINNED] == 1 and c0[pb.HOLE] == per_blocks
    assert c1[pb.FREE] == 2 * per_blocks and c1[pb.HOLE] == per_blocks
    assert by[0].cgroups is None and any("kpagecgroup" in s for s in said)


@pytest.mark.parametrize("valid_zones", [True, False])
@pytest.mark.parametrize("only", [None, "Movable"])
def test_zones_that_overlap_in_one_node_split_by_valid_zones(tmp_path, valid_zones, only):
    """Normal spans both memory blocks, Movable the second (movable memory
    onlined beside Normal): each block's valid_zones says whose it is; where
    no file says, the zone first in zoneinfo gets it.  -c Movable alone
    gives the same answer."""
    from mfd.sources.pagemap import take_map
    per = 0x8000000 // 4096
    root = _sysfs(tmp_path, {0: "online", 1: "online"}, {0: [0, 1]},
                  zones={0: "Normal", 1: "Movable"} if valid_zones else None)
    (tmp_path / "zoneinfo").write_text(_zoneinfo([(0, "Normal", 0, 2 * per),
                                                  (0, "Movable", per, per)]))
    (tmp_path / "buddyinfo").write_text("")
    np.full(2 * per, BUDDY, np.uint64).tofile(tmp_path / "kpageflags")
    pm = take_map(Filter(zone=only), lambda s: None, pagetypes=False,
                  zoneinfo=str(tmp_path / "zoneinfo"), buddyinfo=str(tmp_path / "buddyinfo"),
                  flags_path=str(tmp_path / "kpageflags"), cgroup_path=str(tmp_path / "none"),
                  sysfs=root)
    by = {z.zone: np.bincount(z.classes, minlength=6) for z in pm.zones}
    blocks = per // P
    if only is None:
        assert by["Normal"][pb.FREE] == (blocks if valid_zones else 2 * blocks)
    assert by["Movable"][pb.FREE] == (blocks if valid_zones else 0)


def test_offline_block_and_device_memory_are_holes(tmp_path):
    """An offline memory block and ZONE_DEVICE memory (no memory block at all)
    read 0 on 6.18: holes, not uncertain pages."""
    from mfd.sources.pagemap import take_map
    per = 0x8000000 // 4096
    root = _sysfs(tmp_path, {0: "online", 1: "offline"}, {0: [0, 1]})
    (tmp_path / "zoneinfo").write_text(_zoneinfo([(0, "Normal", 0, 3 * per)]))
    (tmp_path / "buddyinfo").write_text("")
    flags = np.full(3 * per, LRU, np.uint64)
    flags[per:] = 0
    flags.tofile(tmp_path / "kpageflags")
    pm = take_map(Filter(), lambda s: None, pagetypes=False, zoneinfo=str(tmp_path / "zoneinfo"),
                  buddyinfo=str(tmp_path / "buddyinfo"), flags_path=str(tmp_path / "kpageflags"),
                  cgroup_path=str(tmp_path / "none"), sysfs=root)
    n = np.bincount(pm.zones[0].classes, minlength=6)
    assert n[pb.COMPACTABLE] == per // P and n[pb.HOLE] == 2 * per // P and n[pb.UNCERTAIN] == 0


# -- pictures ---------------------------------------------------------------

def _pm(zones=None):
    rng = np.random.default_rng(1)
    if zones is None:
        zones = [ZoneMap(0, "DMA32", 4096, 1 << 20, 8, rng.integers(0, 6, 2040).astype(np.uint8),
                         np.zeros(2040, np.uint32), {"reserved": 2}, {"reserved": 900},
                         [("/batch", 5)]),
                 ZoneMap(0, "Normal", 1 << 20, 7 << 20, 2048,
                         rng.integers(0, 6, 12288).astype(np.uint8), np.zeros(12288, np.uint32),
                         {"slab": 3, "page_table": 1}, {"slab": 30, "page_table": 1}, [])]
    return PhysMap("host", "6.18.0", 0.0, 4096, 9, P, zones, 0.5, 0.01)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)])
@pytest.mark.parametrize("color", [False, True])
@pytest.mark.parametrize("watched", [False, True])
def test_text_map_fits_the_terminal(size, color, watched):
    pm = _pm()
    if watched:                      # --events: the legend and the damage lines grow
        pm.events_seconds = 10.0
        for z in pm.zones:
            z.polluted, z.converted = set(range(0, z.blocks, 7)), {1, 2}
    text = maptext.render(pm, size, color)
    lines = text.rstrip("\n").split("\n")
    assert len(lines) <= size[1] - 1
    assert max(len(ANSI.sub("", l)) for l in lines) <= size[0]
    assert ("\x1b[" in text) == color
    assert "node 0 Normal" in text and "1 cell = " in text


def test_a_wide_terminal_also_shows_the_pfn_of_each_row():
    narrow = maptext.render(_pm(), (80, 24), False)
    wide = maptext.render(_pm(), (120, 40), False)
    assert "0x00100000" not in narrow
    # Normal starts at pfn 1 << 20 (4 GiB)
    assert re.search(r"^node 0 Normal +4\.00G 0x00100000 ", wide, re.M), wide


def test_a_bigger_terminal_shows_fewer_blocks_per_cell():
    per = [int(re.search(r"1 cell = (\d+)", maptext.render(_pm(), s, False)).group(1))
           for s in ((80, 24), (160, 50))]
    assert per[0] > per[1] >= 1


def test_mono_map_has_a_character_per_class_and_the_axis():
    pm = _pm([ZoneMap(0, "Normal", 0, 6 * P, 0, np.arange(6, dtype=np.uint8),
                      np.zeros(6, np.uint32))])
    text = maptext.render(pm, (80, 24), False)
    row = [l for l in text.split("\n") if l.startswith("node 0 Normal")][0]
    assert row.endswith(" .Ho?#") and "0.00G" in row
    for ch, name in ((".", "free"), ("#", "pinned"), ("H", "huge"), ("o", "compactable")):
        assert f"{ch} {name}" in text


def test_strings_from_the_kernel_are_escaped():
    pm = _pm([ZoneMap(0, "Nor\x1b[2Jmal", 0, P, 0, np.zeros(1, np.uint8), np.zeros(1, np.uint32),
                      {"slab": 1}, {"slab": 1}, [("/evil\x1b]0;x\x07", 1)])])
    text = maptext.render(pm, (80, 24), False)
    assert "\x1b" not in text and "\x07" not in text


def test_json_runs_cover_every_block():
    doc = map_doc(_pm(), [])
    for z in doc["zones"]:
        assert sum(n for _c, n in z["runs"]) == z["blocks"] == sum(z["counts"].values())
        assert set(z["counts"]) == set(pb.CLASSES)


def test_pfns_past_the_end_of_kpageflags_are_holes(tmp_path):
    """The kernel stops kpageflags at max_pfn rounded to a section: a zone
    spanning beyond it (a crafted zoneinfo, a race with hot-remove) reads
    short, and what was not read is a hole, not flagless memory."""
    from mfd.sources.pagemap import take_map
    per = 0x8000000 // 4096
    root = _sysfs(tmp_path, {0: "online"}, {0: [0]})
    (tmp_path / "zoneinfo").write_text(_zoneinfo([(0, "Normal", 0, per)]))
    (tmp_path / "buddyinfo").write_text("")
    np.full(per // 2, BUDDY, np.uint64).tofile(tmp_path / "kpageflags")   # half of it
    pm = take_map(Filter(), lambda s: None, pagetypes=False, zoneinfo=str(tmp_path / "zoneinfo"),
                  buddyinfo=str(tmp_path / "buddyinfo"), flags_path=str(tmp_path / "kpageflags"),
                  cgroup_path=str(tmp_path / "none"), sysfs=root)
    n = np.bincount(pm.zones[0].classes, minlength=6)
    assert n[pb.FREE] == per // 2 // P and n[pb.HOLE] == per // 2 // P and n[pb.UNCERTAIN] == 0


def test_flagless_pages_are_counted_with_the_per_cpu_bound(tmp_path):
    from mfd.sources.pagemap import take_map
    per = 0x8000000 // 4096
    root = _sysfs(tmp_path, {0: "online"}, {0: [0]})
    (tmp_path / "zoneinfo").write_text(_zoneinfo([(0, "Normal", 0, per)]))
    (tmp_path / "buddyinfo").write_text("")
    flags = np.full(per, LRU, np.uint64)
    flags[:100] = 0
    flags.tofile(tmp_path / "kpageflags")
    pm = take_map(Filter(), lambda s: None, pagetypes=False, zoneinfo=str(tmp_path / "zoneinfo"),
                  buddyinfo=str(tmp_path / "buddyinfo"), flags_path=str(tmp_path / "kpageflags"),
                  cgroup_path=str(tmp_path / "none"), sysfs=root)
    assert pm.zones[0].unknown_pages == 100
    doc = map_doc(pm, [])
    assert doc["zones"][0]["unknown_pages"] == 100


def test_on_a_short_terminal_the_details_shrink_so_the_map_keeps_its_rows():
    pm = _pm()
    for z in pm.zones:
        z.kind_blocks = {f"kind{i}": 10 - i for i in range(6)}
        z.kind_pages = {f"kind{i}": 1000 * (10 - i) for i in range(6)}
        z.cgroups = [(f"/a/very/long/cgroup/path/number/{i}" * 2, 5) for i in range(4)]
        z.unknown_pages, z.pcp_pages = 1000, 500
    small = maptext.render(pm, (80, 24), False)
    rows = [l for l in small.split("\n") if re.match(r"^(node \d+ \w+| +)\s+\d+\.\d\dG ", l)]
    assert len(rows) >= maptext.MIN_MAP_ROWS, small
    assert "pinned blocks by kind: kind0 10, kind1 9, kind2 8; cgroup /a/ve" in small
    big = maptext.render(pm, (120, 60), False)
    assert "memory cgroups:" in big and "flagless pages, of which at most 500" in big


def test_the_event_table_says_the_pageblocks_per_zone():
    from mfd.model import ExtfragResult
    from mfd.model.events import ExtfragZone
    from mfd.sinks.events_text import extfrag_text
    ev = ExtfragResult(events=5, change_ownership=4,
                       pageblocks=(ExtfragZone(0, "Normal", 1, 8), ExtfragZone(1, "Nor\x1bmal", 0, 2)),
                       pageblocks_dropped=3)
    text = extfrag_text(ev)
    assert "pageblocks polluted/converted: node 0 Normal 1/8, node 1 Nor\\x1bmal 0/2" in text
    assert "(3 events not bucketed: map full)" in text and "\x1b" not in text
