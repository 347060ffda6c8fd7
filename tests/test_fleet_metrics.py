"""The exporter's new metrics without a Prometheus: the event counters'
folding of per-process rows into bounded labels (the cgroup cap and its
"other"), the diagnosis gauges against hand-worked numbers and the kernel's
debugfs, and mfd serve's options."""
from __future__ import annotations

import subprocess

import pytest

import fleet
from conftest import mfd_argv, needs_root, run_mfd
from mfd.diagnose.gauges import diagnosis, orders_of
from mfd.model import (CompactionResult, CompactionZone, DirectCompaction, Events, ExtfragResult,
                       ExtfragRow, KcompactdWake, NodeSnapshot, Snapshot, ZoneSnapshot)
from mfd.sinks.event_metrics import OTHER, EventCounters

prometheus_client = pytest.importorskip("prometheus_client")


def _zone(node, name, idx, present, nr_free):
    return ZoneSnapshot(node, name, idx, idx << 20, present, present, present, tuple(nr_free))


def _snapshot(*zones):
    nodes = {}
    for z in zones:
        nodes.setdefault(z.node, []).append(z)
    return Snapshot(0.0, "test", len(zones[0].nr_free), tuple(
        NodeSnapshot(n, len(zs), 0, sum(z.present for z in zs), 0, tuple(zs))
        for n, zs in sorted(nodes.items())))


def _values(counters):
    return {(s.name, tuple(s.labels.values())): s.value
            for f in counters.families() for s in f.samples}


def _steal(cgroup, events, takeovers, pid=1, alloc="Unmovable", fallback="Movable"):
    return ExtfragRow(pid=pid, comm="x", alloc_migratetype=alloc, fallback_migratetype=fallback,
                      events=events, change_ownership=takeovers, cgroup=cgroup)


def test_rows_fold_into_bounded_labels_and_only_grow():
    c = EventCounters(["extfrag", "compaction"], cgroup_cap=2)
    c.start(_snapshot(_zone(0, "Normal", 2, 1000, [0] * 11)))
    before = _values(c)
    assert before[("mfd_extfrag_fallbacks_total", ("Unmovable", "Movable", "takeover"))] == 0
    assert before[("mfd_compaction_runs_total", ("0", "Normal", "success"))] == 0
    c.add(Events(1.0, results=(ExtfragResult(by_process=(
        _steal("/a", 5, 3), _steal("/a", 2, 0, pid=2), _steal("/b", 1, 1),
        _steal("/c", 4, 4), _steal("/d", 1, 0))),)))
    v = _values(c)
    assert v[("mfd_extfrag_fallbacks_total", ("Unmovable", "Movable", "takeover"))] == 8
    assert v[("mfd_extfrag_fallbacks_total", ("Unmovable", "Movable", "pollution"))] == 5
    cg = {k[1]: n for k, n in v.items() if k[0] == "mfd_cgroup_extfrag_fallbacks_total"}
    # the first two paths seen keep labels; the others add up under "other"
    assert cg == {("/a", "takeover"): 3, ("/a", "pollution"): 4, ("/b", "takeover"): 1,
                  (OTHER, "takeover"): 4, (OTHER, "pollution"): 1}
    c.add(Events(1.0, results=(ExtfragResult(by_process=(_steal("/a", 1, 1),)),)))
    again = _values(c)
    assert again[("mfd_cgroup_extfrag_fallbacks_total", ("/a", "takeover"))] == 4
    assert all(again[k] >= n for k, n in v.items())


def test_compaction_rows_fold_per_zone_and_status():
    c = EventCounters(["compaction"], cgroup_cap=0)
    c.add(Events(1.0, results=(CompactionResult(
        by_zone=(CompactionZone(node=0, zone="Normal", begin=3, runs=3, duration_ns=3_000_000,
                                max_ns=2_000_000, status={"success": 2, "complete": 1},
                                direct_runs=1, direct_ns=500_000),),
        direct=(DirectCompaction(pid=7, order=9, count=4, stall_ns=500_000, cgroup="/x"),),
        kcompactd=(KcompactdWake(node=0, order=9, highest_zone="Normal", wakes=2),),
        dropped=1),)))
    v = _values(c)
    assert v[("mfd_compaction_runs_total", ("0", "Normal", "success"))] == 2
    assert v[("mfd_compaction_runs_total", ("0", "Normal", "complete"))] == 1
    assert v[("mfd_compaction_run_seconds_total", ("0", "Normal"))] == pytest.approx(0.003)
    assert v[("mfd_direct_compaction_seconds_total", ("0", "Normal"))] == pytest.approx(0.0005)
    assert v[("mfd_direct_compaction_runs_total", ("0", "Normal"))] == 1
    assert v[("mfd_direct_compaction_stalls_total", ("9",))] == 4
    assert v[("mfd_kcompactd_wakes_total", ("0",))] == 2
    assert v[("mfd_event_drops_total", ("compaction",))] == 1
    assert not any(k[0].startswith("mfd_cgroup_") for k in v)    # --cgroup-labels 0


