"""Shared fixtures.  Root tests load real BPF programs into the running kernel."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (loads BPF programs, reads debugfs)")


def mfd_argv(*args: str):
    """Command line running the installed mfd with this interpreter."""
    return [sys.executable, "-m", "mfd", *args]


def remove_cgroup(path: str) -> None:
    """rmdir a test's cgroup: it can be busy for a moment after its last task exits."""
    for _ in range(50):
        try:
            os.rmdir(path)
            return
        except OSError:
            time.sleep(0.1)


def run_mfd(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(mfd_argv(*args), capture_output=True, text=True, timeout=timeout, **kw)


def bpf_fds(pid):
    """{fd: target} of a process, and the BPF program and map ids it holds:
    programs by fd or through the perf events they are attached by (which is
    all mfd keeps of them once the loader helper has handed them over)."""
    fds, progs, maps = {}, set(), set()
    base = f"/proc/{pid}/fd"
    for fd in os.listdir(base):
        try:
            fds[int(fd)] = os.readlink(os.path.join(base, fd))
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = f.read()
        except OSError:
            continue
        m = re.search(r"^prog_id:\s+(\d+)", info, re.M)
        if m:
            progs.add(int(m.group(1)))
        m = re.search(r"^map_id:\s+(\d+)", info, re.M)
        if m:
            maps.add(int(m.group(1)))
    r = subprocess.run(["bpftool", "-j", "perf", "list"], capture_output=True, text=True)
    if r.returncode == 0:
        progs |= {e["prog_id"] for e in json.loads(r.stdout or "[]")
                  if e.get("pid") == pid and "prog_id" in e}
    return fds, progs, maps


def bpftool_ids(kind):
    r = subprocess.run(["bpftool", "-j", kind, "list"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return {o["id"] for o in json.loads(r.stdout or "[]")}


def mapped_compiler(pid) -> list:
    """The libLLVM/libclang files mapped into a process (mfd should map none)."""
    with open(f"/proc/{pid}/maps") as f:
        return sorted({line.split()[-1] for line in f
                       if "libLLVM" in line or "libclang" in line})


@pytest.fixture(scope="session")
def debugfs():
    """/sys/kernel/debug mounted (mounts it if needed, as the setup script does)."""
    if not ROOT:
        pytest.skip("needs root to read debugfs")
    from mfd.kernel.tracefs import ensure_debugfs
    if not ensure_debugfs():
        pytest.skip("debugfs cannot be mounted here")
    if not os.path.exists("/sys/kernel/debug/extfrag/extfrag_index"):
        pytest.skip("no /sys/kernel/debug/extfrag (kernel without CONFIG_COMPACTION?)")
    return "/sys/kernel/debug"


@pytest.fixture(scope="session")
def bpf_collector():
    """One loaded eBPF zone walker for the whole session (compiling costs ~0.4 s)."""
    if not ROOT:
        pytest.skip("needs root to load BPF programs")
    from mfd.sources.zonewalk import ZonewalkSource
    c = ZonewalkSource(note=lambda msg: None)
    yield c
    c.close()
