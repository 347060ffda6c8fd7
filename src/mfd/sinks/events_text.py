"""Text tables of one interval's events (a typed mfd.model.Events).

Default output stays under 80 columns for short command names; long lists
are cut at MAX_ROWS rows with a line saying how many were left out.
"""
from __future__ import annotations

import textwrap
import time
from typing import Dict, List, Sequence

from ..model import (AllocResult, CompactionResult, Events, ExtfragResult, Filter,
                     GroupResult, HistBucket)
from ..term import one_line
from .table import table

MAX_ROWS = 20
HIST_WIDTH = 40


def _rate(x: float) -> str:
    return "%.1f" % x


def _ms(ns: int) -> str:
    return "%.2f" % (ns / 1e6)


def _cut(rows: List[list], what: str) -> tuple:
    if len(rows) <= MAX_ROWS:
        return rows, ""
    return rows[:MAX_ROWS], f"({len(rows) - MAX_ROWS} more {what} not shown; --json has all)"


def _lines(*parts: str) -> str:
    return "\n".join(p for p in parts if p)


def log2_hist_text(buckets: Sequence[HistBucket], unit: str) -> str:
    """bcc's print_log2_hist layout, from log2_hist() buckets (non-empty only)."""
    if not buckets:
        return ""
    by_lo = {b.lo: b for b in buckets}
    first = min(b.hi for b in buckets).bit_length()
    last = max(b.hi for b in buckets).bit_length()
    top = max(b.count for b in buckets)
    lines = ["%20s : count     distribution" % unit]
    for s in range(first, last + 1):
        lo, hi = (1 << s) >> 1, (1 << s) - 1
        n = by_lo[lo].count if lo in by_lo else 0
        stars = int(round(n * HIST_WIDTH / top)) if top else 0
        lines.append("%10d -> %-10d : %-8d |%-*s|" % (lo, hi, n, HIST_WIDTH, "*" * stars))
    return "\n".join(lines)


def merge_buckets(lists: Sequence[Sequence[HistBucket]]) -> List[HistBucket]:
    acc: Dict[int, List[int]] = {}
    for buckets in lists:
        for b in buckets:
            slot = acc.setdefault(b.lo, [b.hi, 0])
            slot[1] += b.count
    return [HistBucket(lo, acc[lo][0], acc[lo][1]) for lo in sorted(acc)]


def _per_cgroup(rows, counts: Sequence[str]) -> List[list]:
    """``rows`` summed per cgroup, busiest first: [cgroup, count...]."""
    acc: Dict[str, List[float]] = {}
    for r in rows:
        slot = acc.setdefault(r.cgroup, [0] * len(counts))
        for i, name in enumerate(counts):
            slot[i] += getattr(r, name)
    return [[cg, *vals] for cg, vals in sorted(acc.items(), key=lambda kv: (-kv[1][0], kv[0]))]


def extfrag_text(ev: ExtfragResult, flt: Filter = Filter(), by: str = "process") -> str:
    head = (f"extfrag: {ev.events} fallbacks ({_rate(ev.rate)}/s), "
            f"{ev.change_ownership} took over their pageblock; {ev.cumulative} since start")
    if ev.dropped:
        head += f"; {ev.dropped} not counted (map full)"
    if ev.pageblocks:
        head += "\n  pageblocks polluted/converted: " + ", ".join(
            f"node {z.node} {one_line(z.zone)} {z.polluted}/{z.converted}" for z in ev.pageblocks)
        if ev.pageblocks_dropped:
            head += f" ({ev.pageblocks_dropped} events not bucketed: map full)"
    if not ev.by_process:
        return head
    if by == "cgroup":
        rows, more = _cut(_per_cgroup(ev.by_process, ("events", "change_ownership",
                                                      "cumulative")), "cgroups")
        return _lines(head, table(rows, ["CGROUP", "EVENTS", "STEALS", "TOTAL"]), more)
    rows = [[r.pid, r.comm, f"{r.alloc_order} {r.alloc_migratetype}",
             f"{r.fallback_order} {r.fallback_migratetype}", r.events,
             r.change_ownership, r.cumulative, _rate(r.rate)] for r in ev.by_process]
    rows, more = _cut(rows, "rows")
    return _lines(head, table(rows, ["PID", "COMM", "ALLOC", "FALLBACK", "EVENTS", "STEALS",
                                     "TOTAL", "RATE/s"]), more)


