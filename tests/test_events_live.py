"""Event groups on the running kernel: real programs, real events, checked
against an independent observer (the ftrace ring buffer of a private tracefs
instance) reading the same tracepoints over the same window.

Windows: the ftrace instance starts before the collector's first poll and
stops after its last, so ftrace sees everything mfd sees, plus whatever the
rest of the machine did in the gaps.  Events of our own workload processes
all happen between the two polls: for them the counts must be equal.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections import Counter

import pytest

from conftest import mfd_argv, needs_root, remove_cgroup, run_mfd
import workloads
from workloads import Child

pytestmark = needs_root

TRACEFS = "/sys/kernel/tracing"
_LINE = re.compile(r"^\s*(?P<comm>.*)-(?P<pid>\d+)\s+\[\d+\]\s+\S+\s+(?P<ts>[\d.]+): "
                   r"(?P<event>\w+): (?P<args>.*)$")


class Ftrace:
    """A private tracefs instance recording some events into its own ring buffer."""

    def __init__(self, *events: str, name: str = "mfdtest", buffer_kb: int = 16384,
                 clock: str = "local"):
        """``clock``: the instance's trace_clock; "mono" stamps records with
        CLOCK_MONOTONIC, comparable with time.monotonic()."""
        self.events = events                     # "kmem/mm_page_alloc_extfrag", ...
        self.clock = clock
        # our pid in the name: test runs at the same time do not meet
        self.dir = os.path.join(TRACEFS, "instances", f"{name}-{os.getpid()}")
        self.buffer_kb = buffer_kb

    def _write(self, rel: str, text: str) -> None:
        with open(os.path.join(self.dir, rel), "w") as f:
            f.write(text)

    def __enter__(self):
        from mfd.kernel.tracefs import ensure_tracefs
        assert ensure_tracefs()
        os.mkdir(self.dir)
        self._write("buffer_size_kb", str(self.buffer_kb))
        self._write("trace_clock", self.clock)
        for ev in self.events:
            self._write(f"events/{ev}/enable", "1")
        self._write("tracing_on", "1")
        return self

    def stop(self) -> None:
        self._write("tracing_on", "0")

    def records(self):
        """[(comm, pid, event, {field: value})] of everything recorded."""
        return [r[1:] for r in self.timed_records()]

    def timed_records(self):
        """[(timestamp, comm, pid, event, {field: value})] of everything recorded,
        the timestamp in seconds of the instance's clock."""
        with open(os.path.join(self.dir, "trace")) as f:
            text = f.read()
        assert "LOST" not in text, "the ftrace buffer overflowed: raise buffer_kb"
        out = []
        for line in text.splitlines():
            m = _LINE.match(line)
            if m:
                fields = dict(kv.split("=", 1) for kv in m["args"].replace(",", "").split()
                              if "=" in kv)
                out.append((float(m["ts"]), m["comm"], int(m["pid"]), m["event"], fields))
        return out

    def __exit__(self, *exc):
        self.stop()
        for ev in self.events:
            self._write(f"events/{ev}/enable", "0")
        os.rmdir(self.dir)
        return False


def _observe(c, group, action, *events, **ftrace_kw):
    """One collector interval around ``action()``, with ftrace recording
    ``events`` over a window that contains it: (mfd's group dict, records)."""
    with Ftrace(*events, **ftrace_kw) as ft:
        c.poll()
        action()
        ev = c.poll().to_json()[group]
        ft.stop()
        return ev, ft.records()


def _collector(groups, **kw):
    from mfd.sources.events import EventSource
    notes = []
    c = EventSource(groups, note=notes.append, **kw)
    c.notes = notes
    if kw.get("load", True):
        # the default path: compiled in the loader helper, read here through libbpf
        assert c._program.loader == "helper", notes
    return c


@pytest.fixture
def extfrag_collector():
    c = _collector(["extfrag"])
    yield c
    c.close()


