"""Helpers shared by the benchmark scripts: medians of batches, one-line reports."""
from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Callable, List

# The test workloads (tests/workloads.py) are test support, not part of mfd.
TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests")
WORKLOADS = os.path.join(TESTS, "workloads.py")
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)


def per_call_us(fn: Callable[[], object], calls: int, batches: int) -> List[float]:
    """Microseconds per call, one figure per batch (medians are robust to noise)."""
    out = []
    for _ in range(batches):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        out.append((time.perf_counter() - t0) / calls * 1e6)
    return out


def median(xs) -> float:
    return statistics.median(xs)


def spread(xs) -> str:
    return f"median {median(xs):.1f} (min {min(xs):.1f}, max {max(xs):.1f})"


def cpu_seconds(pid: int) -> float:
    """On-CPU seconds (user + system) of all the process's threads, ns-precise
    (/proc/PID/task/*/schedstat)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # a thread that just ended
    return total / 1e9
