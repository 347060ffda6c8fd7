"""Lean: no compiler mapped into a running mfd, a small steady RSS, and nothing
left in the kernel after mfd ends however it ends.

BCC compiles in the loader helper (mfd.handover), which hands the loaded
programs' fds over and exits; mfd reads its maps through libbpf.  Every
long-running mode is checked as a real process on this kernel, against the
same command with --bpf-loader inprocess (which must map the compiler: the
check can fail).  bench/footprint.py measures the same after 30 s beside
node_exporter.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
import uuid

import pytest

from conftest import bpf_fds, bpftool_ids, mapped_compiler, mfd_argv, needs_root

pytestmark = needs_root

RSS_LIMIT_KB = 32 << 10          # the goal: 32 MiB for every long-running mode
SETTLE = 3.0                     # s after the first output before memory is read
UP = 120.0                       # s; a compile under a busy CI can take a while


def _status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key} for {pid}")


def _pss_kb(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise AssertionError("no Pss")


def _children(pid):
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            out += [int(c) for c in f.read().split()]
    return out


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(pred, proc, what):
    deadline = time.monotonic() + UP
    while time.monotonic() < deadline:
        if pred():
            return
        if proc.poll() is not None:
            raise AssertionError(f"mfd exited ({proc.returncode}) before {what}: "
                                 f"{proc.stderr.read()}")
        time.sleep(0.1)
    raise AssertionError(f"no {what} after {UP:.0f} s")


class Mfd:
    """mfd as its own process; ``up()`` waits for its first output."""

    def __init__(self, args, tmp, kind="stdout"):
        self.kind, self.tmp = kind, tmp
        self.port = _free_port()
        self.db = os.path.join(tmp, f"r-{uuid.uuid4().hex[:6]}.db")
        argv = [a.format(port=self.port, db=self.db) for a in args]
        self.p = subprocess.Popen(mfd_argv(*argv), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.pid = self.p.pid
        self.first = None

    def up(self):
        if self.kind == "http":
            def answered():
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
                        return b"mfd_build_info" in s.makefile("rb").read()
                except OSError:
                    return False
            _wait(answered, self.p, "answer on /metrics")
        else:
            self.first = self.p.stdout.readline()
            assert self.first, self.p.stderr.read()
            if self.kind == "record":
                _wait(lambda: os.path.exists(self.db), self.p, "recording")
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            out, err = self.p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
        return self.p.returncode, err


MODES = {
    "monitor": (["-d", "0.2", "--json"], "stdout"),
    "record": (["-d", "0.2", "--json", "--record", "{db}"], "record"),
    "serve": (["serve", "--listen", "127.0.0.1:{port}"], "http"),
    "prometheus": (["--prometheus", "127.0.0.1:{port}"], "http"),
    "events": (["-d", "0.2", "--json", "--events", "all", "--alloc-probe", "tracepoint"],
               "stdout"),
    "record-events": (["-d", "0.2", "--json", "--events", "all", "--alloc-probe",
                       "tracepoint", "--record", "{db}"], "record"),
}


@pytest.fixture
def started(tmp_path):
    procs = []

    def start(args, kind="stdout"):
        m = Mfd(args, str(tmp_path), kind)
        procs.append(m)
        return m.up()
    yield start
    for m in procs:
        m.stop(signal.SIGKILL)


def _check_lean(m):
    time.sleep(SETTLE)
    assert m.p.poll() is None, m.p.stderr.read()
    if m.first and m.first.startswith("{"):
        assert json.loads(m.first)["source"] == "bpf"     # the eBPF walker, not /proc
    rss, pss = _status_kb(m.pid, "VmRSS"), _pss_kb(m.pid)
    print(f"RSS {rss / 1024:.1f} MiB, PSS {pss / 1024:.1f} MiB")
    assert mapped_compiler(m.pid) == []
    assert _children(m.pid) == [], "the loader helper is still there"
    _fds, progs, maps = bpf_fds(m.pid)
    assert progs and maps, "mfd holds no BPF program or map"
    assert rss <= RSS_LIMIT_KB, f"RSS {rss} KiB over {RSS_LIMIT_KB} KiB"


@pytest.mark.parametrize("mode", list(MODES))
def test_long_running_mode_maps_no_compiler_and_stays_small(started, mode):
    args, kind = MODES[mode]
    _check_lean(started(args, kind))


def test_inprocess_loader_keeps_the_compiler_mapped(started):
    """The control: the same monitor compiling in-process maps libLLVM/libclang."""
    m = started(["-d", "0.2", "--json", "--bpf-loader", "inprocess"])
    assert mapped_compiler(m.pid), "the check above could not fail"
    assert _status_kb(m.pid, "VmRSS") > RSS_LIMIT_KB


def _mfd_pid_in(pane_pid):
    todo = [pane_pid]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            if any(a == b"-m" and b == b"mfd" for a, b in zip(argv, argv[1:])):
                return pid
            todo += _children(pid)
        except OSError:
            pass
    return None


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
@pytest.mark.parametrize("extra", [[], ["--events", "all", "--alloc-probe", "tracepoint"]],
                         ids=["live", "live-events"])
def test_live_view_maps_no_compiler(extra):
    sock = f"mfd-lean-{uuid.uuid4().hex[:8]}"

    def tmux(*a):
        return subprocess.run(["tmux", "-L", sock, *a], capture_output=True, text=True,
                              timeout=20, check=True).stdout
    cmd = "env LANG=C.UTF-8 TERM=tmux-256color " + shlex.join(mfd_argv("-v", "-d", "0.5",
                                                                         *extra))
    tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "160", "-y", "50", cmd)
    try:
        deadline = time.monotonic() + UP
        while "ORDER" not in tmux("capture-pane", "-p", "-t", "t"):
            assert time.monotonic() < deadline, tmux("capture-pane", "-p", "-t", "t")
            time.sleep(0.2)
        pid = _mfd_pid_in(int(tmux("list-panes", "-t", "t", "-F", "#{pane_pid}").split()[0]))
        assert pid
        time.sleep(SETTLE)
        rss = _status_kb(pid, "VmRSS")
        print(f"live view RSS {rss / 1024:.1f} MiB")
        assert mapped_compiler(pid) == [] and _children(pid) == []
        assert rss <= RSS_LIMIT_KB
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True, timeout=20)


# -- nothing left behind ------------------------------------------------------------------

def _gone(progs, maps, timeout=10.0):
    """True once none of these program/map ids exists (the kernel frees programs
    after an RCU grace period and maps from a workqueue)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not (progs & bpftool_ids("prog") or maps & bpftool_ids("map")):
            return True
        time.sleep(0.2)
    return False


