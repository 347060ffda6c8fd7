#!/usr/bin/env python3
"""CPU time of the mfd process per second of monitoring, at rising event rates.

One `mfd --events all --json -d 1` runs throughout; load levels follow one
another (idle; 1 and 2 processes faulting pages in as fast as they can; one
process stealing pageblocks in a loop; idle again), each measured over a
window of whole samples.  The event rate is what mfd itself counted
(allocations + extfrag + compaction runs).  CPU is the mfd process's on-CPU
time (user + system, all threads) from /proc/<pid>/task/*/schedstat, in ns.
The BPF programs' own time is charged to the tasks that allocate, not to
mfd: that cost is bench/alloc_overhead.py's subject.
Run as root:  .venv/bin/python bench/events_cpu.py [--window 10] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import WORKLOADS, cpu_seconds, median  # noqa: E402


def events_in(sample: dict):
    """(all events, extfrag events) of one sample."""
    ev = sample["events"]
    return (ev["alloc"]["allocs"] + ev["alloc"]["failures"] + ev["extfrag"]["events"] +
            ev["compaction"]["begin"], ev["extfrag"]["events"])


def measure(mfd, window: int):
    """(events/s, extfrag events/s, mfd CPU ms/s) over ``window`` samples of mfd."""
    mfd.stdout.readline()                    # align to a sample boundary
    c0, t0 = cpu_seconds(mfd.pid), time.monotonic()
    counts = [events_in(json.loads(mfd.stdout.readline())) for _ in range(window)]
    c1, t1 = cpu_seconds(mfd.pid), time.monotonic()
    dt = t1 - t0
    return (sum(c[0] for c in counts) / dt, sum(c[1] for c in counts) / dt,
            (c1 - c0) / dt * 1000)


def load(what: str, n: int, seconds: float):
    args = {"throughput": ["--mib", "64"], "steal": []}[what]
    return [subprocess.Popen([sys.executable, WORKLOADS, what, *args,
                              "--seconds", str(seconds)], stdout=subprocess.DEVNULL)
            for _ in range(n)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window", type=int, default=10, help="samples (seconds) per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    mfd = subprocess.Popen([sys.executable, "-m", "mfd", "--events", "all", "--json", "-d", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    levels = [("idle", "throughput", 0), ("1 faulting", "throughput", 1),
              ("2 faulting", "throughput", 2), ("steals", "steal", 1),
              ("idle again", "throughput", 0)]
    rows = {name: [] for name, _w, _n in levels}
    try:
        if not mfd.stdout.readline():
            raise SystemExit("mfd did not start")
        for _ in range(a.rounds):
            for name, what, n in levels:
                procs = load(what, n, a.window + 4)
                try:
                    rows[name].append(measure(mfd, a.window))
                finally:
                    for p in procs:
                        p.kill()
                        p.wait()
    finally:
        mfd.terminate()
        mfd.wait()
    print(f"mfd --events all -d 1: CPU of the mfd process, medians of {a.rounds} windows "
          f"of {a.window} samples")
    print(f"  {'load':12s} {'events/s':>12s} {'extfrag/s':>10s} {'CPU ms/s':>9s}")
    med = {name: [median([r[i] for r in rows[name]]) for i in range(3)]
           for name, _w, _n in levels}
    for name, _w, _n in levels:
        print(f"  {name:12s} {med[name][0]:12.0f} {med[name][1]:10.0f} {med[name][2]:9.2f}")
    print(f"ratio CPU at {med['2 faulting'][0]:.0f} events/s to CPU at {med['idle'][0]:.0f} "
          f"events/s: {med['2 faulting'][2] / med['idle'][2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
