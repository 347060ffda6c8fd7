"""mfd map on this kernel: its free pageblocks are the kernel's own free
blocks of pageblock order, and a workload's page tables pin blocks that the
map attributes to page tables and to the workload's memory cgroup."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import mfd_argv, needs_root, remove_cgroup, run_mfd

pytestmark = needs_root


def buddy_blocks(order: int = 9):
    out = {}
    with open("/proc/buddyinfo") as f:
        for line in f:
            head, _, counts = line.partition("zone")
            name, *nr = counts.split()
            node = int(head.split()[1].rstrip(","))
            out[(node, name)] = sum(int(n) << (o - order) for o, n in enumerate(nr) if o >= order)
    return out


def take(*args):
    r = run_mfd("map", "--json", *args, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_free_blocks_are_buddyinfos_free_blocks_of_pageblock_order():
    before = buddy_blocks()
    doc = take()
    after = buddy_blocks()
    assert doc["pageblock_order"] == 9 and doc["pages_per_block"] == 512
    assert doc["zones"]
    for z in doc["zones"]:
        key = (z["node"], z["zone"])
        lo, hi = sorted((before[key], after[key]))
        drift = hi - lo + 2                        # the allocator runs while the map is read
        free = z["counts"]["free"]
        assert lo - drift <= free <= hi + drift, (key, free, before[key], after[key])
        assert sum(n for _c, n in z["runs"]) == z["blocks"]
        assert z["migratetype_blocks"] and z["pinned_by_cgroup"] is not None
    assert doc["read_seconds"] > 0 and doc["pagetypeinfo_seconds"] is not None


def test_not_root_is_one_line_that_says_root():
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        *mfd_argv("map")], capture_output=True, text=True, timeout=60,
                       cwd="/", env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 1 and r.stdout == "", r
    assert r.stderr.count("\n") == 1 and "needs root" in r.stderr, r.stderr
    assert "run with sudo" in r.stderr


def test_the_picture_fits_80x24_without_a_terminal():
    r = run_mfd("map", env={**os.environ, "COLUMNS": "80", "LINES": "24"}, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.rstrip("\n").split("\n")
    assert len(lines) <= 23 and max(map(len, lines)) <= 80, r.stdout
    assert "\x1b" not in r.stdout                  # not a terminal: no colour
    assert re.search(r"^node 0 Normal +\d+\.\d\dG ", r.stdout, re.M), r.stdout


def test_filter_and_usage_errors():
    doc = take("-c", "normal")
    assert {z["zone"] for z in doc["zones"]} == {"Normal"}
    r = run_mfd("map", "-c", "nosuch")
    assert r.returncode == 2 and "no zone" in r.stderr
    r = run_mfd("map", "--color", "sometimes")
    assert r.returncode == 2


def _memcg(name: str):
    from mfd.kernel.cgroupmem import memory_hierarchy
    where = memory_hierarchy()
    if where is None:
        pytest.skip("no memory-cgroup hierarchy")
    path = os.path.join(where[0], name)
    os.mkdir(path)
    return path


def test_page_tables_of_a_workload_pin_blocks_named_by_kind_and_cgroup():
    """320 GiB of sparse mapping, one byte read per 2 MiB: 160 Ki page-table
    pages (640 MiB, unmovable, charged to the workload's memory cgroup)."""
    from workloads import Child
    name = f"mfd-map-{os.getpid()}"
    path = _memcg(name)

    def join():
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    try:
        before = take("-c", "Normal")["zones"][0]
        with Child("page-tables", "--gib", "320", "--hold", preexec=join) as child:
            child.ready()
            during = take("-c", "Normal")["zones"][0]
    finally:
        remove_cgroup(path)
    grown = during["counts"]["pinned"] - before["counts"]["pinned"]
    assert grown > 0, (before["counts"], during["counts"])
    kinds = during["pinned_by_kind"]
    assert max(kinds, key=lambda k: kinds[k]["pages"]) == "page_table", kinds
    assert kinds["page_table"]["pages"] >= 160 * 1024 * 0.9, kinds
    top = during["pinned_by_cgroup"][0]
    assert top["cgroup"] == f"/{name}", during["pinned_by_cgroup"]
    assert top["pages"] >= 160 * 1024 * 0.9


def ftrace_blocks(recs):
    """(polluted, converted) pageblock numbers of ftrace's extfrag records, by
    the rules of bpf/pageblock.h, worked out here from the raw fields."""
    polluted, converted = set(), set()
    for _comm, _pid, _ev, f in recs:
        pfn, fo = int(f["pfn"], 0), int(f["fallback_order"])
        if int(f["change_ownership"]) == 0 and fo < 9:
            polluted.add(pfn >> 9)
        elif int(f["change_ownership"]) == 1:
            first = (pfn & ~((1 << max(fo, 9)) - 1)) >> 9
            converted.update(range(first, first + (1 << max(0, fo - 9))))
    return polluted, converted


def test_the_monitors_extfrag_group_counts_the_pageblocks_ftrace_names():
    """mfd --events extfrag's per-zone pageblocks over one interval: at least
    the workload's own (ftrace, by pid), at most every event ftrace saw over
    a window around the interval."""
    from mfd.sources.events import EventSource
    from test_events_live import Ftrace
    from workloads import Child
    c = EventSource(["extfrag"], note=lambda m: None)
    try:
        with Ftrace("kmem/mm_page_alloc_extfrag", name="mfd-pageblocks") as ft:
            c.poll()
            child = Child("page-tables", "--gib", "800")
            child.run()
            ev = c.poll().get("extfrag")
            ft.stop()
            records = ft.records()
    finally:
        c.close()
    mine = [r for r in records if r[1] == child.pid]
    if not mine:
        pytest.skip("the page-table workload made no extfrag event")
    want_p, want_c = ftrace_blocks(mine)
    all_p, all_c = ftrace_blocks(records)
    got_p = sum(z.polluted for z in ev.pageblocks)
    got_c = sum(z.converted for z in ev.pageblocks)
    assert len(want_c) <= got_c <= len(all_c) and len(want_p) <= got_p <= len(all_p), \
        (got_p, got_c, len(want_p), len(want_c), len(all_p), len(all_c))
    assert {z.zone for z in ev.pageblocks} <= {"DMA", "DMA32", "Normal", "Movable"}
    assert ev.pageblocks_dropped == 0


def test_events_mark_the_pageblocks_the_kernels_tracepoint_names():
    """mfd map --events: the pageblocks of the workload's extfrag events, as
    an ftrace instance records them (pfn >> 9, fallbacks of order >= 9
    covering more), are among the map's; the map's are among all the events
    ftrace saw over a window that contains mfd's."""
    from test_events_live import Ftrace
    from workloads import Child
    with Ftrace("kmem/mm_page_alloc_extfrag", name="mfd-map") as ft:
        p = subprocess.Popen(mfd_argv("map", "--events", "8", "--json", "-q"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        import time
        time.sleep(3)                               # loaded and counting
        child = Child("page-tables", "--gib", "800")
        child.run()
        out, err = p.communicate(timeout=120)
        ft.stop()
        records = ft.records()
    assert p.returncode == 0, err
    doc = json.loads(out)

    blocks = ftrace_blocks
    mine = [r for r in records if r[1] == child.pid]
    if not mine:
        pytest.skip("the page-table workload made no extfrag event")
    want_p, want_c = blocks(mine)
    all_p, all_c = blocks(records)
    got_p = {b for z in doc["zones"] for b in z["polluted"]}
    got_c = {b for z in doc["zones"] for b in z["converted"]}
    assert want_c <= got_c <= all_c and want_p <= got_p <= all_p
    assert doc["events_seconds"] >= 8
    assert sum(z["converted_blocks"] + z["polluted_blocks"] for z in doc["zones"]) == \
        len(got_p) + len(got_c)


def test_edges_full_stdout_closed_pipe_and_ctrl_c_while_watching(tmp_path):
    import signal
    import time
    with open("/dev/full", "w") as full:
        r = subprocess.run(mfd_argv("map"), stdout=full, stderr=subprocess.PIPE, text=True,
                           timeout=120)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    p = subprocess.Popen(mfd_argv("map"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(10)
    p.stdout.close()                                 # mfd map | head -c 10
    assert p.wait(timeout=120) == 0 and p.stderr.read() == b""
    # Ctrl-C while watching: stop watching, draw what was seen
    p = subprocess.Popen(mfd_argv("map", "--events", "60", "--json"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    doc = json.loads(out)
    assert 0 < doc["events_seconds"] < 60 and all(z["polluted"] is not None for z in doc["zones"])
    assert any("watched" in n for n in doc["notes"])


@pytest.mark.parametrize("ask", ["1@2M", "1@1G"])
def test_can_with_the_map_never_raises_the_bound(ask):
    """mfd can --map takes the tighter of two upper bounds: the pagetypeinfo
    one and the pageblock map's, marked "pageblock map" where it is that."""
    r = run_mfd("can", "--map", "--json", ask, timeout=120)
    assert r.returncode in (0, 1), r.stderr
    plain = json.loads(run_mfd("can", "--json", ask).stdout)["asks"][0]["zones"]
    zones = json.loads(r.stdout)["asks"][0]["zones"]
    assert {z["after_compaction_basis"] for z in zones} <= {"pageblock map", "pagetypeinfo"}
    before = {(z["node"], z["zone"]): z for z in plain}
    for z in zones:
        other = before[(z["node"], z["zone"])]
        # never below what is free now, never above the other bound (beyond
        # the drift between two reads)
        assert z["now"] <= z["after_compaction"] <= other["after_compaction"] + 64, (z, other)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (scripts/setup.sh --test)")
@pytest.mark.parametrize("size", [(80, 24), (160, 50)])
def test_in_a_real_terminal_the_map_is_coloured_and_fits(size):
    """On a tmux terminal: background colours, no line wider than the
    terminal, the whole map above the prompt; a larger terminal, fewer
    pageblocks per cell; NO_COLOR gives the characters."""
    from test_live import Tmux
    width, height = size

    def shown(env=""):
        t = Tmux(f"{env} {' '.join(mfd_argv('map', '-q'))}", width, height)
        try:
            text = t.wait_for(lambda s: "EXIT=" in s, "mfd map to end", timeout=120,
                              scrollback=True)
            styled = t.tmux("capture-pane", "-e", "-p", "-J", "-S", "-200", "-t", "t")
        finally:
            t.close()
        return text.split("EXIT=")[0], styled.split("EXIT=")[0]
    plain, styled = shown()
    lines = plain.rstrip("\n").split("\n")
    assert len(lines) <= height - 1 and max(map(len, lines)) <= width, plain
    assert re.search(r"\x1b\[(4[1-6]|10[0-7])m", styled), styled[:400]
    per = int(re.search(r"1 cell = (\d+)", plain).group(1))
    assert per >= 1 and "node 0 Normal" in plain
    mono, mono_styled = shown("NO_COLOR=1")
    assert not re.search(r"\x1b\[(4[1-6]|10[0-7])m", mono_styled) and "# pinned" in mono


def test_the_bound_holds_after_the_kernel_compacts():
    """An upper bound must not fall below what compaction achieves: after
    writing /proc/sys/vm/compact_memory (every zone compacted), the free
    blocks of pageblock order per zone are at most what mfd can --map said
    just before (with the drift of the seconds in between)."""
    from workloads import compact_memory, fragment
    held = fragment(2048)               # free memory in single pages: work for compaction
    try:
        r = run_mfd("can", "--map", "--json", "1@2M", timeout=120)
        zones = {(z["node"], z["zone"]): z for z in json.loads(r.stdout)["asks"][0]["zones"]}
        compact_memory()
        after = buddy_blocks()
    finally:
        held["maps"].clear()
    for key, z in zones.items():
        # 64 blocks of drift: other processes free memory in the seconds between
        assert after[key] <= z["after_compaction"] + 64, (key, after[key], z)
