#!/usr/bin/env python3
"""One snapshot through eBPF (trigger + walk + map read + decode) vs /proc.

The baseline, measured in the same run: reading and parsing /proc/buddyinfo and
/proc/zoneinfo with mfd's procfs collector (which gives the same Snapshot).
Run as root:  .venv/bin/python bench/snapshot.py [--calls 500] [--batches 15]
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import median, per_call_us, spread  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--batches", type=int, default=15)
    a = ap.parse_args()
    from mfd.sources.zonewalk import ZonewalkSource
    from mfd.sources.procfs import ProcfsSource

    bpf = ZonewalkSource(note=lambda m: None)
    proc = ProcfsSource()

    def read_only():
        with open("/proc/buddyinfo") as f:
            f.read()
        with open("/proc/zoneinfo") as f:
            f.read()

    try:
        # interleave so that machine noise hits both sides alike
        b, p, r = [], [], []
        for _ in range(a.batches):
            b += per_call_us(bpf.snapshot, a.calls, 1)
            p += per_call_us(proc.snapshot, a.calls, 1)
            r += per_call_us(read_only, a.calls, 1)
    finally:
        bpf.close()
    snap = proc.snapshot()
    print(f"zones {len(list(snap.zones()))}, orders {snap.nr_orders}, "
          f"{a.batches} batches x {a.calls} calls, us per snapshot:")
    print(f"  bpf     (getppid trigger + walk + 1 map lookup + decode): {spread(b)}")
    print(f"  procfs  (read + parse buddyinfo and zoneinfo):            {spread(p)}")
    print(f"  procfs  (read only, no parse):                            {spread(r)}")
    print(f"ratio bpf/procfs: {median(b) / median(p):.2f} (target <= 0.50)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