def alloc_text(ev: AllocResult, flt: Filter = Filter()) -> str:
    how = (f"kprobe {ev.function}" if ev.probe == "kprobe"
           else "tracepoint kmem:mm_page_alloc, no latency")
    head = (f"alloc ({how}): {ev.allocs} allocations ({_rate(ev.rate)}/s), "
            f"{ev.failures} failed")
    latency = ev.probe == "kprobe"
    headers = ["ORDER", "ALLOCS", "FAILED", "RATE/s"] + (["AVG_NS"] if latency else [])
    rows = [[r.order, r.allocs, r.failures, _rate(r.rate)] +
            ([r.avg_ns] if latency else []) for r in ev.by_order]
    parts = [head, table(rows, headers) if rows else ""]
    if latency:
        for r in ev.by_order:
            if r.hist_ns:
                parts.append(f"order {r.order} allocation latency\n" +
                             log2_hist_text(r.hist_ns, "nsecs"))
    if ev.failures_by_process:
        frows = [[r.pid, r.comm, r.order, r.failures]
                 for r in ev.failures_by_process]
        frows, more = _cut(frows, "rows")
        parts += ["failed allocations by process",
                  table(frows, ["PID", "COMM", "ORDER", "FAILED"]), more]
    return _lines(*parts)


def compaction_text(ev: CompactionResult, flt: Filter = Filter(), by: str = "process") -> str:
    where = flt.describe()
    head = (f"compaction{' (' + where + ')' if where else ''}: {ev.begin} runs begun, "
            f"{ev.end} ended, {ev.direct_stalls} direct; "
            f"kcompactd woken {ev.kcompactd_wake}")
    parts = [head]
    if ev.by_zone:
        rows = [[r.node if r.node is not None else "-", r.zone, r.begin, r.runs,
                 _ms(r.duration_ns), _ms(r.max_ns),
                 " ".join(f"{k}={v}" for k, v in sorted(r.status.items())) or "-"]
                for r in ev.by_zone]
        parts.append(table(rows, ["NODE", "ZONE", "BEGIN", "RUNS", "TIME_MS", "MAX_MS",
                                  "STATUS"]))
    elif where:
        parts.append(f"(no compaction run matches {where})")
    if ev.direct and by == "cgroup":
        rows, more = _cut([[cg, n, _ms(ns)] for cg, n, ns in
                           _per_cgroup(ev.direct, ("count", "stall_ns"))], "cgroups")
        parts += ["direct compaction", table(rows, ["CGROUP", "STALLS", "STALL_MS"]), more]
    elif ev.direct:
        rows = [[r.pid, r.comm, r.order, r.count, _ms(r.stall_ns)]
                for r in ev.direct]
        rows, more = _cut(rows, "rows")
        parts += ["direct compaction", table(rows, ["PID", "COMM", "ORDER", "STALLS",
                                                    "STALL_MS"]), more]
        hist = merge_buckets([r.hist_us for r in ev.direct])
        if hist:
            parts.append("direct compaction runs\n" + log2_hist_text(hist, "usecs"))
    if ev.kcompactd:
        parts.append("kcompactd woken: " + ", ".join(
            f"node {r.node} order {r.order} up to {r.highest_zone} x{r.wakes}"
            for r in ev.kcompactd))
    changed = [f"{k} +{v}" for k, v in ev.vmstat.items() if v]
    parts.append(textwrap.fill("vmstat: " + (", ".join(changed) if changed else "no change"),
                               width=79, subsequent_indent="  "))
    return _lines(*parts)


def events_header(when: float, interval: float) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
    return f"{stamp}  (events over {interval:.2f} s)"


def counts_text(ev: GroupResult, flt: Filter = Filter()) -> str:
    """A group without a table of its own: its counts on one line."""
    return textwrap.fill(f"{ev.NAME}: " + ", ".join(
        f"{k.split('.', 1)[1]} {v}" for k, v in ev.counts().items()), width=79,
        subsequent_indent="  ")


# The table of each event group; a group not listed gets counts_text.
TEXT = {ExtfragResult: extfrag_text, AllocResult: alloc_text, CompactionResult: compaction_text}


# Groups whose per-process rows carry a cgroup (-s --by cgroup sums them per cgroup).
BY_CGROUP = (ExtfragResult, CompactionResult)


def events_text(events: Events, by: str = "process") -> str:
    """Every loaded group's table, in the order the groups were loaded;
    ``by`` "cgroup": the per-process rows summed per cgroup."""
    return "\n\n".join(TEXT.get(type(r), counts_text)(r, events.filter,
                                                     **({"by": by} if type(r) in BY_CGROUP
                                                        else {}))
                       for r in events)