def _kprobe_events():
    try:
        with open("/sys/kernel/tracing/kprobe_events") as f:
            return f.read()
    except OSError:
        return ""


@pytest.mark.skipif(shutil.which("bpftool") is None, reason="no bpftool")
@pytest.mark.parametrize("how", ["count", "SIGTERM", "SIGINT", "SIGKILL"])
def test_nothing_left_after_mfd_ends(tmp_path, how):
    kprobes_before = _kprobe_events()
    args = ["-d", "0.2", "--json", "--events", "all"] + (["--count", "8"] if how == "count"
                                                          else [])
    m = Mfd(args, str(tmp_path)).up()
    _fds, progs, maps = bpf_fds(m.pid)
    assert progs and maps
    if how == "count":
        rc, err = m.p.wait(60), m.p.stderr.read()
    else:
        rc, err = m.stop(getattr(signal, how))
    assert rc == (-signal.SIGKILL if how == "SIGKILL" else 0), err
    assert _gone(progs, maps), f"programs {progs} or maps {maps} outlived mfd ({how})"
    assert _kprobe_events() == kprobes_before, "a kprobe event outlived mfd"


# -- the fallback -----------------------------------------------------------------------------

PIDS_V1 = "/sys/fs/cgroup/pids"
PIDS_V2 = "/sys/fs/cgroup"


def _pids_cgroup():
    """A fresh pids cgroup whose pids.max lets a process in it start no other
    (v1 pids controller, or a v2 hierarchy with the controller)."""
    for root in (PIDS_V1, PIDS_V2):
        if os.path.exists(os.path.join(root, "cgroup.procs")) and (
                root == PIDS_V1 or "pids" in open(os.path.join(root, "cgroup.controllers")).read()):
            path = os.path.join(root, f"mfd-test-{uuid.uuid4().hex[:8]}")
            os.mkdir(path)
            if not os.path.exists(os.path.join(path, "pids.max")):
                os.rmdir(path)
                continue
            with open(os.path.join(path, "pids.max"), "w") as f:
                f.write("1")
            return path
    pytest.skip("no pids cgroup controller to make fork() fail")


@pytest.mark.parametrize("loader", ["auto", "helper"])
def test_helper_that_cannot_start(loader):
    """fork() fails (pids.max = 1): auto compiles in-process and says so once;
    --bpf-loader helper fails instead, in one line."""
    cg = _pids_cgroup()
    try:
        def join():
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        # no --count: a short bounded run compiles in-process anyway
        p = subprocess.Popen(mfd_argv("-d", "0.2", "--json", "--source", "bpf",
                                      "--bpf-loader", loader),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=join)
        first = p.stdout.readline()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=120)
        r = subprocess.CompletedProcess(p.args, p.returncode, first + out, err)
    finally:
        for _ in range(50):
            try:
                os.rmdir(cg)
                break
            except OSError:
                time.sleep(0.1)
    if loader == "auto":
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout.splitlines()[0])["source"] == "bpf"
        assert r.stderr.count("in-process") == 1, r.stderr
    else:
        assert r.returncode == 1, r.stderr
        assert "Traceback" not in r.stderr
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("mfd: cannot load the eBPF zone walker through the loader "
                               "helper (cannot fork: "), last
