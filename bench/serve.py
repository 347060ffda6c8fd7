#!/usr/bin/env python3
"""The exporter at one scrape per second, beside node_exporter in the same run.

`mfd serve --events all` (every event group, or --events GROUPS; on a kernel without kprobes the
alloc group takes the tracepoint) and Debian's prometheus-node-exporter with
only its buddyinfo and zoneinfo collectors run side by side on loopback.
Once a second each is scraped, alternately first, over a fresh connection,
as Prometheus would: the wall time of each GET /metrics (connect to last
byte), and the on-CPU time of each exporter's process (all threads, from
/proc/PID/task/*/schedstat) over each one-second tick, which is what one
scrape a second costs it.  mfd's RSS (VmRSS) is read every --rss-every
seconds: first, last, highest, and the slope of a least-squares line
(MiB per hour; flat is the goal).  Medians, and the ratios mfd/node_exporter.

With --load, the page-table workload (tests/workloads.py steal) runs the
whole time, so that extfrag and compaction events flow into the counters.

Run as root:  sudo .venv/bin/python bench/serve.py [--seconds 60] [--load]
One hour:     sudo .venv/bin/python bench/serve.py --seconds 3600
"""
from __future__ import annotations

import argparse
import http.client
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import WORKLOADS, cpu_seconds, median  # noqa: E402
import fleet  # noqa: E402  (tests/fleet.py: the exporters on loopback)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        kb = int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M)[1])
    return kb / 1024


def scrape(port: int) -> (float, bytes):
    """Seconds for one GET /metrics over a new connection, and the body."""
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/metrics")
        body = c.getresponse().read()
    finally:
        c.close()
    return time.perf_counter() - t0, body


def slope_per_hour(points) -> float:
    """MiB/hour of the least-squares line through (seconds, MiB) points."""
    if len(points) < 2:
        return 0.0
    xs, ys = zip(*points)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 3600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=60, help="scraping time (default 60)")
    p.add_argument("--warmup", type=int, default=5, help="scrapes of each before measuring")
    p.add_argument("--rss-every", type=float, default=10.0, help="seconds between RSS reads")
    p.add_argument("--load", action="store_true", help="run the page-table workload meanwhile")
    p.add_argument("--events", default="all", help="mfd serve --events (default all)")
    a = p.parse_args()
    if os.geteuid() != 0:
        print("bench/serve.py: needs root (mfd serve --events all)", file=sys.stderr)
        return 1
    mfd = fleet.start_mfd("--events", a.events)
    node = fleet.start_node_exporter()
    load = None
    try:
        for _ in range(a.warmup):
            scrape(mfd.port)
            scrape(node.port)
        assert a.events == "none" or b"mfd_event_drops_total" in scrape(mfd.port)[1]
        assert b"node_buddyinfo_blocks" in scrape(node.port)[1]
        if a.load:
            load = subprocess.Popen([sys.executable, WORKLOADS, "steal", "--seconds",
                                     str(a.seconds + 10)], stdout=subprocess.DEVNULL)
        lat = {"mfd": [], "node": []}
        cpu = {"mfd": [], "node": []}
        snap = []
        rss = []
        procs = {"mfd": mfd, "node": node}
        start = time.monotonic()
        prev = {k: cpu_seconds(s.pid) for k, s in procs.items()}
        next_rss = start
        for tick in range(a.seconds):
            order = ("mfd", "node") if tick % 2 == 0 else ("node", "mfd")
            for k in order:
                took, body = scrape(procs[k].port)
                lat[k].append(took)
                if k == "mfd":
                    m = re.search(rb"^mfd_snapshot_duration_seconds (\S+)", body, re.M)
                    snap.append(float(m[1]))
            now = time.monotonic()
            if now >= next_rss:
                rss.append((now - start, rss_mib(mfd.pid)))
                next_rss += a.rss_every
            time.sleep(max(0.0, start + tick + 1 - time.monotonic()))
            for k, s in procs.items():
                c = cpu_seconds(s.pid)
                cpu[k].append(c - prev[k])
                prev[k] = c
        rss.append((time.monotonic() - start, rss_mib(mfd.pid)))
        events = scrape(mfd.port)[1]
        series = {k: sum(1 for line in scrape(s.port)[1].splitlines()
                         if line and not line.startswith(b"#")) for k, s in procs.items()}
    finally:
        if load is not None:
            load.terminate()
            load.wait()
        mfd.stop()
        node.stop()
    fallbacks = sum(float(v) for v in re.findall(rb"^mfd_extfrag_fallbacks_total\{.*\} (\S+)",
                                                  events, re.M))
    ms = {k: median(v) * 1e3 for k, v in lat.items()}
    cms = {k: median(v) * 1e3 for k, v in cpu.items()}
    print(f"mfd serve --events {a.events}: {a.seconds} scrapes of each, one a second"
          f"{' under load' if a.load else ''}; "
          f"{fallbacks:.0f} extfrag fallbacks counted by mfd; series per scrape: mfd "
          f"{series['mfd']}, node_exporter {series['node']}")
    print(f"scrape latency median: mfd {ms['mfd']:.2f} ms, node_exporter {ms['node']:.2f} ms, "
          f"ratio {ms['mfd'] / ms['node']:.2f}")
    print(f"exporter CPU per second (one scrape): mfd {cms['mfd']:.2f} ms, node_exporter "
          f"{cms['node']:.2f} ms, ratio {cms['mfd'] / cms['node']:.2f}")
    print(f"mfd snapshot + event read per scrape: median {median(snap) * 1e3:.2f} ms")
    first, last = rss[0][1], rss[-1][1]
    print(f"mfd RSS: first {first:.1f} MiB, last {last:.1f} MiB, max {max(r for _, r in rss):.1f} "
          f"MiB, slope {slope_per_hour(rss):+.1f} MiB/h over {rss[-1][0]:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