def _steal_some(sizes=(None, 800, 1600)):
    """Run the page-table workload, bigger each time (None: sized from the
    free unmovable pages; then GiB of sparse mapping, 2 MiB of page tables
    each), until it makes extfrag events.  Returns the workload pids."""
    pids = []
    for gib in sizes:
        with Ftrace("kmem/mm_page_alloc_extfrag", name="mfdprobe") as probe:
            child = Child("page-tables", *(["--gib", str(gib)] if gib else []))
            child.run()
            pids.append(child.pid)
            probe.stop()
            if any(pid == child.pid for _c, pid, _e, _f in probe.records()):
                return pids
    pytest.fail(f"the page-table workload made no extfrag event (sizes {sizes})")


def test_extfrag_counts_match_ftrace(extfrag_collector):
    c = extfrag_collector
    pids = []
    ev, recs = _observe(c, "extfrag", lambda: pids.extend(_steal_some()),
                        "kmem/mm_page_alloc_extfrag")

    mt = c.groups[0].migratetypes
    seen = Counter()
    chown = Counter()
    comms = {}
    for comm, pid, _e, f in recs:
        key = (pid, int(f["alloc_order"]), int(f["fallback_order"]),
               mt[int(f["alloc_migratetype"])], mt[int(f["fallback_migratetype"])])
        seen[key] += 1
        chown[key] += int(f["change_ownership"])
        comms[pid] = comm
    mine = {(r["pid"], r["alloc_order"], r["fallback_order"], r["alloc_migratetype"],
             r["fallback_migratetype"]): r for r in ev["by_process"]}
    ours = {k for k in seen if k[0] in pids}
    assert ours, "no extfrag event from the workload"
    for key in ours:  # the workload's events: equal, key by key
        assert mine[key]["events"] == seen[key], key
        assert mine[key]["change_ownership"] == chown[key], key
        assert mine[key]["comm"] == comms[key[0]]
    # everything: mfd's window lies inside ftrace's
    assert sum(seen.values()) - 5 <= ev["events"] <= sum(seen.values())
    assert ev["events"] == sum(r["events"] for r in ev["by_process"])
    assert ev["change_ownership"] == sum(r["change_ownership"] for r in ev["by_process"])
    # page tables are unmovable; they took movable memory (names from BTF)
    assert any(k[3] == "Unmovable" for k in ours)
    assert ev["dropped"] == 0


def test_extfrag_rows_carry_rate_and_cumulative(extfrag_collector):
    c = extfrag_collector
    c.poll()
    _steal_some()
    first = c.poll().to_json()
    assert first["interval"] > 0
    ev = first["extfrag"]
    assert ev["rate"] == pytest.approx(ev["events"] / first["interval"], rel=0.01)
    for r in ev["by_process"]:
        assert r["cumulative"] >= r["events"] > 0
        assert set(r) >= {"pid", "comm", "alloc_order", "fallback_order", "alloc_migratetype",
                          "fallback_migratetype", "events", "change_ownership", "cumulative",
                          "rate"}
    quiet = c.poll().to_json()["extfrag"]
    assert quiet["cumulative"] >= ev["cumulative"]


def test_alloc_tracepoint_path_counts_match_ftrace():
    from mfd.kernel import facts as kernel
    if kernel.kprobes_available():
        pytest.skip("kernel has kprobes: the tracepoint path is not the default here")
    c = _collector(["alloc"])
    try:
        assert c.alloc_probe == "tracepoint"
        assert len([n for n in c.notes if "allocator probes" in n]) == 1
        assert "CONFIG_KPROBES" in c.notes[0]
        def work():
            Child("populate", "--mib", "64", "--thp").run()     # 32 order-9 allocations
            Child("populate", "--mib", "64").run()              # 16384 order-0
        ev, recs = _observe(c, "alloc", work, "kmem/mm_page_alloc", buffer_kb=65536)
    finally:
        c.close()
    orders = Counter(int(f["order"]) for _c, _p, e, f in recs if e == "mm_page_alloc")
    mine = {r["order"]: r for r in ev["by_order"]}
    assert ev["probe"] == "tracepoint" and "latency_ns" not in mine[0]
    assert mine[9]["allocs"] >= 32
    for order, n in orders.items():
        got = mine.get(order, {"allocs": 0, "failures": 0})
        # same window but for the gaps at both ends, where the machine allocates too
        assert n * 0.95 - 50 <= got["allocs"] + got["failures"] <= n, order
    assert ev["allocs"] == sum(r["allocs"] for r in ev["by_order"])


