"""Fleet monitoring on the real kernel: mfd serve with every event group,
a real node_exporter and a real Prometheus scraping both (loopback, free
ports), one stack shared by the tests of this module.

* The event counters of two scrapes differ by what an independent tracefs
  instance recorded between them (its clock is CLOCK_MONOTONIC, so each
  record falls before, between or during the scrapes).
* Every dashboard query, every recording rule and the series every alert
  reads return data through Prometheus' query API; mfd_zone_free_blocks
  equals node_exporter's node_buddyinfo_blocks within drift, and so do the
  node_exporter-compatible series the recording rules make.
* promtool check metrics is clean on a scrape.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from collections import Counter, defaultdict

import pytest

import fleet
import workloads
from conftest import needs_root, remove_cgroup
from test_events_live import Ftrace
from workloads import Child

pytestmark = [needs_root, pytest.mark.skipif(
    not (fleet.PROMETHEUS and fleet.NODE_EXPORTER and fleet.PROMTOOL),
    reason="needs Debian's prometheus and prometheus-node-exporter")]

# enum migratetype (include/linux/mmzone.h), the same in every kernel since
# 2.6.24 for the three per-CPU list types: the tracefs record's numbers.
MIGRATETYPES = {0: "Unmovable", 1: "Movable", 2: "Reclaimable"}
EVENTS = ("kmem/mm_page_alloc_extfrag", "compaction/mm_compaction_begin",
          "compaction/mm_compaction_end", "compaction/mm_compaction_try_to_compact_pages",
          "compaction/mm_compaction_kcompactd_wake")


class Stack:
    def __init__(self, directory):
        self.services = []
        try:
            self.mfd = self._add(fleet.start_mfd("--events", "all", "--cgroup-labels", "256"))
            self.node = self._add(fleet.start_node_exporter())
            self.prom = self._add(fleet.Prometheus(str(directory), {
                "mfd": self.mfd.port, "node": self.node.port}))
            fleet.wait_for(lambda: len([r for r in self.prom.query("up == 1")]) == 2,
                           "Prometheus to scrape mfd and node_exporter")
        except BaseException:
            self.close()
            raise

    def _add(self, service):
        self.services.append(service)
        return service

    def scrape(self):
        return fleet.parse_metrics(fleet.get(self.mfd.url))

    def close(self):
        for s in reversed(self.services):
            s.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("fleet"))
    yield s
    s.close()


def _zones_by_start():
    """zone_start_pfn -> (node, zone) from /proc/zoneinfo."""
    out, here = {}, None
    with open("/proc/zoneinfo") as f:
        for line in f:
            m = re.match(r"Node (\d+), zone\s+(\S+)", line)
            if m:
                here = (m[1], m[2])
            m = re.match(r"\s+start_pfn:\s+(\d+)", line)
            if m and here:
                out[int(m[1])] = here
    return out


def _delta(a, b, name):
    """{labels: b - a} of one metric (labels as a dict's sorted items)."""
    return {lv: v - a.get((n, lv), 0) for (n, lv), v in b.items() if n == name}


def _counts_from_tracefs(recs, zones, cgroup_pids):
    """What the event counters should have grown by, from tracefs records."""
    want = defaultdict(Counter)
    begin = {}
    direct_pids = {pid for _t, _c, pid, e, _f in recs if e == "mm_compaction_try_to_compact_pages"}
    for ts, comm, pid, event, f in recs:
        if event == "mm_page_alloc_extfrag":
            kind = "takeover" if f["change_ownership"] == "1" else "pollution"
            key = (("alloc_migratetype", MIGRATETYPES[int(f["alloc_migratetype"])]),
                   ("fallback_migratetype", MIGRATETYPES[int(f["fallback_migratetype"])]),
                   ("kind", kind))
            want["mfd_extfrag_fallbacks_total"][key] += 1
            if pid in cgroup_pids:
                want["cgroup"][kind] += 1
        elif event == "mm_compaction_begin":
            begin[pid] = ts
        elif event == "mm_compaction_end":
            node, zone = zones[int(f["zone_start"], 16)]
            want["mfd_compaction_runs_total"][(("node", node), ("status", f["status"]),
                                               ("zone", zone))] += 1
            if pid in begin:
                want["seconds"][(("node", node), ("zone", zone))] += ts - begin.pop(pid)
            if pid in direct_pids:
                want["direct_ends"][(("node", node), ("zone", zone))] += 1
        elif event == "mm_compaction_try_to_compact_pages":
            want["mfd_direct_compaction_stalls_total"][(("order", f["order"]),)] += 1
        elif event == "mm_compaction_kcompactd_wake":
            want["mfd_kcompactd_wakes_total"][(("node", f["nid"]),)] += 1
    return want


def _bracketed(got, inner, outer, what):
    """Every label set grew by at least the records between the scrapes and
    at most those of the whole window (the scrapes' own moments included)."""
    for key in set(inner) | set(outer) | {k for k, v in got.items() if v}:
        assert inner.get(key, 0) <= got.get(key, 0) <= outer.get(key, 0), (what, key, got)


def _window(stack, events, action, **ftrace_kw):
    """Scrape, ``action()``, scrape, with tracefs recording ``events``
    around it all: (first scrape, second scrape, records between the
    scrapes, records of the whole window)."""
    with Ftrace(*events, name="mfdfleet", clock="mono", **ftrace_kw) as ft:
        a0 = time.monotonic()
        a = stack.scrape()
        a1 = time.monotonic()
        action(ft)
        b0 = time.monotonic()
        b = stack.scrape()
        b1 = time.monotonic()
        ft.stop()
        recs = ft.timed_records()
    return a, b, [r for r in recs if a1 < r[0] < b0], [r for r in recs if a0 < r[0] < b1]


def test_event_counters_equal_tracefs_over_the_same_window(stack):
    from mfd.kernel.cgroups import cgroup2_mount
    root = cgroup2_mount()
    cgroup = f"mfd-fleet-{os.getpid()}"
    if root:
        os.mkdir(os.path.join(root, cgroup))

    def join():
        if root:
            with open(os.path.join(root, cgroup, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
    pids = []

    def work(ft):
        for gib in (None, 800, 1600):      # until the page tables make steals
            child = Child("page-tables", *(["--gib", str(gib)] if gib else []), preexec=join)
            child.run()
            pids.append(child.pid)
            if any(r[2] in pids for r in ft.timed_records()):
                break
        workloads.compact_memory()         # every zone: runs on each, by this process
    try:
        a, b, inner, outer = _window(stack, EVENTS, work)
    finally:
        if root:
            remove_cgroup(os.path.join(root, cgroup))
    zones = _zones_by_start()
    inner = _counts_from_tracefs(inner, zones, set(pids))
    outer = _counts_from_tracefs(outer, zones, set(pids))
    assert inner["mfd_extfrag_fallbacks_total"], "the workload made no extfrag event"
    assert inner["mfd_compaction_runs_total"], "compact_memory made no compaction run"
    for name in ("mfd_extfrag_fallbacks_total", "mfd_compaction_runs_total",
                 "mfd_direct_compaction_stalls_total", "mfd_kcompactd_wakes_total"):
        _bracketed(_delta(a, b, name), inner[name], outer[name], name)
    # Run time, begin to end, as tracefs stamped the same two tracepoints.
    got = _delta(a, b, "mfd_compaction_run_seconds_total")
    for key, seconds in inner["seconds"].items():
        runs = sum(v for k, v in outer["mfd_compaction_runs_total"].items()
                   if k[0] == key[0] and k[2] == key[1])
        assert abs(got[key] - seconds) <= 0.0002 * runs + 0.02 * seconds, (key, got, seconds)
    # Direct runs are ends in tasks that entered direct compaction.
    direct = _delta(a, b, "mfd_direct_compaction_runs_total")
    for key, n in direct.items():
        assert n <= outer["direct_ends"].get(key, 0), (key, direct)
    # The workload's cgroup: exactly its processes' events (all between the scrapes).
    if root:
        mine = {dict(lv)["kind"]: v for lv, v in
                _delta(a, b, "mfd_cgroup_extfrag_fallbacks_total").items()
                if dict(lv)["cgroup"] == "/" + cgroup}
        assert {k: v for k, v in mine.items() if v} == dict(inner["cgroup"])
    assert all(v == 0 for v in _delta(a, b, "mfd_event_drops_total").values())


def test_alloc_counters_equal_tracefs(stack):
    a, b, inner, outer = _window(stack, ("kmem/mm_page_alloc",),
                                 lambda ft: Child("populate", "--mib", "32", "--thp").run(),
                                 buffer_kb=32768)

    def per_order(recs, failed):
        return Counter((("order", f["order"]),) for _t, _c, _p, e, f in recs
                       if e == "mm_page_alloc" and (f["pfn"] == "0x0" and f["page"] in
                                                    ("0000000000000000", "(null)", "(nil)")) == failed)
    for name, failed in (("mfd_page_allocations_total", False),
                         ("mfd_page_allocation_failures_total", True)):
        _bracketed(_delta(a, b, name), per_order(inner, failed), per_order(outer, failed), name)
    assert _delta(a, b, "mfd_page_allocations_total")[(("order", "9"),)] >= 16


def test_direct_compaction_counters_equal_tracefs(stack):
    """Fragment memory, take the free huge blocks away, fault huge pages: the
    faulting process compacts directly; every compaction run in its context
    is a direct one."""
    with open("/sys/kernel/mm/transparent_hugepage/defrag") as f:
        if "[never]" in f.read():
            pytest.skip("THP defrag is 'never': faults do not compact")
    thp = []

    def fault_huge_pages(ft):
        thp.append(Child("populate", "--mib", "512", "--thp"))
        thp[0].run()
    with Child("fragment", "--mib", "6144", "--hold") as frag:
        frag.ready()
        with workloads.HugeBlocks():
            a, b, inner, outer = _window(stack, EVENTS, fault_huge_pages)
    pid = thp[0].pid
    if not any(r[2] == pid and r[3] == "mm_compaction_try_to_compact_pages" for r in inner):
        pytest.skip("the huge-page faults found free huge blocks (no direct compaction)")
    zones = _zones_by_start()
    inside, whole = (_counts_from_tracefs(r, zones, set()) for r in (inner, outer))
    _bracketed(_delta(a, b, "mfd_direct_compaction_stalls_total"),
               inside["mfd_direct_compaction_stalls_total"],
               whole["mfd_direct_compaction_stalls_total"], "stalls")
    theirs = _counts_from_tracefs([r for r in inner if r[2] == pid], zones, set())
    runs = _delta(a, b, "mfd_direct_compaction_runs_total")
    seconds = _delta(a, b, "mfd_direct_compaction_seconds_total")
    assert sum(runs.values()) > 0
    for key in set(runs) | set(theirs["direct_ends"]):
        assert theirs["direct_ends"].get(key, 0) <= runs.get(key, 0) \
            <= whole["direct_ends"].get(key, 0), (key, runs, theirs["direct_ends"])
        if runs.get(key):
            # the workload's own runs, timed by tracefs, are the bulk of the stall
            assert seconds[key] >= 0.9 * theirs["seconds"].get(key, 0) - 0.001, key


def test_promtool_check_metrics_on_a_scrape(stack):
    text = fleet.get(stack.mfd.url)
    r = subprocess.run([fleet.PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr
    for name in ("mfd_extfrag_fallbacks_total", "mfd_node_fragmentation_score",
                 "mfd_zone_available_blocks", "mfd_sample_age_seconds",
                 "mfd_page_allocation_failures_total", "mfd_cgroup_extfrag_fallbacks_total"):
        assert f"\n{name}" in text, name


def _substituted(expr: str, stack) -> str:
    """A dashboard query with Grafana's variables as a user would pick them."""
    for var, value in (("$__rate_interval", "30s"), ("$__range", "5m"),
                       ("$host", f"127.0.0.1:{stack.mfd.port}"), ("$node", ".*"),
                       ("$zone", ".*")):
        expr = expr.replace(var, value)
    assert "$" not in expr, expr
    return expr


def test_every_dashboard_query_returns_data(stack):
    pytest.importorskip("grafana_foundation_sdk")
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "mfd_dashboard", os.path.join(fleet.REPO, "contrib", "grafana", "generate.py"))
    dash = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dash)
    for expr in dash.EXPRESSIONS:
        # rate() and increase() need two samples of a series, and the
        # series a test's events created may be a scrape old
        fleet.wait_for(lambda: stack.prom.query(_substituted(expr, stack)), expr, limit=20)


def _rules():
    import yaml
    with open(fleet.RULES) as f:
        return [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]


def test_every_rule_returns_data(stack):
    rules = _rules()
    recorded = [r for r in rules if "record" in r]
    alerts = [r for r in rules if "alert" in r]
    assert len(alerts) == 3 and len(recorded) >= 5
    fleet.wait_for(lambda: all(stack.prom.query(r["record"]) for r in recorded),
                   "every recording rule to have been evaluated", limit=30)
    for r in recorded:
        assert stack.prom.query(r["expr"]), r["record"]
    for r in alerts:
        # An alert's query returns data only while it fires: each is a
        # comparison of recorded series, which must have data, and a valid
        # query (promtool test rules checks when each fires).
        stack.prom.query(r["expr"])
        inputs = set(re.findall(r"mfd:[a-z0-9_:]+", r["expr"]))
        assert inputs, r["alert"]
        for name in inputs:
            assert stack.prom.query(name), (r["alert"], name)
    assert stack.prom.api("rules")["groups"], "Prometheus did not load the rules"


def _blocks(results, order_label):
    return {(r["metric"]["node"], r["metric"]["zone"], r["metric"][order_label]):
            float(r["value"][1]) for r in results}


def _close(a: float, b: float) -> bool:
    # Drift: the two exporters are scraped up to a second apart, and the
    # per-CPU lists move low orders by hundreds of blocks in that time.
    return abs(a - b) <= max(64, 0.1 * max(a, b))


@pytest.mark.parametrize("expr", ['mfd_zone_free_blocks',
                                  'node_buddyinfo_blocks{job="mfd"}'])
def test_mfd_blocks_equal_node_exporters_within_drift(stack, expr):
    """mfd_zone_free_blocks, and the recording rule that relabels it for
    node_exporter users, against node_exporter's own buddyinfo collector."""
    order_label = "order" if expr.startswith("mfd_") else "size"
    fleet.wait_for(lambda: stack.prom.query(expr), expr, limit=30)
    worst = None
    for _ in range(5):   # a quiet second: compaction and workloads have ended
        t = time.time()
        mine = _blocks(stack.prom.query(expr, time=t), order_label)
        theirs = _blocks(stack.prom.query('node_buddyinfo_blocks{job="node"}', time=t), "size")
        assert set(mine) == set(theirs)
        bad = {k: (mine[k], theirs[k]) for k in mine if not _close(mine[k], theirs[k])}
        if not bad:
            return
        worst = bad
        time.sleep(1.5)
    pytest.fail(f"{expr} and node_buddyinfo_blocks differ beyond drift: {worst}")
