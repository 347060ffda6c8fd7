"""``mfd doctor``: findings from hand-made looks (each rule at its threshold),
the compaction view on this kernel against debugfs, and the command's exit
status with a real tunable moved off its default."""
from __future__ import annotations

import json
import os
import time

import pytest

from conftest import mfd_argv, needs_root, run_mfd
from mfd.compaction import ProactiveVerdict, SuitableVerdict, fragmentation_score_zone
from mfd.diagnose.findings import Look, Thresholds, findings, worst
from mfd.diagnose.view import NodeView, ZoneView
from mfd.fragindex import parse_debugfs_index
from mfd.sources.procfs import parse_buddyinfo

BIG = 1 << 20          # pages: a 4 GiB zone
NO_BLOCK = [500, 200] + [0] * 9
BLOCKS = [5] * 11


def _verdict(order, kind="allocatable", fragindex=None):
    return SuitableVerdict(kind, order, 0, 0, fragindex, 500, False, "")


def _look(score=10, verdict="will_not", nr_free=BLOCKS, boost=0, zone_verdict="allocatable",
          fragindex=None):
    zone = ZoneView(0, "Normal", BIG, score, boost,
                    tuple(_verdict(o, zone_verdict if o == 9 else "allocatable",
                                   fragindex if o == 9 else None) for o in range(1, 11)))
    node = NodeView(0, score, ProactiveVerdict(verdict, score, 80, 90, ""), (zone,))
    return Look([node], {(0, "Normal"): nr_free}, {(0, "Normal"): BIG})


def _find(first, last=None, vmstat=None, tunables=None, **kw):
    return findings(first, last or first, vmstat or {}, 5.0, tunables or {}, 9, 4096, (6, 18),
                    **kw)


def test_a_healthy_look_has_no_findings():
    assert _find(_look()) == []


def test_no_hpage_block_and_for_how_long():
    f = _find(_look(nr_free=NO_BLOCK))
    assert [x.code for x in f] == ["no_hpage_block"]
    assert "for the whole 5 s window" in f[0].text and "order-9 (2 MiB)" in f[0].text
    late = _find(_look(), _look(nr_free=NO_BLOCK))
    assert "at the end of the window" in late[0].text
    # a small zone (DMA) is not expected to hold one
    small = _look(nr_free=NO_BLOCK)
    small = Look(small.view, small.nr_free, {(0, "Normal"): 1000})
    assert _find(small) == []


def test_score_above_high_and_not_falling():
    f = _find(_look(95, "will_compact"), _look(95, "will_compact"))
    assert [x.code for x in f] == ["score_not_falling"] and "95 -> 95" in f[0].text
    assert _find(_look(96, "will_compact"), _look(94, "will_compact")) == []   # falling
    assert _find(_look(95, "will_not"), _look(95, "will_compact")) == []      # just started


def test_compaction_failing_at_the_ratio():
    assert worst(_find(_look(), vmstat={"compact_stall": 4, "compact_fail": 2})) == "critical"
    assert _find(_look(), vmstat={"compact_stall": 4, "compact_fail": 1}) == []
    th = Thresholds(fail_ratio=0.2, min_stalls=5)
    assert _find(_look(), vmstat={"compact_stall": 4, "compact_fail": 4}, th=th) == []


def test_fragindex_veto_only_while_thp_faults_fall_back():
    vetoed = _look(zone_verdict="no_fragmentation", fragindex=312)
    assert _find(vetoed) == []
    f = _find(vetoed, vmstat={"thp_fault_fallback": 40})
    assert [x.code for x in f] == ["fragindex_veto"]
    assert "0.312 <= vm.extfrag_threshold 0.500" in f[0].text


def test_boost_proactiveness_and_tunables():
    f = _find(_look(95, boost=1234), tunables={"vm/compaction_proactiveness": 0,
                                                "vm/extfrag_threshold": 500,
                                                "vm/watermark_scale_factor": 50})
    codes = [x.code for x in f]
    assert codes == ["proactive_off", "watermark_boost", "tunable", "tunable"]
    assert f[0].severity == "warning" and "above 90" in f[0].text
    assert {x.text for x in f if x.code == "tunable"} == {
        "vm.compaction_proactiveness is 0 (default 20)",
        "vm.watermark_scale_factor is 50 (default 10)"}


def test_findings_are_ordered_by_severity():
    f = _find(_look(nr_free=NO_BLOCK, boost=1), vmstat={"compact_stall": 2, "compact_fail": 2},
              tunables={"vm/watermark_scale_factor": 11})
    assert [x.severity for x in f] == ["critical", "warning", "info", "info"]


# -- on this kernel ------------------------------------------------------------------------

@needs_root
def test_zone_score_equals_debugfs_unusable_index(debugfs):
    """fragmentation_score_zone() at the THP order = debugfs unusable_index
    (thousandths) / 10, floored, read at the same moment (retried: the
    allocator moves between the two reads)."""
    path = os.path.join(debugfs, "extfrag", "unusable_index")
    for _attempt in range(20):
        with open("/proc/buddyinfo") as f:
            buddy = parse_buddyinfo(f.read())
        with open(path) as f:
            unusable = parse_debugfs_index(f.read())
        with open("/proc/buddyinfo") as f:
            again = parse_buddyinfo(f.read())
        if buddy != again:
            continue
        for key, nr_free in buddy.items():
            free = sum(n << o for o, n in enumerate(nr_free))
            want = 0 if free == 0 else unusable[key][9] // 10
            assert fragmentation_score_zone(nr_free, 9) == want, (key, nr_free, unusable[key])
        return
    pytest.skip("buddyinfo never held still for two reads")


