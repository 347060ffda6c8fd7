#!/usr/bin/env python3
"""What recording costs, and how long a report of a long recording takes.

    .venv/bin/python bench/record.py [--samples 2000] [--day 86400] [--dir /tmp]

1. Recording cost per sample (Recorder.emit: one SQLite transaction, WAL,
   synchronous=NORMAL) and file growth per sample, for
   * this machine: real snapshots from /proc (its zones x orders), and
   * a synthetic 8-node x 4-zone layout (11 orders),
   each without and with an events payload, and with --retain in its
   steady state (every sample also deletes the oldest one).
2. ``mfd report`` on a day of 1 s samples of this machine's layout: the
   summary alone, with charts (PNG), and the CSV/JSON exports.

Prints medians (and the 90th percentile for per-sample costs).  Timings are
of this machine only; compare ratios, not absolutes, across machines.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))   # synth: layouts and walks

import synth  # noqa: E402
from mfd.sources.procfs import ProcfsSource  # noqa: E402
from mfd.derive import Frame  # noqa: E402
from mfd.model import Sample  # noqa: E402
from mfd.recording import History  # noqa: E402
from mfd.sinks.recorder import Recorder  # noqa: E402

BIG = dict(nodes=8, zones=("DMA", "DMA32", "Normal", "Movable"), populated=4)


def db_bytes(rec: Recorder) -> int:
    """Bytes the file holds once the WAL is checkpointed into it."""
    rec.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return os.path.getsize(rec.path)


def measure(path: str, snapshots, n: int, events=None, retain=None) -> dict:
    """Emit ``n`` samples; per-sample cost and file growth per sample (second half)."""
    rec = Recorder(path, interval=1.0, retain=retain)
    costs = []
    half_bytes = None
    try:
        for i in range(n):
            snap = snapshots(i)
            sample = Sample(snapshot=snap, interval=1.0, seq=i,
                            events=events(i) if events else None)
            t0 = time.perf_counter()
            rec.emit(Frame(sample))
            costs.append(time.perf_counter() - t0)
            if i == n // 2 - 1:
                half_bytes = db_bytes(rec)
        end_bytes = db_bytes(rec)
    finally:
        rec.close()
    costs.sort()
    return {"median_ms": statistics.median(costs) * 1e3,
            "p90_ms": costs[int(len(costs) * 0.9)] * 1e3,
            "bytes_per_sample": (end_bytes - half_bytes) / (n - n // 2),
            "file_bytes": end_bytes}


def real_snapshots():
    collector = ProcfsSource()
    base = time.time()

    def snap(i):
        s = collector.snapshot()
        return type(s)(time=base + i, source=s.source, nr_orders=s.nr_orders, nodes=s.nodes,
                       pgdat_path=s.pgdat_path)
    return snap, collector.snapshot()


def synthetic_snapshots(layout):
    walk = synth.random_walk(3)
    return lambda i: synth.snapshot(1.7e9 + i, walk, **layout)


def bench_recording(folder: str, n: int) -> None:
    real, first = real_snapshots()
    zones = sum(1 for _ in first.zones())
    populated = sum(1 for z in first.zones() if z.populated)
    layouts = [(f"this machine ({len(first.nodes)} node, {zones} zones of which {populated} "
                f"populated, {first.nr_orders} orders)", real),
               ("synthetic 8 nodes x 4 zones, 11 orders", synthetic_snapshots(BIG))]
    print(f"recording, {n} samples per case (Recorder.emit; bytes/sample from the "
          "checkpointed file, second half)")
    print(f"  {'layout':<64} {'case':<18} {'median ms':>9} {'p90 ms':>7} {'B/sample':>9}")
    for name, snaps in layouts:
        for case, kw in (("plain", {}), ("with events", {"events": synth.event_counts}),
                         ("--retain steady", {"retain": n / 4})):
            path = os.path.join(folder, f"bench-{abs(hash((name, case)))}.db")
            r = measure(path, snaps, n, **kw)
            print(f"  {name:<64} {case:<18} {r['median_ms']:9.3f} {r['p90_ms']:7.3f} "
                  f"{r['bytes_per_sample']:9.0f}")
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.unlink(path + suffix)


def timed(fn, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def bench_report(folder: str, n: int, repeat: int) -> None:
    from mfd.report.build import build
    from mfd.report.exports import Exports
    from mfd.report.summary import summary_text
    path = os.path.join(folder, "bench-day.db")
    real, _ = real_snapshots()
    walk = synth.random_walk(5)
    template = real(0)
    t0 = time.perf_counter()
    rec = Recorder(path, interval=1.0)
    for i in range(n):   # this machine's layout, counts drifting like a real day's
        snap = synth.snapshot(1.7e9 + i, walk, nodes=len(template.nodes),
                              zones=[z.zone for z in template.nodes[0].zones],
                              populated=sum(1 for z in template.nodes[0].zones if z.populated))
        rec.emit(Frame(Sample(snapshot=snap, interval=1.0, seq=i)))
    size = db_bytes(rec)
    rec.close()
    print(f"\nreport on {n} samples of 1 s ({n / 86400:.2f} day) of this machine's layout: "
          f"file {size / 1e6:.1f} MB, written in {time.perf_counter() - t0:.0f} s")

    def summary():
        with History(path) as h:
            summary_text(build(h))

    def charts():
        from mfd.report import plots
        with History(path) as h:
            plots.render_png(build(h, charts=True))

    def export(kind):
        def go():
            with History(path) as h:
                ex = Exports(os.devnull if kind == "csv" else None,
                             os.devnull if kind == "json" else None)
                try:
                    build(h, sink=ex)
                finally:
                    ex.close()
        return go

    cases = [("summary", summary), ("summary + charts (PNG)", charts),
             ("--csv export", export("csv")), ("--json export", export("json"))]
    for name, fn in cases:
        print(f"  {name:<26} median {timed(fn, repeat):6.1f} s over {repeat} runs")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=2000, help="samples per recording case")
    p.add_argument("--day", type=int, default=86400, help="samples for the report bench (0: skip it)")
    p.add_argument("--repeat", type=int, default=3, help="runs per report case")
    p.add_argument("--dir", default=tempfile.gettempdir(), help="where the files go")
    args = p.parse_args()
    bench_recording(args.dir, args.samples)
    if args.day > 0:  # --day 0: the recording cost alone
        bench_report(args.dir, args.day, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
