#!/usr/bin/env python3
"""`mfd can` and `mfd doctor`: launch to answer, against reading the kernel files.

Baseline, in the same run and interleaved: a new Python process that reads
/proc/buddyinfo, /proc/zoneinfo and /proc/pagetypeinfo and exits (the floor
for any answer from /proc).  Also the cost of one /proc/pagetypeinfo read
alone, in this process: the kernel walks every free list and pageblock with
zone->lock held and interrupts off, which is why mfd reads it only on request.
And `mfd doctor --window 1` from launch to exit, against its 1 s window.
Run as root:  .venv/bin/python bench/can.py [--runs 21]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import median  # noqa: E402

FILES = ("/proc/buddyinfo", "/proc/zoneinfo", "/proc/pagetypeinfo")
READ = ("import sys\nfor p in %r:\n    open(p, 'rb').read()\n" % (FILES,))


def wall(argv) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        raise SystemExit(f"{argv} exited {r.returncode}")
    return t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=21)
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("can: run as root (/proc/pagetypeinfo is root's)")
    raw = [sys.executable, "-c", READ]
    ours = [sys.executable, "-m", "mfd", "can", "1@2M"]
    base, mfd = [], []
    for _ in range(a.runs):
        base.append(wall(raw))
        mfd.append(wall(ours))
    doc = [wall([sys.executable, "-m", "mfd", "doctor", "--window", "1"])
           for _ in range(max(3, a.runs // 3))]
    pt = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        with open("/proc/pagetypeinfo", "rb") as f:
            f.read()
        pt.append(time.perf_counter() - t0)
    print(f"{a.runs} runs, seconds from launch to exit (median, min-max):")
    print(f"  python reading the three files: {median(base):.3f} ({min(base):.3f}-{max(base):.3f})")
    print(f"  mfd can 1@2M:                   {median(mfd):.3f} ({min(mfd):.3f}-{max(mfd):.3f})")
    print(f"ratio mfd/raw: {median(mfd) / median(base):.2f}; target: mfd under 0.3 s")
    print(f"mfd doctor --window 1: median {median(doc):.3f} s "
          f"({min(doc):.3f}-{max(doc):.3f}): {median(doc) - 1:.3f} s over the window "
          f"(target <= 0.5 s)")
    print(f"one /proc/pagetypeinfo read: median {median(pt) * 1e3:.2f} ms "
          f"(min {min(pt) * 1e3:.2f}, max {max(pt) * 1e3:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
