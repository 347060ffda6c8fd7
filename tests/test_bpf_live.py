"""The eBPF zone walker on the running kernel, checked against the kernel's own files.

Counts move between two reads, so each comparison brackets one file read
between two eBPF snapshots and retries until the kernel holds still.
"""
from __future__ import annotations

import os

import pytest

from conftest import needs_root
from mfd import fragindex
from mfd.sources.procfs import ProcfsSource, parse_buddyinfo
from mfd.derive import order_stats

pytestmark = needs_root

TRIES = 50


def _read(path):
    with open(path) as f:
        return f.read()


def _bpf_counts(snap):
    return {(z.node, z.zone): z.nr_free for z in snap.zones() if z.populated}


def test_same_zones_as_buddyinfo(bpf_collector):
    snap = bpf_collector.snapshot()
    buddy = parse_buddyinfo(_read("/proc/buddyinfo"))
    assert set(_bpf_counts(snap)) == set(buddy)
    assert snap.nr_orders == len(next(iter(buddy.values())))
    assert snap.source == "bpf" and snap.pgdat_path in ("kallsyms", "memcg")


def bracketed(outer, inner, what):
    """inner()'s counts lie between the two outer() reads around it, in one of TRIES
    tries (counts move between reads).  Also used by tests/vm/guest_checks.py."""
    worst = None
    for _ in range(TRIES):
        before, middle, after = outer(), inner(), outer()
        assert set(middle) == set(before)
        outside = [(k, o) for k, counts in middle.items() for o, n in enumerate(counts)
                   if not min(before[k][o], after[k][o]) <= n <= max(before[k][o], after[k][o])]
        if not outside:
            return
        worst = outside
    pytest.fail(f"{what} never bracketed in {TRIES} tries: {worst[:5]}")


def test_counts_equal_buddyinfo_within_drift(bpf_collector):
    """Each /proc/buddyinfo count lies between the two eBPF reads around it."""
    bracketed(lambda: _bpf_counts(bpf_collector.snapshot()),
              lambda: parse_buddyinfo(_read("/proc/buddyinfo")), "/proc/buddyinfo")


def test_zone_sizes_equal_zoneinfo(bpf_collector):
    """start_pfn, spanned, present of every zone (empty ones too) match /proc/zoneinfo."""
    snap = bpf_collector.snapshot()
    proc = ProcfsSource().snapshot()
    key = lambda z: (z.node, z.zone)  # noqa: E731
    bpf_zones = {key(z): z for z in snap.zones()}
    proc_zones = {key(z): z for z in proc.zones()}
    assert set(bpf_zones) == set(proc_zones)
    for k, pz in proc_zones.items():
        bz = bpf_zones[k]
        assert (bz.spanned, bz.present, bz.zone_idx) == (pz.spanned, pz.present, pz.zone_idx), k
        if pz.populated:
            assert bz.start_pfn == pz.start_pfn, k
    # managed grows while this VM hot-adds memory: only the same order of magnitude
    for k, pz in proc_zones.items():
        assert abs(bpf_zones[k].managed - pz.managed) <= max(pz.managed // 10, 1024), k


def test_node_info(bpf_collector):
    snap = bpf_collector.snapshot()
    proc = ProcfsSource().snapshot()
    assert [n.node for n in snap.nodes] == [n.node for n in proc.nodes]
    for n in snap.nodes:
        # a kernel address: the upper half (x86-64 with 5-level paging, as in
        # Debian's kernel under QEMU, maps memory from 0xff00000000000000)
        assert n.pgdat and n.pgdat >= 1 << 63
        populated = [z.zone_idx for z in n.zones if z.populated]
        assert n.nr_zones == max(populated) + 1
        assert n.present == sum(z.present for z in n.zones)


@pytest.mark.parametrize("kind", ["extfrag_index", "unusable_index"])
def test_indices_equal_debugfs(bpf_collector, debugfs, kind):
    """Indices computed from an eBPF snapshot equal the kernel's debugfs file."""
    compute = (lambda s: s.extfrag) if kind == "extfrag_index" else (lambda s: s.unusable)
    path = os.path.join(debugfs, "extfrag", kind)
    last = None
    for _ in range(TRIES):
        snaps = [bpf_collector.snapshot()]
        kernel = fragindex.parse_debugfs_index(_read(path))
        snaps.append(bpf_collector.snapshot())
        for snap in snaps:
            ours = {(z.node, z.zone): [compute(s) for s in order_stats(z.nr_free)]
                    for z in snap.zones() if z.populated}
            if ours == kernel:
                return
            last = (ours, kernel)
    pytest.fail(f"{kind} never matched in {TRIES} tries: ours {last[0]} kernel {last[1]}")


def test_snapshot_json_has_no_kernel_address(bpf_collector):
    import json

    from mfd.derive import Frame
    from mfd.model import Sample
    from mfd.sinks.jsonl import sample_json
    snap = bpf_collector.snapshot()
    text = json.dumps(sample_json(Frame(Sample(snap, 1.0, 0)), "h", "k"))
    for n in snap.nodes:
        assert str(n.pgdat) not in text and ("%x" % n.pgdat) not in text
    assert "pgdat\"" not in text.replace("pgdat_path", "")


def test_kallsyms_path_says_why_when_unavailable():
    """This kernel has no data symbols: asking for kallsyms explains it."""
    from mfd.kernel import facts as sysfs
    from mfd.sources.zonewalk import ZonewalkSource
    from mfd.errors import KernelUnsupported
    if sysfs.kallsyms_lookup(["node_data", "contig_page_data"]):
        pytest.skip("this kernel has node_data/contig_page_data in kallsyms")
    with pytest.raises(KernelUnsupported, match="KALLSYMS_ALL"):
        ZonewalkSource(pgdat_path="kallsyms", load=False)


def test_load_failure_is_one_clear_error():
    """A compile error becomes SourceUnavailable quoting the compiler, nothing on stderr."""
    from mfd.sources.zonewalk import ZonewalkSource
    from mfd.errors import SourceUnavailable
    c = ZonewalkSource(load=False, note=lambda m: None)
    c.cflags = c.cflags + ["-DMFD_NR_ORDERS=this_is_not_a_number"]
    with pytest.raises(SourceUnavailable, match="error"):
        c._load()