def test_alloc_kprobe_refused_without_kprobes():
    from mfd.errors import KernelUnsupported
    from mfd.kernel import facts as kernel
    if kernel.kprobes_available():
        pytest.skip("this kernel has kprobes (the kernel-matrix VM tests that path)")
    with pytest.raises(KernelUnsupported, match="CONFIG_KPROBES"):
        _collector(["alloc"], alloc_probe="kprobe", load=False)


@pytest.mark.parametrize("loader", ["helper", "inprocess"])
@pytest.mark.parametrize("batch", [True, False])
def test_hash_drain_reads_and_empties_a_map(batch, loader):
    """One BPF_MAP_LOOKUP_AND_DELETE_BATCH, or (older kernels) a walk and
    deletes, on a map compiled in the helper or here."""
    import ctypes
    from mfd import ebpf
    from mfd.sources.events.maps import HashDrain, scalar
    prog = ebpf.Program("a test map", "BPF_HASH(t, u32, u64, 64);", [], lambda msg: None,
                        loader=loader)
    try:
        assert prog.loader == loader
        t = prog["t"]
        for k in range(10):
            t[ctypes.c_uint(k)] = ctypes.c_ulonglong(k * k)
        drain = HashDrain(t)
        drain.batch = batch
        assert sorted((scalar(k), scalar(v)) for k, v in drain()) == [(k, k * k) for k in range(10)]
        assert len(list(t.keys())) == 0 and drain() == []
    finally:
        prog.close()


@pytest.mark.parametrize("probe", ["kprobe", "tracepoint"])
def test_alloc_programs_pass_this_kernels_verifier(probe):
    """Both variants load into the kernel's verifier (the kprobe one without
    attaching: that needs CONFIG_KPROBES, see tests/vm/ for the real thing)."""
    from mfd.ebpf import import_bcc, kernel_source
    c = _collector(["alloc"], alloc_probe=probe, alloc_function="__alloc_pages", load=False)
    assert c.alloc_probe == probe
    BPF, tree = import_bcc(lambda msg: None)
    with kernel_source(tree):
        b = BPF(text=c.source_text().encode(), cflags=c.cflags)
    try:
        if probe == "kprobe":
            for fn in (b"mfd_alloc_entry", b"mfd_alloc_return"):
                assert b.load_func(fn, BPF.KPROBE).fd >= 0
        else:
            assert b.num_open_tracepoints() == 1
    finally:
        b.cleanup()


def test_compact_memory_runs_per_zone_match_ftrace():
    c = _collector(["compaction"])
    try:
        ev, recs = _observe(c, "compaction", workloads.compact_memory,
                            "compaction/mm_compaction_begin", "compaction/mm_compaction_end")
    finally:
        c.close()
    with open("/proc/zoneinfo") as f:
        populated = len(re.findall(r"present\s+[1-9]", f.read()))
    ends = [f for _c, _p, e, f in recs if e == "mm_compaction_end"]
    begins = [f for _c, _p, e, f in recs if e == "mm_compaction_begin"]
    assert ev["end"] <= len(ends) and ev["begin"] <= len(begins)
    assert ev["end"] >= populated          # compact_memory: every populated zone once
    zones = {r["zone"] for r in ev["by_zone"]}
    with open("/proc/buddyinfo") as f:
        assert zones >= {line.split()[3] for line in f}
    statuses = Counter()
    for f in ends:
        statuses[f["status"]] += 1
    mine = Counter()
    for r in ev["by_zone"]:
        assert r["runs"] == sum(r["status"].values())
        assert r["duration_ns"] >= r["max_ns"] > 0
        mine.update(r["status"])
    assert set(mine) <= set(statuses)      # names from BTF, spelled as ftrace prints them
    assert "compact_migrate_scanned" in ev["vmstat"]


