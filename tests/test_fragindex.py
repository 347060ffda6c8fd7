"""mfd.fragindex against hand-computed values and the kernel's own debugfs output."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from mfd.fragindex import (
    ContigPageInfo,
    extfrag_indices,
    fill_contig_page_info,
    format_debugfs_line,
    format_extfrag,
    format_index,
    format_unusable,
    fragmentation_index,
    parse_debugfs_index,
    unusable_free_index,
    unusable_indices,
)

FIXTURES = Path(__file__).parent / "fixtures" / "proc"
DEBUGFS = "/sys/kernel/debug"
EXTFRAG_DIR = DEBUGFS + "/extfrag"


# --- fill_contig_page_info ---------------------------------------------------

def test_fill_contig_page_info_hand_computed():
    nr_free = [10, 5, 2, 0]
    # free_pages = 10<<0 + 5<<1 + 2<<2 + 0<<3 = 10 + 10 + 8 + 0 = 28
    # free_blocks_total = 10 + 5 + 2 + 0 = 17
    # suitable for order 1 = 5<<0 + 2<<1 + 0<<2 = 5 + 4 = 9 (an order-2 block holds two order-1)
    assert fill_contig_page_info(nr_free, 1) == ContigPageInfo(28, 17, 9)
    # order 0: every free page is a suitable block: 10 + 10 + 8 = 28
    assert fill_contig_page_info(nr_free, 0) == ContigPageInfo(28, 17, 28)
    # order 3: no block of 8 pages
    assert fill_contig_page_info(nr_free, 3) == ContigPageInfo(28, 17, 0)
    # order beyond the array: nothing is suitable (the kernel never asks, but it is defined)
    assert fill_contig_page_info(nr_free, 7) == ContigPageInfo(28, 17, 0)


def test_fill_contig_page_info_rejects_negative():
    with pytest.raises(ValueError):
        fill_contig_page_info([1, -1], 0)
    with pytest.raises(ValueError):
        fill_contig_page_info([1, 1], -1)


# --- the indices, hand-computed -----------------------------------------------

def test_indices_hand_computed():
    nr_free = [10, 5, 2, 0]          # free_pages 28, free_blocks_total 17
    # extfrag:
    #   orders 0..2 have a suitable block -> -1000
    #   order 3: requested 8, suitable 0:
    #     1000 - (1000 + 28*1000/8) / 17 = 1000 - (1000 + 3500) / 17 = 1000 - 264 = 736
    assert extfrag_indices(nr_free) == [-1000, -1000, -1000, 736]
    # unusable = (free_pages - (suitable << order)) * 1000 / free_pages:
    #   order 0: (28 - 28) * 1000 / 28 = 0
    #   order 1: suitable 9 -> (28 - 18) * 1000 / 28 = 10000 / 28 = 357 (357.14 floored)
    #   order 2: suitable 2 -> (28 - 8) * 1000 / 28 = 20000 / 28 = 714 (714.28 floored)
    #   order 3: suitable 0 -> 28 * 1000 / 28 = 1000
    assert unusable_indices(nr_free) == [0, 357, 714, 1000]


def test_extfrag_when_allocation_fails():
    nr_free = [6, 3, 0, 0]           # free_pages 6 + 6 = 12, free_blocks_total 9
    # order 2: 1000 - (1000 + 12*1000/4) / 9 = 1000 - 4000/9 = 1000 - 444 = 556
    # order 3: 1000 - (1000 + 12*1000/8) / 9 = 1000 - 2500/9 = 1000 - 277 = 723
    assert extfrag_indices(nr_free) == [-1000, -1000, 556, 723]
    # unusable: order 1: suitable 3 -> (12 - 6) * 1000 / 12 = 500; orders 2, 3: 1000
    assert unusable_indices(nr_free) == [0, 500, 1000, 1000]


def test_no_free_pages():
    # free_blocks_total == 0 -> fragmentation index 0; free_pages == 0 -> unusable 1000
    nr_free = [0] * 11
    assert extfrag_indices(nr_free) == [0] * 11
    assert unusable_indices(nr_free) == [1000] * 11
    assert fragmentation_index(3, ContigPageInfo(0, 0, 0)) == 0
    assert unusable_free_index(3, ContigPageInfo(0, 0, 0)) == 1000


def test_all_free_at_max_order():
    nr_free = [0] * 10 + [3]         # three order-10 blocks: 3072 pages
    # every order has suitable blocks (3 << (10 - order)) -> -1000
    assert extfrag_indices(nr_free) == [-1000] * 11
    # suitable << order = 3 << 10 = 3072 = free_pages -> unusable 0 everywhere
    assert unusable_indices(nr_free) == [0] * 11


def test_exactly_one_suitable_block():
    nr_free = [6, 3, 0, 1]           # free_pages 6 + 6 + 0 + 8 = 20, total 10
    # order 3: one order-3 block is enough for the request -> -1000
    info = fill_contig_page_info(nr_free, 3)
    assert info == ContigPageInfo(20, 10, 1)
    assert fragmentation_index(3, info) == -1000
    # unusable order 3: (20 - (1 << 3)) * 1000 / 20 = 12000 / 20 = 600
    assert unusable_free_index(3, info) == 600
    # order 2: suitable 0 + 1*2 = 2 -> (20 - 8) * 1000 / 20 = 600; order 1: 3 + 4 = 7 -> 6000/20 = 300
    assert unusable_indices(nr_free) == [0, 300, 600, 600]
    assert extfrag_indices(nr_free) == [-1000] * 4


def test_single_small_block_goes_negative():
    # The kernel's formula is not clamped: with one free block smaller than the
    # request, 1000 - (1000 + free*1000/req) / 1 < 0.
    # [1, 0], order 1: 1000 - (1000 + 1*1000/2) / 1 = 1000 - 1500 = -500
    assert extfrag_indices([1, 0]) == [-1000, -500]
    # [0, 1, 0], order 2: 1000 - (1000 + 2*1000/4) / 1 = -500
    assert extfrag_indices([0, 1, 0])[2] == -500
    # [1, 1, 0], order 2: free 3, total 2: 1000 - (1000 + 750) / 2 = 1000 - 875 = 125
    assert extfrag_indices([1, 1, 0])[2] == 125
    # [3, 0, 0], order 2: free 3, total 3: 1000 - (1000 + 750) / 3 = 1000 - 583 = 417
    assert extfrag_indices([3, 0, 0])[2] == 417


def test_large_numbers():
    # 2^40 order-0 pages (4 PiB of 4 KiB pages), order 2:
    # 1000 - (1000 + 2^40*1000/4) / 2^40 = 1000 - floor(250 + 1000/2^40) = 750
    assert extfrag_indices([2 ** 40, 0, 0])[2] == 750
    # unusable: (2^40 - 0) * 1000 / 2^40 = 1000 at orders 1, 2
    assert unusable_indices([2 ** 40, 0, 0]) == [0, 1000, 1000]
    big = [0] * 10 + [2 ** 30]
    assert extfrag_indices(big) == [-1000] * 11
    assert unusable_indices(big) == [0] * 11


def test_u64_wrap_is_reproduced():
    # free_pages * 1000ULL overflows u64 past 1.8e16 pages; the kernel's value is
    # then computed from the wrapped product.  2^55 pages, order 1:
    #   2^55 * 1000 = 2^58 * 125 = 2^58 * 61 (mod 2^64), / 2 = 2^57 * 61
    #   (1000 + 2^57 * 61) / 2^55 = 244, and 1000 - 244 = 756 (500 without the wrap)
    info = fill_contig_page_info([2 ** 55, 0], 1)
    assert fragmentation_index(1, info) == 756


def test_fragmentation_index_order_above_max():
    info = fill_contig_page_info([1, 1], 1)
    # WARN_ON_ONCE(order > MAX_PAGE_ORDER) returns 0
    assert fragmentation_index(2, info, max_order=1) == 0


# --- formatting -----------------------------------------------------------------

@pytest.mark.parametrize("value, extfrag, unusable", [
    (-1000, "-1.000", "-1.000"),
    (0, " 0.000", "0.000"),
    (736, " 0.736", "0.736"),
    (66, " 0.066", "0.066"),
    (1000, " 1.000", "1.000"),
    # C truncates toward zero: -500 / 1000 == 0 and -500 % 1000 == -500
    (-500, " 0.-500", "0.-500"),
    # %03d of -1 is "-01"
    (-1, " 0.-01", "0.-01"),
    (-1500, "-1.-500", "-1.-500"),
    (12345, "12.345", "12.345"),
])
def test_formats(value, extfrag, unusable):
    assert format_extfrag(value) == extfrag
    assert format_unusable(value) == unusable
    assert format_index(value, 2) == extfrag
    assert format_index(value) == unusable


def test_format_index_width():
    assert format_index(5, 4) == "   0.005"


def test_format_debugfs_line():
    assert (format_debugfs_line(1, "Normal", [736, -1000, -500], "extfrag")
            == "Node 1, zone   Normal  0.736 -1.000  0.-500 ")
    assert (format_debugfs_line(0, "DMA32", [0, 357, 1000], "unusable")
            == "Node 0, zone    DMA32 0.000 0.357 1.000 ")
    # %8s does not truncate a longer name
    assert format_debugfs_line(12, "LongZoneName", [], "unusable_index") == "Node 12, zone LongZoneName "
    with pytest.raises(ValueError):
        format_debugfs_line(0, "DMA", [0], "bogus")


def test_parse_debugfs_index_negative_values():
    text = ("Node 0, zone      DMA -1.000  0.-500  0.736 \n"
            "Node 1, zone   Normal  0.-01 -1.-500  1.000 \n")
    assert parse_debugfs_index(text) == {(0, "DMA"): [-1000, -500, 736],
                                         (1, "Normal"): [-1, -1500, 1000]}


@pytest.mark.parametrize("text", [
    "Node 0, zone DMA 0.5x0 \n",
    "Node 0 zone DMA 0.000 \n",
    "Node 0, zone\n",
    "Node 0, zone DMA 1 \n",
])
def test_parse_debugfs_index_rejects(text):
    with pytest.raises(ValueError, match="line 1"):
        parse_debugfs_index(text)


def test_round_trip_through_format():
    nr = [[10, 5, 2, 0], [1, 0, 0, 0], [0, 0, 0, 0], [6, 3, 0, 1]]
    lines = []
    expect = {}
    for i, counts in enumerate(nr):
        values = extfrag_indices(counts)
        lines.append(format_debugfs_line(0, "Z%d" % i, values, "extfrag") + "\n")
        expect[(0, "Z%d" % i)] = values
    assert parse_debugfs_index("".join(lines)) == expect


# --- the kernel's own output -----------------------------------------------------

def _buddy_lines(text):
    """(node, zone, counts) per /proc/buddyinfo line (kept independent of mfd's parser)."""
    out = []
    for line in text.splitlines():
        head, _, rest = line.partition(",")
        parts = rest.split()
        out.append((int(head.split()[1]), parts[1], [int(x) for x in parts[2:]]))
    return out


def _render(buddy_text, kind):
    fn = extfrag_indices if kind == "extfrag" else unusable_indices
    return "".join(format_debugfs_line(node, zone, fn(counts), kind) + "\n"
                   for node, zone, counts in _buddy_lines(buddy_text))


def test_reproduces_debugfs_fixture_byte_for_byte():
    """tests/fixtures/proc/debugfs: /proc/buddyinfo and both debugfs files read together
    on a live 6.18 kernel (a consistent triple: indices from these counts equal the kernel's)."""
    d = FIXTURES / "debugfs"
    buddy = (d / "buddyinfo").read_text()
    extfrag = (d / "extfrag_index").read_bytes()
    unusable = (d / "unusable_index").read_bytes()
    assert _render(buddy, "extfrag").encode() == extfrag
    assert _render(buddy, "unusable").encode() == unusable
    parsed = parse_debugfs_index(unusable.decode())
    for node, zone, counts in _buddy_lines(buddy):
        assert parsed[(node, zone)] == unusable_indices(counts)
    parsed = parse_debugfs_index(extfrag.decode())
    for node, zone, counts in _buddy_lines(buddy):
        assert parsed[(node, zone)] == extfrag_indices(counts)


# --- live: the running kernel --------------------------------------------------------

@pytest.fixture
def debugfs_extfrag():
    """/sys/kernel/debug/extfrag, mounting debugfs first if needed.

    Mounts the way mfd itself does (mfd.kernel.tracefs.ensure_debugfs): once, saying so
    (a warning in the pytest summary), and leaving it mounted.
    """
    if os.geteuid() != 0:
        pytest.skip("needs root to read (and maybe mount) debugfs")
    from mfd.kernel.tracefs import ensure_debugfs

    notes = []
    if not ensure_debugfs(notes.append):
        pytest.skip(f"debugfs is not mounted on {DEBUGFS} and mounting it failed")
    for note in notes:
        warnings.warn(f"{note} for the live extfrag test (left mounted)")
    if not os.path.isdir(EXTFRAG_DIR):
        pytest.skip(f"{EXTFRAG_DIR} missing (kernel without CONFIG_COMPACTION or CONFIG_DEBUG_FS)")
    return EXTFRAG_DIR


def _read(path):
    with open(path) as f:
        return f.read()


@pytest.mark.root
def test_live_kernel_indices_match(debugfs_extfrag):
    """Indices from /proc/buddyinfo equal the kernel's extfrag_index and unusable_index.

    The files are read one after the other while the allocator runs, so retry
    up to 20 times for an exact match; if none comes, every value must equal
    what the counts read just before or just after give, or be within 0.050 of
    one of them in a zone whose counts moved between those two reads.
    """
    last = None
    for _ in range(20):
        before = _read("/proc/buddyinfo")
        extfrag = _read(debugfs_extfrag + "/extfrag_index")
        unusable = _read(debugfs_extfrag + "/unusable_index")
        after = _read("/proc/buddyinfo")
        if _render(before, "extfrag") == extfrag and _render(before, "unusable") == unusable:
            return
        last = before, extfrag, unusable, after
    before, extfrag, unusable, after = last
    b1 = {(n, z): c for n, z, c in _buddy_lines(before)}
    b2 = {(n, z): c for n, z, c in _buddy_lines(after)}
    for text, fn in ((extfrag, extfrag_indices), (unusable, unusable_indices)):
        kernel = parse_debugfs_index(text)
        assert set(kernel) == set(b1)
        for key, values in kernel.items():
            v1, v2 = fn(b1[key]), fn(b2.get(key, b1[key]))
            moved = b1[key] != b2.get(key)
            for order, value in enumerate(values):
                if value in (v1[order], v2[order]):
                    continue
                assert moved and min(abs(value - v1[order]), abs(value - v2[order])) <= 50, \
                    (key, order, value, v1[order], v2[order])
