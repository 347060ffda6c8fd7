#!/usr/bin/env python3
"""Record a real fragmentation episode on this machine, for the README's pictures.

Runs ``mfd --record OUT.db --events extfrag,compaction`` while it drives the
workloads of tests/workloads.py through phases (seconds from the start):

    0   baseline
    T   fragment: fault in --mib MiB, give back every other page (free memory
        in single pages that cannot merge), and keep the rest
    +   page-tables: a sparse 200 GiB mapping, one page-table page per 2 MiB:
        the unmovable free lists run dry, the allocator steals pageblocks
        (kmem:mm_page_alloc_extfrag)
    +   THP faults: huge-page allocations compact directly
    +   compact_memory: every zone compacted (root)
    +   release everything: the free pages merge back
    end baseline again

Then ``mfd report OUT.db --png img/report.png --html OUT.html`` draws it.
Root only (BPF, compact_memory).  It changes the machine's memory state:
run it on a test machine.

    sudo .venv/bin/python bench/fragdemo.py --out /tmp/fragdemo.db
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402,F401  (puts tests/ on the path)
from workloads import Child, compact_memory  # noqa: E402


def log(msg: str) -> None:
    print(f"fragdemo {time.strftime('%H:%M:%S')}: {msg}", file=sys.stderr, flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="/tmp/fragdemo.db", help="the recording (replaced)")
    p.add_argument("--mib", type=int, default=6144, help="memory the fragment phase touches")
    p.add_argument("--interval", default="0.5", help="mfd -d")
    p.add_argument("--phase", type=float, default=25.0, help="seconds per phase")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("fragdemo: run as root", file=sys.stderr)
        return 1
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(args.out + suffix):
            os.unlink(args.out + suffix)
    mfd = subprocess.Popen([sys.executable, "-m", "mfd", "--record", args.out, "-d",
                            args.interval, "--events", "extfrag,compaction", "--json"],
                           stdout=subprocess.DEVNULL)
    holders = []
    try:
        time.sleep(args.phase)
        log(f"fragment {args.mib} MiB (every other page given back)")
        frag = Child("fragment", "--mib", str(args.mib), "--hold")
        holders.append(frag)
        log(f"  {frag.ready()}")
        time.sleep(args.phase)
        log("page-tables: sparse 200 GiB mapping (extfrag steals)")
        tables = Child("page-tables", "--gib", "200", "--hold")
        holders.append(tables)
        log(f"  {tables.ready()}")
        time.sleep(args.phase)
        log("THP faults: 2 GiB of huge pages (direct compaction)")
        thp = Child("populate", "--mib", "2048", "--thp", "--hold")
        holders.append(thp)
        log(f"  {thp.ready()}")
        time.sleep(args.phase)
        log("compact_memory")
        compact_memory()
        time.sleep(args.phase)
        log("release everything")
        for h in reversed(holders):
            h.release()
        holders.clear()
        time.sleep(args.phase)
    finally:
        for h in holders:
            h.release()
        mfd.terminate()
        mfd.wait(30)
    log(f"recorded {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
