#!/usr/bin/env python3
"""Page-allocation throughput with mfd's event tracing attached, against none.

Three configurations, measured in one run, rounds interleaved (the order
rotates each round) so that machine drift hits all alike:

  baseline   nothing attached
  events     mfd --events extfrag,compaction (the cheap groups: tracepoints
             that fire only on fallbacks and compaction)
  alloc      mfd --events alloc (on every page allocation: the kprobe path
             where the kernel has kprobes, else kmem:mm_page_alloc)

Two microbenchmarks (fault_throughput, tests/workloads.py): base pages (map
--mib MiB, fault it in with MADV_POPULATE_WRITE, unmap; 4 KiB pages/s) and
huge pages (the same with MADV_HUGEPAGE: order-9 allocations/s).  Rates are
per CPU second of the faulting process (the faults, and the BPF programs
they trigger, run in it) unless --wall: on a shared machine, other load
moves wall-clock rates far more than the probes do.
Run as root:  .venv/bin/python bench/alloc_overhead.py [--rounds 5] [--seconds 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import median, spread  # noqa: E402

CONFIGS = {
    "baseline": None,
    "events": ["--events", "extfrag,compaction"],
    "alloc": ["--events", "alloc"],
}


class Mfd:
    """mfd running in the background with some event groups; ready once it
    has printed its first sample (the programs are attached by then)."""

    def __init__(self, args):
        self.proc = subprocess.Popen([sys.executable, "-m", "mfd", "--json", "-d", "1",
                                      "--source", "procfs", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline()
        if not first:
            raise SystemExit("mfd did not start: " + self.proc.stderr.read().strip())
        self.probe = json.loads(first)["events"].get("alloc", {}).get("probe")

    def stop(self):
        self.proc.terminate()
        self.proc.communicate(timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--wall", dest="cpu", action="store_false",
                    help="pages per wall-clock second (default: per CPU second of the "
                         "faulting process, which other load disturbs less)")
    a = ap.parse_args()
    from workloads import fault_throughput

    # warm up: the first touches of guest memory cost far more (host faults,
    # deferred struct page init), and THP needs free huge blocks to exist
    fault_throughput(a.mib, a.seconds)
    fault_throughput(a.mib, a.seconds, thp=True)

    results = {name: {"4k": [], "thp": []} for name in CONFIGS}
    names = list(CONFIGS)
    probe = None
    for r in range(a.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            mfd = Mfd(CONFIGS[name]) if CONFIGS[name] else None
            try:
                results[name]["4k"].append(fault_throughput(a.mib, a.seconds, cpu=a.cpu))
                results[name]["thp"].append(fault_throughput(a.mib, a.seconds, thp=True,
                                                             cpu=a.cpu))
            finally:
                if mfd:
                    probe = mfd.probe or probe
                    mfd.stop()

    per = "CPU second" if a.cpu else "second"
    print(f"{a.rounds} rounds x {a.seconds:g} s, {a.mib} MiB per mapping; "
          f"allocator probe path: {probe}")
    for kind, unit in (("4k", f"4 KiB pages per {per}"), ("thp", f"huge pages per {per}")):
        base = median(results["baseline"][kind])
        print(f"{unit}:")
        for name in CONFIGS:
            xs = results[name][kind]
            print(f"  {name:9s} {spread(xs):>40s}   ratio {median(xs) / base:.3f}")
    ok = all(median(results["events"][k]) / median(results["baseline"][k]) >= 0.97
             for k in ("4k", "thp"))
    print("events/baseline >= 0.97 (target):", "yes" if ok else "NO")
    return 0


if __name__ == "__main__":
    sys.exit(main())
