"""mfd.sources.procfs: /proc/buddyinfo + /proc/zoneinfo -> Snapshot.

Fixtures (tests/fixtures/proc/<case>/{buddyinfo,zoneinfo}):

* one_node     -- this machine's real files (x86_64, kernel 6.18, 2 CPUs), read together
* two_nodes    -- hand-made NUMA layout in the 6.x format: node 0 DMA/DMA32/Normal/Movable,
                  node 1 Normal/Movable, Device empty on both, 4 CPUs
* empty_zones  -- DMA present but managed 0 (all-zero counts), Movable/Device empty, and a
                  memoryless node 1 (every zone unpopulated, no "per-node stats")
* highmem      -- 32-bit x86 layout DMA/Normal/HighMem/Movable in the 5.10 format
* odd_spacing  -- one_node with tabs, runs of spaces, trailing spaces and blank lines
* truncated    -- one_node's zoneinfo cut inside Normal's pagesets
* malformed    -- one_node with buddyinfo line 3 cut to "Node 0, zone"
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

import pytest

from mfd.sources import procfs
from mfd.sources.procfs import ProcfsSource, ProcfsError, parse_buddyinfo, parse_zoneinfo
from mfd.errors import MfdError
from mfd.model import NodeSnapshot, Snapshot, ZoneSnapshot

FIXTURES = Path(__file__).parent / "fixtures" / "proc"
GOOD_CASES = ["one_node", "two_nodes", "empty_zones", "highmem", "odd_spacing"]


def snap(case: str) -> Snapshot:
    collector = ProcfsSource(str(FIXTURES / case))
    try:
        return collector.snapshot()
    finally:
        collector.close()


def zones_by_name(snapshot: Snapshot):
    return {(z.node, z.zone): z for z in snapshot.zones()}


def make_root(tmp_path: Path, buddyinfo: str, zoneinfo: str) -> str:
    (tmp_path / "buddyinfo").write_text(buddyinfo)
    (tmp_path / "zoneinfo").write_text(zoneinfo)
    return str(tmp_path)


def fixture_text(case: str, name: str) -> str:
    return (FIXTURES / case / name).read_text()


# --- parse_buddyinfo -------------------------------------------------------------------

def test_parse_buddyinfo_one_node():
    assert parse_buddyinfo(fixture_text("one_node", "buddyinfo")) == {
        (0, "DMA"): (0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 3),
        (0, "DMA32"): (1, 1, 4, 2, 5, 4, 3, 3, 4, 2, 752),
        (0, "Normal"): (0, 1, 2, 1, 4, 39, 9, 25, 9, 3, 37),
    }


def test_parse_buddyinfo_keeps_file_order():
    keys = list(parse_buddyinfo(fixture_text("two_nodes", "buddyinfo")))
    assert keys == [(0, "DMA"), (0, "DMA32"), (0, "Normal"), (0, "Movable"),
                    (1, "Normal"), (1, "Movable")]


def test_parse_buddyinfo_odd_spacing_equals_plain():
    assert (parse_buddyinfo(fixture_text("odd_spacing", "buddyinfo"))
            == parse_buddyinfo(fixture_text("one_node", "buddyinfo")))


def test_parse_buddyinfo_empty():
    assert parse_buddyinfo("") == {}
    assert parse_buddyinfo("\n  \n") == {}


def test_parse_buddyinfo_malformed_fixture_message():
    with pytest.raises(ProcfsError) as e:
        parse_buddyinfo(fixture_text("malformed", "buddyinfo"))
    assert str(e.value) == ("cannot parse /proc/buddyinfo line 3: 'Node 0, zone' "
                            "(expected 'Node N, zone NAME counts...')")


@pytest.mark.parametrize("text, message", [
    ("Node 0, zone DMA 1 2 3x\n", "line 1: bad count '3x'"),
    ("Node 0, zone DMA 1 2 -3\n", "line 1: bad count '-3'"),
    ("Node 0, zone DMA 1 2 +3\n", "line 1: bad count '+3'"),
    ("Node 0, zone DMA 1 2 1_0\n", "line 1: bad count '1_0'"),
    ("Node 0, zone DMA 1 2 3\nNode 0, zone Normal 1 2\n", "line 2: 2 counts, earlier lines have 3"),
    ("Node 0, zone DMA 1 2 3\nNode 0, zone DMA 1 2 3\n", "line 2: node 0 zone DMA listed twice"),
    ("Node x, zone DMA 1 2 3\n", "line 1: 'Node x, zone DMA 1 2 3'"),
    ("Node 0 zone DMA 1 2 3\n", "line 1"),
    ("Node 0, zone DMA\n", "line 1"),
    ("garbage\n", "line 1: 'garbage'"),
])
def test_parse_buddyinfo_errors(text, message):
    with pytest.raises(ProcfsError) as e:
        parse_buddyinfo(text, "/proc/buddyinfo")
    assert "/proc/buddyinfo" in str(e.value)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


# --- parse_zoneinfo ----------------------------------------------------------------------

def test_parse_zoneinfo_one_node():
    zones = parse_zoneinfo(fixture_text("one_node", "zoneinfo"))
    assert zones == [
        dict(node=0, zone="DMA", zone_idx=0, free=3840, spanned=4095, present=3998,
             managed=3840, start_pfn=1),
        dict(node=0, zone="DMA32", zone_idx=1, free=772915, spanned=1044480, present=782336,
             managed=772915, start_pfn=4096),
        dict(node=0, zone="Normal", zone_idx=2, free=46834, spanned=5505024, present=5505024,
             managed=491520, start_pfn=1048576),
        dict(node=0, zone="Movable", zone_idx=3, free=0, spanned=0, present=0,
             managed=0, start_pfn=0),
        dict(node=0, zone="Device", zone_idx=4, free=0, spanned=0, present=0,
             managed=0, start_pfn=0),
    ]


def test_parse_zoneinfo_odd_spacing_equals_plain():
    assert (parse_zoneinfo(fixture_text("odd_spacing", "zoneinfo"))
            == parse_zoneinfo(fixture_text("one_node", "zoneinfo")))


def test_parse_zoneinfo_zone_idx_per_node():
    zones = parse_zoneinfo(fixture_text("two_nodes", "zoneinfo"))
    assert [(z["node"], z["zone"], z["zone_idx"]) for z in zones] == [
        (0, "DMA", 0), (0, "DMA32", 1), (0, "Normal", 2), (0, "Movable", 3), (0, "Device", 4),
        (1, "DMA", 0), (1, "DMA32", 1), (1, "Normal", 2), (1, "Movable", 3), (1, "Device", 4),
    ]


def test_parse_zoneinfo_many_cpus_same_result():
    """The per-CPU pagesets are skipped in bulk; 256 CPUs parse like 2."""
    text = fixture_text("one_node", "zoneinfo")
    cpu = ("\n    cpu: 7\n              count:    12\n              high:     7615"
           "\n              batch:    63\n              high_min: 7615"
           "\n              high_max: 48307\n  vm stats threshold: 24")
    big = text.replace("  pagesets", "  pagesets" + cpu * 254)
    assert len(big) > 10 * len(text)
    assert parse_zoneinfo(big) == parse_zoneinfo(text)
    # the per-CPU lines never reach the line-by-line loop
    short, cuts = procfs._cut(big)
    assert len(short) < len(text) and "cpu:" not in short and len(cuts) == 4


def test_parse_zoneinfo_old_kernel_without_managed():
    # before 3.8 zoneinfo had no "managed" line (and "all_unreclaimable:")
    text = ("Node 0, zone      DMA\n"
            "  pages free     3975\n        min      5\n        low      6\n"
            "        high     7\n        scanned  0\n        spanned  4095\n"
            "        present  3996\n    nr_free_pages 3975\n"
            "        protection: (0, 2003, 2003, 2003)\n"
            "  pagesets\n    cpu: 0\n              count: 0\n              high:  0\n"
            "              batch: 1\n  vm stats threshold: 6\n"
            "  all_unreclaimable: 0\n  start_pfn:         16\n  inactive_ratio:    1\n")
    assert parse_zoneinfo(text) == [dict(node=0, zone="DMA", zone_idx=0, free=3975,
                                         spanned=4095, present=3996, managed=3996,
                                         start_pfn=16)]


def test_parse_zoneinfo_error_line_numbers_count_skipped_lines():
    """Errors name the line of the file even past the sections skipped in bulk."""
    lines = fixture_text("one_node", "zoneinfo").split("\n")
    target = [i for i, line in enumerate(lines) if line.startswith("  start_pfn:")][2]  # Normal
    lines[target] = "  start_pfn:           10485x6"
    with pytest.raises(ProcfsError) as e:
        parse_zoneinfo("\n".join(lines), "/proc/zoneinfo")
    assert str(e.value) == (f"cannot parse /proc/zoneinfo line {target + 1}: bad number in "
                            "'  start_pfn:           10485x6'")
    lines = fixture_text("one_node", "zoneinfo").split("\n")
    target = [i for i, line in enumerate(lines) if "present" in line][1]  # DMA32
    lines[target] = "        present  -1"
    with pytest.raises(ProcfsError, match=f"line {target + 1}: bad number"):
        parse_zoneinfo("\n".join(lines))


@pytest.mark.parametrize("text, message", [
    ("Node 0, zone\n  pages free 1\n", "line 1: 'Node 0, zone' (expected 'Node N, zone NAME')"),
    ("Node 0, zone DMA extra\n", "line 1"),
    ("  pages free     3\nNode 0, zone DMA\n", "line 1: '  pages free     3' before the first"),
    ("Node 0, zone DMA\n  pages free\n", "line 2: bad number"),
    ("Node 0, zone DMA\n  pages free 12 \n        spanned 1e3\n", "line 3: bad number"),
    ("Node 0, zone DMA\n  pages free 1\n        present 0\n", "has no 'spanned' line"),
    ("Node 0, zone DMA\n        spanned 0\n        present 0\n", "has no 'pages free' line"),
    ("Node 0, zone DMA\n  pages free 1\n        spanned 8\n        present 8\n",
     "populated node 0 zone DMA (line 1) has no 'start_pfn:' line"),
])
def test_parse_zoneinfo_errors(text, message):
    with pytest.raises(ProcfsError) as e:
        parse_zoneinfo(text, "/proc/zoneinfo")
    assert "/proc/zoneinfo" in str(e.value)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_parse_zoneinfo_ignores_unknown_lines():
    text = ("something new 1 2 3\n"
            "Node 0, zone   Normal\n  pages free     5\n  pagesfoo 9\n  pages high 7\n"
            "        spanned  16\n        present  16\n        managed  8\n"
            "        fancy_new_counter 42\n        protection: (0, 0)\n"
            "  start_pfn:           4096\n  trailer: x\n")
    assert parse_zoneinfo(text) == [dict(node=0, zone="Normal", zone_idx=0, free=5, spanned=16,
                                         present=16, managed=8, start_pfn=4096)]


# --- ProcfsSource ------------------------------------------------------------------

def test_snapshot_one_node():
    s = snap("one_node")
    assert s.source == "procfs" and s.pgdat_path is None and s.nr_orders == 11
    assert abs(s.time - time.time()) < 60
    (node,) = s.nodes
    # nr_zones: highest populated zone (Normal, index 2) + 1
    assert (node.node, node.nr_zones, node.start_pfn) == (0, 3, 1)
    # present = 3998 + 782336 + 5505024; spanned = (1048576 + 5505024) - 1
    assert node.present == 3998 + 782336 + 5505024
    assert node.spanned == 6553600 - 1
    assert node.pgdat is None
    assert [z.zone for z in node.zones] == ["DMA", "DMA32", "Normal", "Movable", "Device"]
    assert [z.zone_idx for z in node.zones] == [0, 1, 2, 3, 4]
    z = zones_by_name(s)
    assert z[(0, "DMA")] == ZoneSnapshot(0, "DMA", 0, 1, 4095, 3998, 3840,
                                         (0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 3))
    assert z[(0, "Normal")].nr_free == (0, 1, 2, 1, 4, 39, 9, 25, 9, 3, 37)
    assert z[(0, "Movable")] == ZoneSnapshot(0, "Movable", 3, 0, 0, 0, 0, (0,) * 11)
    assert not z[(0, "Device")].populated


def test_snapshot_two_nodes():
    s = snap("two_nodes")
    assert [n.node for n in s.nodes] == [0, 1]
    n0, n1 = s.nodes
    # node 0: DMA(1) .. Movable ends at 4194304 + 262144; Movable (index 3) populated
    assert (n0.nr_zones, n0.start_pfn, n0.spanned) == (4, 1, 4456448 - 1)
    assert n0.present == 3998 + 782304 + 3145728 + 262144
    # node 1: Normal at 4456448 .. Movable ends at 8388608 + 262144
    assert (n1.nr_zones, n1.start_pfn, n1.spanned) == (4, 4456448, 8650752 - 4456448)
    assert n1.present == 3932160 + 262144
    assert [(z.zone, z.zone_idx, z.populated) for z in n1.zones] == [
        ("DMA", 0, False), ("DMA32", 1, False), ("Normal", 2, True),
        ("Movable", 3, True), ("Device", 4, False)]
    z = zones_by_name(s)
    assert z[(1, "DMA")].nr_free == (0,) * 11
    assert z[(1, "Movable")].nr_free == (3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 255)
    assert z[(0, "Normal")] == ZoneSnapshot(0, "Normal", 2, 1048576, 3145728, 3145728, 3077016,
                                            (14220, 9017, 3311, 1203, 407, 88, 17, 3, 0, 0, 0))


def test_snapshot_empty_zones_and_memoryless_node():
    s = snap("empty_zones")
    n0, n1 = s.nodes
    z = zones_by_name(s)
    dma = z[(0, "DMA")]
    # present but nothing managed: populated (listed in buddyinfo), all counts zero
    assert (dma.present, dma.managed, dma.populated, dma.nr_free) == (3998, 0, True, (0,) * 11)
    assert n0.nr_zones == 3
    # memoryless node: every zone listed, none populated
    assert (n1.nr_zones, n1.start_pfn, n1.spanned, n1.present) == (0, 0, 0, 0)
    assert [zz.zone for zz in n1.zones] == ["DMA", "DMA32", "Normal", "Movable", "Device"]
    assert all(zz.nr_free == (0,) * 11 and not zz.populated for zz in n1.zones)


def test_snapshot_highmem():
    s = snap("highmem")
    (node,) = s.nodes
    assert [(z.zone, z.zone_idx) for z in node.zones] == [
        ("DMA", 0), ("Normal", 1), ("HighMem", 2), ("Movable", 3)]
    # HighMem 229376 + 294912 = 524288 (2 GiB); node starts at pfn 1
    assert (node.nr_zones, node.start_pfn, node.spanned) == (3, 1, 524288 - 1)
    assert zones_by_name(s)[(0, "HighMem")].nr_free == (301, 215, 140, 77, 41, 20, 9, 4, 2, 1, 98)


def test_snapshot_odd_spacing_equals_plain():
    assert snap("odd_spacing").nodes == snap("one_node").nodes


@pytest.mark.parametrize("case", GOOD_CASES)
def test_snapshot_contract(case):
    s = snap(case)
    assert isinstance(s, Snapshot) and type(s.nr_orders) is int and s.nr_orders > 0
    assert type(s.time) is float
    buddy = parse_buddyinfo(fixture_text(case, "buddyinfo"))
    seen = set()
    for node in s.nodes:
        assert isinstance(node, NodeSnapshot) and node.pgdat is None
        for f in ("node", "nr_zones", "start_pfn", "present", "spanned"):
            assert type(getattr(node, f)) is int, (case, f)
        assert type(node.zones) is tuple
        for z in node.zones:
            assert isinstance(z, ZoneSnapshot)
            for f in dataclasses.fields(ZoneSnapshot):
                value = getattr(z, f.name)
                if f.name == "zone":
                    assert type(value) is str
                elif f.name == "nr_free":
                    assert type(value) is tuple
                    assert len(value) == s.nr_orders
                    assert all(type(n) is int and n >= 0 for n in value)
                else:
                    assert type(value) is int, (case, f.name)
            assert z.node == node.node
            assert z.populated == ((z.node, z.zone) in buddy)
            seen.add((z.node, z.zone))
        # zone_idx is the position in the node
        assert [z.zone_idx for z in node.zones] == list(range(len(node.zones)))
    assert set(buddy) <= seen


def test_truncated_fixture():
    with pytest.raises(ProcfsError) as e:
        snap("truncated")
    path = os.path.join(str(FIXTURES / "truncated"), "zoneinfo")
    assert str(e.value) == (f"cannot parse {path}: populated node 0 zone Normal (line 145) "
                            "has no 'start_pfn:' line (truncated file?)")


def test_malformed_fixture():
    with pytest.raises(ProcfsError) as e:
        snap("malformed")
    path = os.path.join(str(FIXTURES / "malformed"), "buddyinfo")
    assert str(e.value) == (f"cannot parse {path} line 3: 'Node 0, zone' "
                            "(expected 'Node N, zone NAME counts...')")


def test_zone_in_buddyinfo_missing_from_zoneinfo(tmp_path):
    zoneinfo = fixture_text("one_node", "zoneinfo")
    cut = zoneinfo[:zoneinfo.index("Node 0, zone   Normal")]   # ends cleanly after DMA32
    root = make_root(tmp_path, fixture_text("one_node", "buddyinfo"), cut)
    with pytest.raises(ProcfsError, match="node 0 zone Normal is in .*buddyinfo but not in "
                                          ".*zoneinfo"):
        ProcfsSource(root).snapshot()


def test_populated_zone_missing_from_buddyinfo(tmp_path):
    buddy = "".join(fixture_text("one_node", "buddyinfo").splitlines(True)[:2])
    root = make_root(tmp_path, buddy, fixture_text("one_node", "zoneinfo"))
    with pytest.raises(ProcfsError, match="node 0 zone Normal is populated in .*zoneinfo but "
                                          "missing from .*buddyinfo"):
        ProcfsSource(root).snapshot()


def test_buddyinfo_zone_unpopulated_in_zoneinfo(tmp_path):
    buddy = fixture_text("one_node", "buddyinfo") + "Node 0, zone  Movable " + "0 " * 11 + "\n"
    root = make_root(tmp_path, buddy, fixture_text("one_node", "zoneinfo"))
    with pytest.raises(ProcfsError, match="node 0 zone Movable is in .*buddyinfo but has no "
                                          "present pages"):
        ProcfsSource(root).snapshot()


def test_duplicate_zone_in_zoneinfo(tmp_path):
    zoneinfo = fixture_text("one_node", "zoneinfo")
    movable = zoneinfo[zoneinfo.index("Node 0, zone  Movable"):zoneinfo.index("Node 0, zone   Device")]
    root = make_root(tmp_path, fixture_text("one_node", "buddyinfo"), zoneinfo + movable)
    with pytest.raises(ProcfsError, match="lists node 0 zone Movable twice"):
        ProcfsSource(root).snapshot()


def test_empty_buddyinfo(tmp_path):
    root = make_root(tmp_path, "", fixture_text("one_node", "zoneinfo"))
    with pytest.raises(ProcfsError, match="lists no zone"):
        ProcfsSource(root).snapshot()


def test_missing_file(tmp_path):
    shutil.copy(FIXTURES / "one_node" / "zoneinfo", tmp_path / "zoneinfo")
    with pytest.raises(ProcfsError) as e:
        ProcfsSource(str(tmp_path)).snapshot()
    assert str(e.value) == f"cannot read {tmp_path / 'buddyinfo'}: No such file or directory"


def test_procfs_error_is_an_mfd_error():
    assert issubclass(ProcfsError, MfdError) and issubclass(ProcfsError, Exception)


def test_collector_interface():
    c = ProcfsSource()
    assert c.name == "procfs" and ProcfsSource.name == "procfs"
    assert c.close() is None


# --- live -------------------------------------------------------------------------------

def test_live_proc():
    """The running kernel's /proc (no root needed)."""
    if not (os.path.exists("/proc/buddyinfo") and os.path.exists("/proc/zoneinfo")):
        pytest.skip("no /proc/buddyinfo or /proc/zoneinfo here")
    collector = ProcfsSource()
    s = None
    for _ in range(5):                      # a zone may be onlined between the two reads
        try:
            s = collector.snapshot()
            break
        except ProcfsError as e:
            if "between the reads" not in str(e):
                raise
    assert s is not None
    assert s.source == "procfs" and s.nr_orders >= 1 and s.nodes
    with open("/proc/buddyinfo") as f:
        live_keys = set(parse_buddyinfo(f.read()))
    populated = {(z.node, z.zone) for z in s.zones() if z.populated}
    assert populated == live_keys           # no memory hotplug during the test
    for node in s.nodes:
        assert [z.zone_idx for z in node.zones] == list(range(len(node.zones)))
        if node.nr_zones:
            assert node.zones[node.nr_zones - 1].populated
            assert 0 < node.present <= node.spanned
        for z in node.zones:
            assert len(z.nr_free) == s.nr_orders
            if z.populated:
                assert z.start_pfn >= 0 and z.present <= z.spanned and z.managed <= z.present
            else:
                assert z.nr_free == (0,) * s.nr_orders