def test_direct_compaction_from_thp_faults_under_fragmentation():
    """Fragment memory, take the free huge blocks away, fault huge pages:
    the faulting process compacts directly (THP defrag=madvise)."""
    with open("/sys/kernel/mm/transparent_hugepage/defrag") as f:
        if "[never]" in f.read():
            pytest.skip("THP defrag is 'never': faults do not compact")
    c = _collector(["compaction"])
    try:
        with Child("fragment", "--mib", "6144", "--hold") as frag:
            frag.ready()
            thp = []

            def fault_huge_pages():
                thp.append(Child("populate", "--mib", "512", "--thp"))
                thp[0].run()
            with workloads.HugeBlocks():
                ev, recs = _observe(c, "compaction", fault_huge_pages,
                                    "compaction/mm_compaction_try_to_compact_pages")
    finally:
        c.close()
    pid = thp[0].pid
    theirs = Counter(int(f["order"]) for _c, p, e, f in recs if p == pid)
    if not theirs:
        pytest.skip("the huge-page faults found free huge blocks (no direct compaction)")
    rows = {r["order"]: r for r in ev["direct"] if r["pid"] == pid}
    assert {o: r["count"] for o, r in rows.items()} == dict(theirs)
    assert rows[9]["stall_ns"] > 0 and rows[9]["hist_us"]
    assert ev["direct_stalls"] >= theirs[9]
    assert ev["vmstat"]["compact_stall"] >= 1
    # the same runs, per zone compacted (one map update each, in one program)
    runs = sum(b["count"] for r in ev["direct"] for b in r["hist_us"])
    assert sum(z["direct_runs"] for z in ev["by_zone"]) == runs > 0
    assert sum(z["direct_ns"] for z in ev["by_zone"]) == sum(r["stall_ns"] for r in ev["direct"])


def test_fragment_workload_shows_in_the_snapshot(bpf_collector):
    """Every other page of a region given back: single free pages that cannot
    merge.  Measured across the give-back alone (the faults before it take
    free pages too).  The per-CPU lists keep many of the pages (since 6.x they
    can grow to a large share of the zone), so those are counted as well."""
    with Child("fragment", "--mib", "2048", "--pause", "--hold") as frag:
        frag.ready(word="paused")
        before, pcp_before = bpf_collector.snapshot(), workloads.pcp_pages()
        frag.proceed()
        info = frag.ready()
        during, pcp_during = bpf_collector.snapshot(), workloads.pcp_pages()
    order0 = lambda s: sum(z.nr_free[0] for z in s.zones())  # noqa: E731
    freed = order0(during) - order0(before) + pcp_during - pcp_before
    assert freed >= info["released_pages"] * 0.8


# -- the command line ---------------------------------------------------------