def test_diagnosis_by_hand():
    # Normal: 100 free order-0 pages and 1 order-9 block (512 pages): 100/612
    # of free memory below order 9, score floor(100*100/612) = 16; DMA32 all
    # in order 0: score 100.  Node: 16*3000//4001 + 100*1000//4001 = 11 + 24.
    normal = _zone(0, "Normal", 2, 3000, [100] + [0] * 8 + [1, 0])
    dma32 = _zone(0, "DMA32", 1, 1000, [50] + [0] * 10)
    empty = _zone(0, "Movable", 3, 0, [0] * 11)
    d = diagnosis(_snapshot(dma32, normal, empty), 20, (6, 18), 9, [9, 18], 4096)
    assert [(z.zone, z.score) for z in d.zones] == [("DMA32", 100), ("Normal", 16)]
    assert [(n.score, n.low, n.high) for n in d.nodes] == [(11 + 24, 80, 90)]
    # 6.1's formula differs at p=90: 10/20 there, 10/15 from 6.16
    assert (diagnosis(_snapshot(normal), 90, (6, 1), 9, [9], 4096).nodes[0].high,
            diagnosis(_snapshot(normal), 90, (6, 18), 9, [9], 4096).nodes[0].high) == (20, 15)
    avail = {(a.zone, a.order): (a.blocks, a.size, a.thp) for a in d.available}
    assert avail == {("DMA32", 9): (0, 2 << 20, True), ("DMA32", 18): (0, 1 << 30, False),
                     ("Normal", 9): (1, 2 << 20, True), ("Normal", 18): (0, 1 << 30, False)}
    assert orders_of(9, [2 << 20, 1 << 30, 3 << 20], 4096) == [9, 18]


def _scrape_registry(source):
    from mfd.cli.serve import _diagnose
    from mfd.derive import Frame
    from mfd.model import Filter, Sample
    from mfd.sinks.exporter import SnapshotCollector
    reg = prometheus_client.CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(lambda: Frame(Sample(source.snapshot(), 0.0, 0), Filter()),
                                   {"version": "t"}, None, _diagnose()))
    return prometheus_client.generate_latest(reg).decode()


def _unusable_thousandths(path="/sys/kernel/debug/extfrag/unusable_index"):
    out = {}
    with open(path) as f:
        for line in f:
            head, _, values = line.partition("zone")
            zone, *vals = values.split()
            out[(head.split()[1].rstrip(","), zone)] = int(round(float(vals[9]) * 1000))
    return out


