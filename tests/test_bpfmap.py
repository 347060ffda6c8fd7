"""mfd.kernel.bpfmap's decoder of BCC's type descriptions, and the tracefs
kprobe_events parser the loader's clean-up relies on (fixtures: pure parsing)."""
from __future__ import annotations

import ctypes

import pytest

from mfd.kernel import bpfmap, tracefs


def test_scalars():
    assert bpfmap.decode_type("unsigned int") is ctypes.c_uint
    assert bpfmap.decode_type("unsigned long long") is ctypes.c_ulonglong
    assert bpfmap.decode_type("char") is ctypes.c_char


def test_struct_keeps_every_array_dimension():
    # struct mfd_alloc_stats-like: u64 allocs[11]; u64 hist[11][27]  (BCC 0.26
    # itself decodes hist as [11] only, 88 bytes instead of 2376)
    desc = ["stats", [["allocs", "unsigned long long", [11]],
                      ["hist", "unsigned long long", [11, 27]]], "struct"]
    t = bpfmap.decode_type(desc)
    assert ctypes.sizeof(t) == 8 * 11 + 8 * 11 * 27
    v = t()
    v.hist[10][26] = 7
    assert len(v.hist) == 11 and len(v.hist[0]) == 27 and v.hist[10][26] == 7


def test_bitfields_packed_unions_and_anonymous_members():
    desc = ["k", [["a", "unsigned int", 3], ["b", "unsigned int", 29],
                  ["", [["x", "unsigned long long"], ["y", "unsigned int"]], "union"],
                  ["comm", "char", [16]]], "struct"]
    t = bpfmap.decode_type(desc)
    assert ctypes.sizeof(t) == 4 + 4 + 8 + 16
    v = t()
    v.x = 1 << 40           # an anonymous union's members read as the struct's own
    assert v.x == 1 << 40
    v.comm = b"mfd"
    assert v.comm == b"mfd"
    packed = bpfmap.decode_type(["p", [["c", "char"], ["n", "unsigned long long"]],
                                 "struct_packed"])
    assert ctypes.sizeof(packed) == 9


@pytest.mark.parametrize("desc", [
    "__int1024", ["x"], ["x", "notalist"], ["x", [["f", "int", "bogus"]]],
    ["x", [["f"]]], 42,
])
def test_unreadable_descriptions_are_refused(desc):
    with pytest.raises(ValueError):
        bpfmap.decode_type(desc)


def test_nesting_is_bounded():
    desc = "int"
    for i in range(100):
        desc = [f"s{i}", [["f", desc]], "struct"]
    with pytest.raises(ValueError, match="deeply"):
        bpfmap.decode_type(desc)


def test_possible_cpus_counts_up_to_the_highest():
    n = bpfmap.possible_cpus()
    with open("/sys/devices/system/cpu/possible") as f:
        last = f.read().strip().replace("-", ",").split(",")[-1]
    assert n == int(last) + 1


def test_kprobe_event_names(tmp_path):
    f = tmp_path / "kprobe_events"
    f.write_text("p:kprobes/p___alloc_pages_bcc_4242 __alloc_pages\n"
                 "r16:kprobes/r___alloc_pages_bcc_4242 __alloc_pages\n"
                 "p:myprobes/other do_sys_open dfd=%ax\n\n")
    assert tracefs.kprobe_event_names(str(f)) == [
        "p___alloc_pages_bcc_4242", "r___alloc_pages_bcc_4242", "other"]
    assert tracefs.kprobe_event_names(str(tmp_path / "absent")) == []