def test_cli_s_shows_the_workload_process():
    p = subprocess.Popen(mfd_argv("-s", "-d", "1"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        out = [p.stdout.readline()]  # printed after the first interval: attached by now
        assert out[0], p.stderr.read()
        pids = {str(pid) for pid in _steal_some()}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out.append(p.stdout.readline())
            if out[-1].split()[:1] and out[-1].split()[0] in pids:
                break
    finally:
        p.send_signal(signal.SIGINT)
        rest, err = p.communicate(timeout=20)
    text = "".join(out) + rest
    assert p.returncode == 0, err
    assert "Traceback" not in err
    head = [line for line in text.splitlines() if line.lstrip().startswith("PID")]
    assert head and head[0].split() == ["PID", "COMM", "ALLOC", "FALLBACK", "EVENTS",
                                        "STEALS", "TOTAL", "RATE/s"]
    assert any(line.split()[:1] and line.split()[0] in pids for line in text.splitlines())
    assert "NR_FREE" not in text  # -s: no zone table


def test_cli_json_carries_events_with_the_contract_keys():
    r = run_mfd("--events", "extfrag,compaction", "--json", "--count", "1", "-d", "0.5")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    ev = obj["events"]
    assert obj["nodes"]  # combined with the snapshot
    assert {"events", "change_ownership", "by_process"} <= set(ev["extfrag"])
    assert {"begin", "end", "by_zone", "direct", "kcompactd_wake", "vmstat"} <= set(ev["compaction"])
    assert "compact_stall" in ev["compaction"]["vmstat"]
    assert "alloc" not in ev  # only what was asked for


def test_cli_events_with_zone_table_and_alloc_path_said_once():
    r = run_mfd("--events", "alloc", "--count", "2", "-d", "0.5")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("NR_FREE") == 2 and r.stdout.count("alloc (") == 2
    assert r.stderr.count("allocator probes:") == 1


def test_cli_zone_filter_that_matches_nothing_says_so():
    with open("/proc/zoneinfo") as f:
        if "zone  Movable" not in f.read():
            pytest.skip("no Movable zone here")
    r = run_mfd("-c", "Movable", "--events", "compaction", "--count", "1", "-d", "0.5")
    assert r.returncode == 0, r.stderr
    assert "no compaction run matches zone Movable" in r.stdout


def test_cli_unknown_zone_with_events_is_a_usage_error_before_compiling():
    r = run_mfd("-c", "Bogus", "--events", "compaction", "--count", "1")
    assert r.returncode == 2 and "no zone 'Bogus'" in r.stderr
    # The zone walker has compiled (it names the zones); the event programs have
    # not: nothing about them, only the fallbacks the walker said on the way.
    said = [line for line in r.stderr.splitlines()
            if not line.startswith(("mfd: no kernel headers", "mfd: no node_data"))]
    assert said == [line for line in r.stderr.splitlines() if "no zone 'Bogus'" in line], said
    assert "event" not in r.stderr and "tracefs" not in r.stderr


def test_cli_ctrl_c_while_events_stream():
    p = subprocess.Popen(mfd_argv("-s", "--events", "all", "-d", "0.3"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    first = p.stdout.readline()
    assert first, p.stderr.read()
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_cli_ebpf_prints_the_event_programs():
    r = run_mfd("--ebpf", "-s", "--events", "compaction")
    assert r.returncode == 0, r.stderr
    assert "TRACEPOINT_PROBE(kmem, mm_page_alloc_extfrag)" in r.stdout
    assert "TRACEPOINT_PROBE(compaction, mm_compaction_end)" in r.stdout
    assert "-DMFD_KCOMPACTD_ZONEIDX=" in r.stdout


def test_cli_json_events_filter_always_there_in_the_kernels_spelling():
    r = run_mfd("-s", "--json", "--count", "1", "-d", "0.3")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["events"]["filter"] == {"node": None, "zone": None}
    assert obj["source"] == "bpf"           # -s with --json: the same source as without
    r = run_mfd("--events", "compaction", "--json", "--count", "1", "-d", "0.3", "-c", "normal")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["events"]["filter"] == {"node": None, "zone": "Normal"}
    assert [z["zone"] for n in obj["nodes"] for z in n["zones"]] == ["Normal"]


def test_extfrag_rows_carry_the_cgroup_of_the_task():
    """Two child cgroups on the cgroup2 hierarchy; the page-table workload
    runs in one: its steals are attributed to that cgroup's path, and no row
    names the other."""
    from mfd.kernel.cgroups import cgroup2_mount
    root = cgroup2_mount()
    if root is None:
        pytest.skip("no cgroup2 hierarchy mounted")
    names = [f"mfd-test-{os.getpid()}-{x}" for x in ("a", "b")]
    for n in names:
        os.mkdir(os.path.join(root, n))
    c = _collector(["extfrag"])
    try:
        def join():
            with open(os.path.join(root, names[0], "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        c.poll()
        pids = []
        for gib in (None, 800, 1600):
            child = Child("page-tables", *(["--gib", str(gib)] if gib else []), preexec=join)
            child.run()
            pids.append(child.pid)
            rows = [r for r in c.poll().get("extfrag").by_process if r.pid in pids]
            if rows:
                break
        else:
            pytest.skip("the page-table workload made no extfrag event")
        assert {r.cgroup for r in rows} == {"/" + names[0]}, rows
        # -s --by cgroup: the same rows summed per cgroup, the path escaped as data
        from mfd.model.events import Events, ExtfragResult
        from mfd.sinks.events_text import events_text
        text = events_text(Events(1.0, results=(ExtfragResult(by_process=tuple(rows)),)),
                           by="cgroup")
        assert text.splitlines()[1].split()[0] == "CGROUP"
        assert any(line.split()[:2] == ["/" + names[0], str(sum(r.events for r in rows))]
                   for line in text.splitlines()), text
    finally:
        c.close()
        for n in names:
            remove_cgroup(os.path.join(root, n))
