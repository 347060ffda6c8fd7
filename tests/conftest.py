"""Shared fixtures.  Root tests load real BPF programs into the running kernel."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (loads BPF programs, reads debugfs)")


def mfd_argv(*args: str):
    """Command line running the installed mfd with this interpreter."""
    return [sys.executable, "-m", "mfd", *args]


def run_mfd(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(mfd_argv(*args), capture_output=True, text=True, timeout=timeout, **kw)


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
