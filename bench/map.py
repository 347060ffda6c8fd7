#!/usr/bin/env python3
"""`mfd map`: end to end, against dd reading the same kpage files raw, and
the page-fault throughput of a workload while maps are taken, against none.

Baselines, in the same run and interleaved round by round:
  * raw: dd of /proc/kpageflags over every populated zone's pageblock range
    (what mfd reads) plus dd of /proc/kpagecgroup over the same ranges (mfd
    reads it for the pinned blocks only, so this baseline is the larger),
    512 KiB per read like mfd; and dd of /proc/kpageflags alone;
  * faults: tests/workloads.py's fault_throughput (256 MiB faulted in and
    unmapped, again and again; per CPU second) on CPU 0 with nothing else, then
    while on another CPU, back to back: a shell loop (any busy CPU: on a VM
    the other CPU may be the same core's sibling), dd reading
    /proc/kpageflags (the kernel's own cost of serving it), `mfd map`, and
    `mfd map --rate`.
Run as root:  .venv/bin/python bench/map.py [--rounds 9]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import median  # noqa: E402

P = 512
BS = 512 << 10


def zone_ranges():
    """(first pfn, pages) of each populated zone's pageblocks, from zoneinfo."""
    out, cur = [], {}
    with open("/proc/zoneinfo") as f:
        for line in f:
            parts = line.split()
            if line.startswith("Node"):
                cur = {}
            elif parts[:1] == ["spanned"]:
                cur["spanned"] = int(parts[1])
            elif parts[:1] == ["present"]:
                cur["present"] = int(parts[1])
            elif parts[:1] == ["start_pfn:"] and cur.get("present"):
                start = int(parts[1])
                b0, b1 = start // P, -(-(start + cur["spanned"]) // P)
                out.append((b0 * P, (b1 - b0) * P))
    return out


def dd(path: str, ranges) -> None:
    for first, pages in ranges:
        subprocess.run(["dd", f"if={path}", f"bs={BS}", f"skip={first * 8}",
                        f"count={pages * 8}", "iflag=skip_bytes,count_bytes",
                        "of=/dev/null", "status=none"], check=True)


def wall(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def mfd_map(*extra):
    subprocess.run([sys.executable, "-m", "mfd", "map", "--json", "-q", *extra],
                   stdout=subprocess.DEVNULL, check=True)


def faults(seconds: float) -> float:
    """4 KiB page faults per second of this process's CPU time, on CPU 0: per
    CPU second, so that time the scheduler gives to others does not count."""
    from workloads import fault_throughput
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    return fault_throughput(256, seconds, cpu=True)


def faults_while(seconds: float, argv, other: str) -> float:
    """Fault throughput on CPU 0 while ``argv`` runs back to back on ``other``."""
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            subprocess.run(["taskset", "-c", other, *argv], stdout=subprocess.DEVNULL)
    t = threading.Thread(target=loop)
    t.start()
    time.sleep(0.3)                 # the first read is under way
    try:
        return faults(seconds)
    finally:
        stop.set()
        t.join()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--fault-seconds", type=float, default=2.0)
    ap.add_argument("--rate", type=float, default=4.0, help="GiB/s for the capped run")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("map: run as root (/proc/kpageflags is root's)")
    ranges = zone_ranges()
    pages = sum(n for _f, n in ranges)
    raw, flags_only, ours, ours_nopt = [], [], [], []
    for _ in range(a.rounds):
        raw.append(wall(lambda: (dd("/proc/kpageflags", ranges),
                                 dd("/proc/kpagecgroup", ranges))))
        flags_only.append(wall(lambda: dd("/proc/kpageflags", ranges)))
        ours.append(wall(mfd_map))
        ours_nopt.append(wall(lambda: mfd_map("--no-pagetypeinfo")))
    mfd = [sys.executable, "-m", "mfd", "map", "--json", "-q", "--no-pagetypeinfo"]
    readers = {"a shell loop (CPU only)": ["sh", "-c", "i=0; while [ $i -lt 400000 ]; do "
                                                      "i=$((i+1)); done"],
               "dd of kpageflags": ["dd", "if=/proc/kpageflags", f"bs={BS}", "of=/dev/null",
                                    "status=none"],
               "mfd map": mfd, f"mfd map --rate {a.rate:g}": mfd + ["--rate", str(a.rate)]}
    cpus = sorted(os.sched_getaffinity(0))
    other = str(cpus[1] if len(cpus) > 1 else cpus[0])
    none, under = [], {k: [] for k in readers}
    for _ in range(a.rounds):
        none.append(faults(a.fault_seconds))
        for name, argv in readers.items():
            under[name].append(faults_while(a.fault_seconds, argv, other))
    mib = pages * 8 >> 20
    print(f"{len(ranges)} zones, {pages} pfns ({mib} MiB of kpageflags per map); "
          f"{a.rounds} rounds, seconds (median, min-max):")
    for name, xs in (("dd kpageflags + kpagecgroup", raw), ("dd kpageflags alone", flags_only),
                     ("mfd map --json", ours), ("mfd map --json --no-pagetypeinfo", ours_nopt)):
        print(f"  {name:<34} {median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})")
    print(f"ratio mfd map / dd of kpageflags alone: {median(ours) / median(flags_only):.2f} "
          f"(target <= 1.5); / dd of both files: {median(ours) / median(raw):.2f}")
    print(f"page faults per CPU second on CPU 0, median: {median(none):.0f} with nothing else; "
          f"as a ratio to that, while on another CPU, back to back:")
    for name, xs in under.items():
        print(f"  {name:<34} {median(xs) / median(none):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
