"""The extfrag group: kmem:mm_page_alloc_extfrag per process, with orders and
migratetypes (bpf/extfrag.bpf.c).  The event fires when the allocator falls
back to another migratetype's free list (a steal); change_ownership when it
takes the whole pageblock over."""
from __future__ import annotations

from typing import Dict, List

from ...kernel.facts import migratetype_names
from ...model import ExtfragResult, ExtfragRow
from .base import Group, PollContext
from .maps import HashDrain, PerCpuTotals, cgroup_name, comm, scalar

# Cumulative per-process counts are kept in user space; past this many keys
# the ones not seen for longest are forgotten (short-lived processes pile up).
MAX_CUMULATIVE_KEYS = 20000


class ExtfragGroup(Group):
    name, program = ExtfragResult.NAME, "extfrag.bpf.c"

    def __init__(self, btf, cgroups=None, **_):
        self.migratetypes = migratetype_names(btf)
        self.cgroups = cgroups
        self._cumulative: Dict[tuple, List[int]] = {}   # key -> [events, last poll seen]
        self._total = 0
        self._polls = 0

    def tracepoints(self):
        return [("kmem", "mm_page_alloc_extfrag")]

    def bind(self, program) -> None:
        self._drain = HashDrain(program["extfrag_counts"])
        self._dropped = PerCpuTotals(program["extfrag_dropped"])

    def _mt(self, value: int) -> str:
        return self.migratetypes.get(value, f"type {value}")

    def poll(self, ctx: PollContext) -> ExtfragResult:
        self._polls += 1
        rows = []
        for k, v in self._drain():
            key = (k.pid, comm(k.comm), k.alloc_order, k.fallback_order,
                   k.alloc_migratetype, k.fallback_migratetype, k.cgroup)
            cum = self._cumulative.setdefault(key, [0, 0])
            cum[0] += v.events
            cum[1] = self._polls
            rows.append(ExtfragRow(pid=key[0], comm=key[1], alloc_order=key[2],
                                   fallback_order=key[3], alloc_migratetype=self._mt(key[4]),
                                   fallback_migratetype=self._mt(key[5]), events=v.events,
                                   change_ownership=v.change_ownership, cumulative=cum[0],
                                   rate=ctx.rate(v.events), cgroup=cgroup_name(self.cgroups,
                                                                               k.cgroup)))
        self._forget_oldest()
        rows.sort(key=lambda r: (-r.events, -r.cumulative, r.pid))
        events = sum(r.events for r in rows)
        self._total += events
        return ExtfragResult(events=events,
                             change_ownership=sum(r.change_ownership for r in rows),
                             cumulative=self._total, rate=ctx.rate(events),
                             dropped=scalar(self._dropped.delta()), by_process=tuple(rows))

    def _forget_oldest(self) -> None:
        if len(self._cumulative) > MAX_CUMULATIVE_KEYS:
            keep = sorted(self._cumulative.items(), key=lambda kv: kv[1][1])
            self._cumulative = dict(keep[len(keep) - MAX_CUMULATIVE_KEYS // 2:])