@needs_root
def test_doctor_names_a_tunable_off_its_default_and_fails_on_it():
    path = "/proc/sys/vm/watermark_scale_factor"
    with open(path) as f:
        before = f.read().strip()
    other = "11" if before != "11" else "12"
    try:
        with open(path, "w") as f:
            f.write(other)
        r = run_mfd("doctor", "--window", "0.2", "--json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert {"code": "tunable", "severity": "info", "node": None, "zone": None,
                "text": f"vm.watermark_scale_factor is {other} (default 10)"} in doc["findings"]
        assert doc["view"] and all("score" in n and "proactive" in n for n in doc["view"])
        text = run_mfd("doctor", "--window", "0.2", "--fail-on", "info")
        assert text.returncode == 1 and "INFO" in text.stdout
        assert run_mfd("doctor", "--window", "0.2", "--fail-on", "never").returncode == 0
    finally:
        with open(path, "w") as f:
            f.write(before)


@needs_root
def test_doctor_view_table_has_every_zone():
    r = run_mfd("doctor", "--window", "0.1", "-z")
    assert r.returncode == 0, r.stderr
    with open("/proc/buddyinfo") as f:
        zones = parse_buddyinfo(f.read())
    rows = [ln.split() for ln in r.stdout.splitlines() if ln.startswith("  ") and
            not ln.startswith("  ZONE") and not ln.startswith("  ok:")]
    assert sorted(row[0] for row in rows) == sorted(z for _n, z in zones)
    for row in rows:       # zone, score, boost, one verdict per order 1..10
        assert len(row) == 3 + 10 and all(c in ("ok", "recl", "veto", "COMP") for c in row[3:])


def test_doctor_usage_errors():
    assert run_mfd("doctor", "-z", "--json", "--window", "0.1").returncode == 2
    assert run_mfd("doctor", "--window", "0").returncode == 2
    assert run_mfd("doctor", "--fail-on", "bad").returncode == 2
    assert run_mfd("doctor", "--fail-ratio", "2").returncode == 2


# -- findings from the event groups -------------------------------------------------------

def _events(extfrag_rows=(), direct=()):
    from mfd.model.events import CompactionResult, Events, ExtfragResult
    return Events(5.0, results=(ExtfragResult(by_process=tuple(extfrag_rows)),
                                CompactionResult(direct=tuple(direct))))


def test_event_findings_name_processes_with_their_numbers():
    from mfd.diagnose.findings import event_findings
    from mfd.model.events import DirectCompaction, ExtfragRow
    rows = [ExtfragRow(pid=10, comm="builder", alloc_order=0, fallback_order=3, events=7,
                       change_ownership=2),
            ExtfragRow(pid=11, comm="cache", alloc_order=0, fallback_order=9, events=4,
                       change_ownership=1),         # 3 left, but a whole-block fallback
            ExtfragRow(pid=10, comm="builder", alloc_order=1, fallback_order=2, events=1)]
    direct = [DirectCompaction(pid=20, comm="java", order=9, count=3, stall_ns=45_000_000),
              DirectCompaction(pid=21, comm="db", order=4, count=1, stall_ns=1_000_000),
              DirectCompaction(pid=20, comm="java", order=4, count=1, stall_ns=5_000_000)]
    f = {x.code: x for x in event_findings(_events(rows, direct), pageblock_order=9)}
    assert f["direct_compaction"].text == ("direct compaction stalled 5 times in 5 s: "
                                           "java (pid 20) 4 for 50.0 ms, db (pid 21) 1 for 1.0 ms")
    assert f["pageblock_takeover"].text.startswith("3 fallbacks in 5 s took over pageblocks")
    assert f["pageblock_takeover"].text.endswith("builder (pid 10) 2, cache (pid 11) 1")
    # builder: 7-2 + 1 left the block's type below order 9; cache's order-9 ones do not count
    assert f["pageblock_pollution"].text.endswith(": builder (pid 10) 6")
    assert event_findings(_events(), 9) == []
    # rows in cgroups: the cgroups come after the processes
    from dataclasses import replace
    placed = [replace(rows[0], cgroup="/batch"), replace(rows[1], cgroup="/web")]
    f = {x.code: x for x in event_findings(_events(placed), 9)}
    assert f["pageblock_takeover"].text.endswith("; by cgroup: /batch 2, /web 1")


@needs_root
def test_doctor_names_the_process_that_steals_pageblocks():
    """The page-table workload makes unmovable fallbacks; doctor, watching
    the events over its window, names it."""
    import subprocess
    import workloads
    p = subprocess.Popen(mfd_argv("doctor", "--window", "20", "--json"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids = []
    try:
        time.sleep(3)                 # the events are loaded by now (compile ~0.5 s)
        for gib in (None, 800, 1600):
            child = workloads.Child("page-tables", *(["--gib", str(gib)] if gib else []))
            child.run()
            pids.append(child.pid)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    doc = json.loads(out)
    assert doc["events"] is not None, err
    stolen = [f for f in doc["findings"]
              if f["code"] in ("pageblock_takeover", "pageblock_pollution")]
    by_us = [r for r in doc["events"]["extfrag"]["by_process"] if r["pid"] in pids]
    if not by_us:
        pytest.skip("the workload made no extfrag event this time")
    # the workload is what steals on this otherwise idle machine: named in a finding
    assert any(f"(pid {pid})" in f["text"] for f in stolen for pid in pids), (stolen, by_us)
