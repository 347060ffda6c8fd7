"""mfd beside other tracers: with mfd running, the real ``perf`` and ftrace
count the same events as without it.

A tracepoint runs its BPF programs before its perf consumers, and when the
programs return 0 the kernel drops the event for every perf_event on that
tracepoint, on the whole machine (perf_trace_run_bpf_submit() in
kernel/events/core.c; perf_syscall_enter() in kernel/trace/trace_syscalls.c
for syscalls:*).  So these tests run mfd as a real process and count, with
``perf stat``, workloads whose events are known:

* getppid: a process that calls getppid() exactly N times, counted in that
  process only (``perf stat -- CMD``): N with mfd as without.  mfd's own
  calls (its zone-walk trigger) are counted too (``perf stat -p``).
* extfrag, compaction, allocations: the workloads of tests/workloads.py,
  counted both in the workload (``perf stat -- CMD``, inner) and on the whole
  machine (``perf stat -a``, outer, around the inner one), next to an
  independent observer: a private tracefs instance (ftrace) recording the
  same tracepoints over a window that contains both.  The workload prints its
  pid, so ftrace's records of that pid are its events: perf's in-process count
  must equal them, and the machine-wide count must lie between them and
  everything ftrace saw.  With mfd running, mfd's own counts must agree too.

perf is found on PATH, or as the versioned binary that Debian's and Ubuntu's
version-checking wrapper would run (scripts/setup.sh --test installs it);
without a working perf the tests skip.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

from conftest import mfd_argv, needs_root

pytestmark = needs_root

TESTS = os.path.dirname(os.path.abspath(__file__))
BPF_DIR = os.path.join(os.path.dirname(TESTS), "bpf")
TRACEFS = "/sys/kernel/tracing"
GETPPID = "syscalls:sys_enter_getppid"
EXTFRAG = "kmem:mm_page_alloc_extfrag"
ALLOC = "kmem:mm_page_alloc"
COMPACTION = ("compaction:mm_compaction_begin", "compaction:mm_compaction_end",
              "compaction:mm_compaction_try_to_compact_pages",
              "compaction:mm_compaction_kcompactd_wake")
N_GETPPID = 50000


# -- perf ---------------------------------------------------------------------


def _perf_candidates() -> List[str]:
    """perf on PATH first; then the real binaries behind the distro wrappers:
    Debian's /usr/bin/perf (linux-base) runs perf_<major.minor> of the running
    kernel and refuses when that one is missing; Ubuntu's runs
    /usr/lib/linux-tools/<release>/perf.  Any of those binaries counts
    tracepoints on any kernel, so try them all, newest first."""
    found = [os.environ["MFD_TEST_PERF"]] if os.environ.get("MFD_TEST_PERF") else []
    if shutil.which("perf"):
        found.append(shutil.which("perf"))

    def version(path: str) -> Tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path))

    for pattern in ("/usr/bin/perf_*", "/usr/lib/linux-tools/*/perf",
                    "/usr/lib/linux-tools-*/perf", "/usr/libexec/perf*/perf"):
        found += sorted(glob.glob(pattern), key=version, reverse=True)
    return list(dict.fromkeys(p for p in found if os.access(p, os.X_OK)))


def find_perf() -> Optional[str]:
    """The first candidate that runs (``perf --version``) on this kernel."""
    for path in _perf_candidates():
        try:
            r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0 and r.stdout.startswith("perf version"):
            return path
    return None


def perf_stat(perf: str, events: Sequence[str], argv: Sequence[str],
              system_wide: bool = False, pid: Optional[int] = None,
              timeout: float = 600) -> Tuple[Dict[str, int], str]:
    """``perf stat -x, -e EVENTS [-a | -p PID] -- ARGV``: ({event: count}, ARGV's stdout)."""
    with tempfile.NamedTemporaryFile("r", prefix="mfd-perf-", suffix=".csv") as out:
        cmd = [perf, "stat", "-x", ",", "-o", out.name, "-e", ",".join(events)]
        if system_wide:
            cmd.append("-a")
        if pid is not None:
            cmd += ["-p", str(pid)]
        r = subprocess.run(cmd + ["--", *argv], capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"{' '.join(cmd)}: {r.stderr.strip()}"
        return parse_perf_csv(out.read()), r.stdout


def parse_perf_csv(text: str) -> Dict[str, int]:
    """perf stat -x, lines: value,unit,event,run time,percentage,..."""
    counts = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(",")
        value, event = fields[0], fields[2]
        assert value.isdigit(), f"perf could not count {event}: {value}"
        counts[event] = int(value)
    return counts


def nested_perf_stat(perf: str, events: Sequence[str], argv: Sequence[str]):
    """``perf stat -a -- perf stat -- ARGV``: the machine's counts over the
    inner perf's lifetime and ARGV's own counts, in one run.  Returns
    (machine, process, ARGV's stdout)."""
    with tempfile.NamedTemporaryFile("r", prefix="mfd-perf-inner-", suffix=".csv") as inner:
        inner_argv = [perf, "stat", "-x", ",", "-o", inner.name, "-e", ",".join(events),
                      "--", *argv]
        machine, stdout = perf_stat(perf, events, inner_argv, system_wide=True)
        return machine, parse_perf_csv(inner.read()), stdout


def py(code: str) -> List[str]:
    """A Python workload that prints its pid first (perf runs it directly,
    so that pid is the one ftrace records its events under)."""
    head = "import os, sys\nprint(os.getpid(), flush=True)\nsys.path.insert(0, %r)\n" % TESTS
    return [sys.executable, "-c", head + code]


def getppid_loop(n: int = N_GETPPID) -> List[str]:
    return py("for _ in range(%d):\n    os.getppid()\n" % n)


@pytest.fixture(scope="module")
def perf():
    path = find_perf()
    if path is None:
        pytest.skip("no working perf (Debian: apt install linux-perf; scripts/setup.sh --test)")
    # Hardware counters may be missing (a VM guest: `perf stat -e instructions`
    # says <not supported>); tracepoint counting is all these tests need.
    try:
        counts, _ = perf_stat(path, [GETPPID], getppid_loop(1000))
    except AssertionError as e:
        pytest.skip(f"{path} cannot count tracepoints here: {e}")
    if counts.get(GETPPID) != 1000:
        pytest.skip(f"{path} counted {counts} getppid calls of 1000 without mfd")
    return path


# -- ftrace -------------------------------------------------------------------


# "comm-pid [cpu] flags time: event: fields"; a syscall's entry prints as "sys_getppid()"
_LINE = re.compile(r"^\s*.*-(?P<pid>\d+)\s+\[\d+\]\s+\S+\s+[\d.]+: (?P<event>\w+)[:(]")


class Ftrace:
    """A private tracefs instance (its own ring buffer and enable files: it
    does not disturb anyone's /sys/kernel/tracing/trace) recording events;
    read back through its trace_pipe."""

    def __init__(self, *events: str, buffer_kb: int = 16384):
        self.events = [e.replace(":", "/") for e in events]   # kmem/mm_page_alloc_extfrag
        self.dir = os.path.join(TRACEFS, "instances", f"mfd-tracers-{os.getpid()}")
        self.buffer_kb = buffer_kb
        self.counts: Counter = Counter()                     # (event, pid) -> records

    def _write(self, rel: str, text: str) -> None:
        with open(os.path.join(self.dir, rel), "w") as f:
            f.write(text)

    def __enter__(self) -> "Ftrace":
        from mfd.kernel.tracefs import ensure_tracefs
        assert ensure_tracefs(), "tracefs cannot be mounted"
        os.mkdir(self.dir)
        try:
            self._write("buffer_size_kb", str(self.buffer_kb))
            for ev in self.events:
                self._write(f"events/{ev}/enable", "1")
            self._write("tracing_on", "1")
        except BaseException:
            os.rmdir(self.dir)
            raise
        return self

    def stop(self) -> Counter:
        """Stop recording and count what was recorded, per (event, pid)."""
        self._write("tracing_on", "0")
        for stats in glob.glob(os.path.join(self.dir, "per_cpu", "cpu*", "stats")):
            with open(stats) as f:
                text = f.read()
            for what in ("overrun", "dropped events"):
                lost = re.search(r"^%s: (\d+)" % what, text, re.M)
                assert lost is None or lost.group(1) == "0", "ftrace lost events: raise buffer_kb"
        fd = os.open(os.path.join(self.dir, "trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
        chunks = []
        try:
            while True:
                try:
                    chunk = os.read(fd, 1 << 20)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
        for line in b"".join(chunks).decode(errors="replace").splitlines():
            m = _LINE.match(line)
            if m:
                self.counts[(m["event"], int(m["pid"]))] += 1
        return self.counts

    def of(self, event: str, pid: Optional[int] = None) -> int:
        """Records of ``event`` ("kmem:mm_page_alloc"), of one pid or of all."""
        name = event.split(":")[-1]
        if name.startswith("sys_enter_"):
            name = "sys_" + name[len("sys_enter_"):]
        return sum(n for (e, p), n in self.counts.items() if e == name and pid in (None, p))

    def __exit__(self, *exc) -> bool:
        try:
            self._write("tracing_on", "0")
            for ev in self.events:
                self._write(f"events/{ev}/enable", "0")
        finally:
            os.rmdir(self.dir)
        return False


# -- mfd as a real process -----------------------------------------------------


class Mfd:
    """``mfd ARGS`` running in the background (its own pid, so its own
    syscalls are not the workload's), until the block ends (then Ctrl-C).
    Its output goes to a file: ``lines()`` so far, ``wait_lines(n)``."""

    def __init__(self, *args: str):
        self.args = args
        self.out = tempfile.NamedTemporaryFile("w+", prefix="mfd-out-")
        self.err = tempfile.NamedTemporaryFile("w+", prefix="mfd-err-")
        self.proc: Optional[subprocess.Popen] = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def lines(self) -> List[str]:
        with open(self.out.name) as f:
            text = f.read()
        return text.splitlines()[:text.count("\n")]           # complete lines only

    def stderr(self) -> str:
        with open(self.err.name) as f:
            return f.read()

    def wait_lines(self, n: int, timeout: float = 120) -> List[str]:
        deadline = time.monotonic() + timeout
        while len(self.lines()) < n:
            if self.proc.poll() is not None:
                pytest.fail(f"mfd {' '.join(self.args)} exited {self.proc.returncode}: "
                            f"{self.stderr().strip()}")
            if time.monotonic() > deadline:
                pytest.fail(f"mfd {' '.join(self.args)}: no output in {timeout} s: "
                            f"{self.stderr().strip()}")
            time.sleep(0.05)
        return self.lines()

    def samples(self) -> List[dict]:
        """The JSON samples so far (with --json)."""
        return [json.loads(line) for line in self.lines()]

    def __enter__(self) -> "Mfd":
        self.proc = subprocess.Popen(mfd_argv(*self.args), stdout=self.out, stderr=self.err,
                                     stdin=subprocess.DEVNULL)
        # mfd prints its first sample once every program is loaded and attached
        self.wait_lines(1)
        return self

    def __exit__(self, *exc) -> bool:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        self.err.close()
        return False


class _Null:
    """In place of Mfd for the runs without mfd."""

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _window(mfd: Optional[Mfd], action):
    """Run ``action()`` inside one window of mfd's samples (with --json): the
    samples from two after the call's start (so their polls follow it) to
    two after its end.  Returns (action's result, those samples)."""
    if mfd is None:
        return action(), []
    start = len(mfd.wait_lines(1))
    mfd.wait_lines(start + 2)
    first = start + 2
    result = action()
    end = len(mfd.lines())
    mfd.wait_lines(end + 2, timeout=60)
    return result, mfd.samples()[first:end + 2]


# -- getppid: deterministic ---------------------------------------------------


def test_perf_counts_every_getppid_with_mfd_running(perf):
    """mfd's zone walker hangs on syscalls:sys_enter_getppid (filtered to its
    own pid): another process's 50000 calls are 50000 for perf and ftrace."""
    alone, _ = perf_stat(perf, [GETPPID], getppid_loop())
    assert alone[GETPPID] == N_GETPPID                      # the harness itself

    with Mfd("-d", "1") as mfd:
        with Ftrace(GETPPID) as ft:
            counts, out = perf_stat(perf, [GETPPID], getppid_loop())
            ft.stop()
        workload = int(out.split()[0])
        # mfd's own trigger calls, about one a second, stay visible to perf
        own, _ = perf_stat(perf, [GETPPID], ["sleep", "3.5"], pid=mfd.pid)
        assert mfd.proc.poll() is None, mfd.stderr()
    assert counts[GETPPID] == N_GETPPID, f"perf counted {counts[GETPPID]} with mfd running"
    assert ft.of(GETPPID, workload) == N_GETPPID              # ftrace, the same
    assert own[GETPPID] >= 2, f"mfd's own getppid calls hidden from perf: {own}"


# -- extfrag, compaction, allocations: machine-wide, against ftrace -----------


def _extfrag_run(perf: str, mfd: Optional[Mfd]):
    """The page-table workload, bigger each time until it steals pageblocks:
    (machine counts, workload counts, workload pid, ftrace, mfd samples)."""
    for gib in (None, 800, 1600):
        argv = py("import workloads\nsys.exit(workloads.main(%r))\n"
                  % (["page-tables"] + (["--gib", str(gib)] if gib else [])))
        with Ftrace(EXTFRAG) as ft:
            (machine, own, out), samples = _window(
                mfd, lambda: nested_perf_stat(perf, [EXTFRAG], argv))
            ft.stop()
        pid = int(out.split()[0])
        if ft.of(EXTFRAG, pid):
            return machine, own, pid, ft, samples
    pytest.fail("the page-table workload made no extfrag event")


@pytest.mark.parametrize("args", [None, ("-s", "-d", "1", "--json")],
                         ids=["without-mfd", "mfd-s"])
def test_perf_counts_extfrag_events_beside_mfd(perf, args):
    with (Mfd(*args) if args else _Null()) as mfd:
        machine, own, pid, ft, samples = _extfrag_run(perf, mfd)
    theirs = ft.of(EXTFRAG, pid)
    assert own[EXTFRAG] == theirs, f"perf in the workload {own}, ftrace {theirs}"
    assert theirs <= machine[EXTFRAG] <= ft.of(EXTFRAG), (machine, theirs, ft.of(EXTFRAG))
    if args:
        mine = sum(r["events"] for s in samples for r in s["events"]["extfrag"]["by_process"]
                   if r["pid"] == pid)
        assert mine == theirs, f"mfd counted {mine} of the workload's {theirs} events"


@pytest.mark.parametrize("args", [None, ("--events", "compaction,alloc", "-d", "1", "--json")],
                         ids=["without-mfd", "mfd-events"])
def test_perf_counts_compaction_and_allocations_beside_mfd(perf, args):
    """compact_memory compacts every zone in the writing task (begin and end
    once per populated zone there); then 64 MiB of base pages are faulted in.
    The kmem:mm_page_alloc group runs as a tracepoint here (no kprobes)."""
    events = list(COMPACTION) + [ALLOC]
    argv = py("import workloads\nworkloads.compact_memory()\nworkloads.populate(64)\n")
    with (Mfd(*args) if args else _Null()) as mfd:
        with Ftrace(*events, buffer_kb=32768) as ft:
            (machine, own, out), samples = _window(
                mfd, lambda: nested_perf_stat(perf, events, argv))
            ft.stop()
    pid = int(out.split()[0])
    with open("/proc/zoneinfo") as f:
        populated = len(re.findall(r"present\s+[1-9]", f.read()))
    begin, end = COMPACTION[:2]
    assert ft.of(begin, pid) >= populated and ft.of(end, pid) >= populated
    for ev in events:
        theirs, everyone = ft.of(ev, pid), ft.of(ev)
        if ev == ALLOC:
            # perf starts counting at exec; ftrace records the few pages perf's
            # child allocates before it under the same pid
            assert theirs - 200 <= own[ev] <= theirs and own[ev] >= 16384, (ev, own, theirs)
            assert own[ev] <= machine[ev] <= everyone, (ev, machine, everyone)
        else:
            assert own[ev] == theirs, (ev, own, theirs)
            assert theirs <= machine[ev] <= everyone, (ev, machine, theirs, everyone)
    if args:
        comp = [s["events"]["compaction"] for s in samples]
        alloc = [s["events"]["alloc"] for s in samples]
        assert ft.of(begin, pid) <= sum(c["begin"] for c in comp) <= ft.of(begin)
        assert ft.of(end, pid) <= sum(c["end"] for c in comp) <= ft.of(end)
        mine = sum(a["allocs"] + a["failures"] for a in alloc)
        assert own[ALLOC] <= mine <= ft.of(ALLOC), (mine, own[ALLOC], ft.of(ALLOC))


def test_mfd_leaves_the_global_ftrace_enable_files_alone():
    """mfd attaches through perf, never through ftrace's switches: the
    machine's own tracefs enable files read the same while it runs."""
    from mfd.kernel.tracefs import ensure_tracefs
    assert ensure_tracefs()
    files = [os.path.join(TRACEFS, "events", e.replace(":", "/"), "enable")
             for e in (GETPPID, EXTFRAG, ALLOC) + COMPACTION]

    def read():
        out = []
        for path in files:
            with open(path) as f:
                out.append(f.read())
        return out

    before = read()
    with Mfd("-s", "--events", "all", "-d", "0.5"):
        during = read()
    assert during == before


# -- every program, also those the workloads above cannot trigger -------------


def _tracepoint_bodies(text: str):
    """(name, body) of every TRACEPOINT_PROBE(category, event) in a source."""
    for m in re.finditer(r"TRACEPOINT_PROBE\((\w+),\s*(\w+)\)\s*\{", text):
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        yield f"{m.group(1)}:{m.group(2)}", text[m.end():i - 1]


def test_every_tracepoint_program_passes_the_event_on():
    """Every return of every tracepoint program lets the event go on to perf
    (kcompactd_wake and try_to_compact_pages included, which the workloads
    above may not make happen)."""
    with open(os.path.join(BPF_DIR, "mfd.h")) as f:
        header = f.read()
    m = re.search(r"^#define\s+MFD_TP_PASS\s+(\S+)", header, re.M)
    assert m and m.group(1) == "1", "bpf/mfd.h must define MFD_TP_PASS 1"
    seen = []
    for path in sorted(glob.glob(os.path.join(BPF_DIR, "*.bpf.c"))):
        with open(path) as f:
            text = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
        for name, body in _tracepoint_bodies(text):
            seen.append(name)
            returns = re.findall(r"\breturn\b\s*([^;]*);", body)
            assert returns, name
            assert set(returns) == {"MFD_TP_PASS"}, f"{name} returns {returns}"
    assert {"kmem:mm_page_alloc_extfrag", "kmem:mm_page_alloc", "syscalls:sys_enter_getppid",
            "compaction:mm_compaction_begin", "compaction:mm_compaction_end",
            "compaction:mm_compaction_try_to_compact_pages",
            "compaction:mm_compaction_kcompactd_wake"} <= set(seen)