@needs_root
def test_zone_scores_equal_the_kernels_debugfs(debugfs):
    """fragmentation_score_zone() = unusable_index at the THP order, in
    thousandths, divided by 10 (KERNEL-MM.md 1.2): read around a scrape."""
    from mfd.sources.procfs import ProcfsSource
    before = _unusable_thousandths()
    metrics = fleet.parse_metrics(_scrape_registry(ProcfsSource()))
    after = _unusable_thousandths()
    scores = {(dict(lv)["node"], dict(lv)["zone"]): v for (n, lv), v in metrics.items()
              if n == "mfd_zone_fragmentation_score"}
    assert scores
    for key, score in scores.items():
        lo, hi = sorted((before[key] // 10, after[key] // 10))
        assert lo - 1 <= score <= hi + 1, (key, score, before[key], after[key])
    with open("/proc/sys/vm/compaction_proactiveness") as f:
        p = int(f.read())
    low = [v for (n, _), v in metrics.items() if n == "mfd_node_fragmentation_score_low_watermark"]
    assert low and all(v == 100 - p for v in low)   # this kernel's formula (6.16+)
    assert any(n == "mfd_sample_age_seconds" and 0 <= v < 1 for (n, _), v in metrics.items())


def test_serve_options_are_checked_before_anything_loads():
    for args, msg in ((["--events", "bogus"], "unknown event group 'bogus'"),
                      (["--cgroup-labels", "-1"], "--cgroup-labels"),
                      (["--alloc-probe", "kprobe"], "--alloc-probe does nothing without the "
                                                    "alloc group"),
                      (["--events", "alloc", "--cgroup-labels", "4"], "--cgroup-labels does "
                                                                      "nothing"),
                      (["--source", "procfs", "--bpf-loader", "helper"], "nothing is compiled")):
        r = run_mfd("serve", "--listen", "127.0.0.1:1", *args, timeout=30)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.splitlines()) == 1, \
            (args, r.stderr)


def test_procfs_serves_diagnosis_without_events_and_without_root():
    """The documented non-root exporter still works: no events, no compile."""
    svc = fleet.start_mfd("--source", "procfs")
    try:
        text = fleet.get(svc.url)
    finally:
        err = svc.stop()
    assert 'events="none"' in text and "mfd_node_fragmentation_score{" in text
    assert "mfd_extfrag_fallbacks_total" not in text and "Traceback" not in err


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


@needs_root
def test_explicit_events_as_nobody_fail_in_one_line_default_ones_degrade():
    r = subprocess.run(NOBODY + mfd_argv("serve", "--listen", f"127.0.0.1:{fleet.free_port()}",
                                         "--events", "extfrag"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "needs root" in r.stderr.strip().splitlines()[-1], r.stderr
    port = fleet.free_port()
    svc = fleet.Service(NOBODY + mfd_argv("serve", "--listen", f"127.0.0.1:{port}"), port,
                        "/metrics", "mfd serve as nobody")
    try:
        text = fleet.get(svc.url)
    finally:
        err = svc.stop()
    assert 'events="none"' in text and "serving without event counters" in err, err


@needs_root
def test_the_prometheus_alias_takes_events():
    port = fleet.free_port()
    svc = fleet.Service(mfd_argv("--prometheus", str(port), "--source", "procfs", "--events",
                                 "compaction"), port, "/metrics", "mfd --prometheus")
    try:
        text = fleet.get(svc.url)
    finally:
        svc.stop()
    assert 'events="compaction"' in text and "mfd_compaction_run_seconds_total{" in text


def test_series_known_in_advance_follow_the_filter_and_other_exists_at_zero():
    """-c Normal: no DMA32 series at 0 (it reads as "no compaction" where it
    is "not watched"); the cgroup "other" bucket exists before its first
    event, so rate() sees that one."""
    from mfd.model import Filter
    c = EventCounters(["extfrag", "compaction"], cgroup_cap=2)
    c.start(_snapshot(_zone(0, "DMA32", 1, 1000, [0] * 11), _zone(0, "Normal", 2, 1000, [0] * 11)),
            Filter(zone="Normal"))
    v = _values(c)
    zones = {k[1][1] for k in v if k[0] == "mfd_compaction_runs_total"}
    assert zones == {"Normal"}
    assert v[("mfd_cgroup_extfrag_fallbacks_total", (OTHER, "takeover"))] == 0
    assert v[("mfd_cgroup_direct_compaction_stalls_total", (OTHER,))] == 0


def test_a_cgroup_name_that_is_not_utf8_cannot_break_the_scrape(tmp_path):
    """Any local user with a delegated cgroup can name one with bytes that are
    not UTF-8: the walk turns them into backslash escapes, and the scrape
    renders (it was a 500 on every scrape, for good)."""
    import os
    from mfd.kernel.cgroups import walk
    os.mkdir(os.fsencode(str(tmp_path)) + b"/evil\xff\xfe")
    paths = walk(str(tmp_path))
    evil = [p for p in paths.values() if p.startswith("/evil")]
    assert evil == ["/evil\\xff\\xfe"]
    c = EventCounters(["extfrag"], cgroup_cap=4)
    c.start(_snapshot(_zone(0, "Normal", 2, 1000, [0] * 11)))
    c.add(Events(1.0, results=(ExtfragResult(by_process=(_steal(evil[0], 3, 3),)),)))
    registry = prometheus_client.CollectorRegistry()
    registry.register(type("C", (), {"collect": lambda self: c.families()})())
    text = prometheus_client.generate_latest(registry).decode()
    assert 'cgroup="/evil\\\\xff\\\\xfe"' in text
