"""The extfrag group: kmem:mm_page_alloc_extfrag per process, with orders and
migratetypes (bpf/extfrag.bpf.c).  The event fires when the allocator falls
back to another migratetype's free list (a steal); change_ownership when it
takes the whole pageblock over."""
from __future__ import annotations

import bisect
from typing import Dict, List, Tuple

from ...kernel.facts import migratetype_names, pageblock_order_guess
from ...model import ExtfragResult, ExtfragRow
from ...model.events import ExtfragZone
from .base import Group, PollContext
from .maps import HashDrain, PerCpuTotals, cgroup_name, comm, scalar

# Cumulative per-process counts are kept in user space; past this many keys
# the ones not seen for longest are forgotten (short-lived processes pile up).
MAX_CUMULATIVE_KEYS = 20000


# The pageblock hash is drained every interval: this many distinct pageblocks
# polluted or converted in one interval (128 GiB of 2 MiB blocks) before
# events go uncounted (pageblocks_dropped).
MAX_INTERVAL_PAGEBLOCKS = 65536


class ExtfragGroup(Group):
    name, program = ExtfragResult.NAME, "extfrag.bpf.c"
    needs_zones = True           # a pageblock's zone, from the zones' spans

    def __init__(self, btf, cgroups=None, pageblock_order=None, **_):
        # the event has no pageblock_order; pagetypeinfo prints it, but is
        # too costly to read at every start (see sources/pagetypeinfo.py):
        # mfd map, which reads it anyway, passes it
        self.pageblock_order = pageblock_order or pageblock_order_guess()
        # the last poll's pageblocks: number -> events (mfd map --events)
        self.polluted: Dict[int, int] = {}
        self.converted: Dict[int, int] = {}
        self.migratetypes = migratetype_names(btf)
        self.cgroups = cgroups
        self._cumulative: Dict[tuple, List[int]] = {}   # key -> [events, last poll seen]
        self._total = 0
        self._polls = 0

    def tracepoints(self):
        return [("kmem", "mm_page_alloc_extfrag")]

    def defines(self):
        return {"MFD_PAGEBLOCK_ORDER": self.pageblock_order,
                "MFD_EXTFRAG_PAGEBLOCKS": MAX_INTERVAL_PAGEBLOCKS}

    def bind(self, program) -> None:
        self._drain = HashDrain(program["extfrag_counts"])
        self._dropped = PerCpuTotals(program["extfrag_dropped"])
        self._blocks = HashDrain(program["extfrag_pageblocks"])
        self._blocks_dropped = PerCpuTotals(program["extfrag_pageblocks_dropped"])

    def _pageblocks(self, ctx: PollContext) -> tuple:
        """The interval's polluted and converted pageblocks, per zone (the
        zone whose span holds the block's first pfn; -i/-c apply)."""
        starts = [s[0] for s in ctx.spans]
        counts: Dict[Tuple[int, str], List[int]] = {}
        self.polluted, self.converted = {}, {}
        for block, v in self._blocks():
            block = scalar(block)
            if v.polluted:
                self.polluted[block] = v.polluted
            if v.converted:
                self.converted[block] = v.converted
            pfn = block << self.pageblock_order
            i = bisect.bisect_right(starts, pfn) - 1
            if i < 0 or pfn >= ctx.spans[i][1]:
                continue                    # a zone added since the snapshot
            _s, _e, node, zone = ctx.spans[i]
            if not ctx.filter.wants(node, zone):
                continue
            c = counts.setdefault((node, zone), [0, 0])
            c[0] += v.polluted > 0
            c[1] += v.converted > 0
        return tuple(ExtfragZone(node=n, zone=z, polluted=p, converted=c)
                     for (n, z), (p, c) in sorted(counts.items()))

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
                             dropped=scalar(self._dropped.delta()),
                             by_process=tuple(rows), pageblocks=self._pageblocks(ctx),
                             pageblocks_dropped=scalar(self._blocks_dropped.delta()))

    def _forget_oldest(self) -> None:
        if len(self._cumulative) > MAX_CUMULATIVE_KEYS:
            keep = sorted(self._cumulative.items(), key=lambda kv: kv[1][1])
            self._cumulative = dict(keep[len(keep) - MAX_CUMULATIVE_KEYS // 2:])
