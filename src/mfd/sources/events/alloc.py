"""The alloc group: the buddy allocator's entry (bpf/alloc.bpf.c), counts and
failures per order.  With kprobes, a kprobe/kretprobe pair on the entry adds
latency histograms; without, the kmem:mm_page_alloc tracepoint counts.  The
only group on the allocator's hot path: it costs, and runs only when asked."""
from __future__ import annotations

from typing import Callable, Dict, Optional

from ...errors import KernelUnsupported, UsageError
from ...kernel.facts import ALLOC_ENTRY_CANDIDATES, alloc_entry, kprobes_available
from ...model import AllocFailure, AllocOrder, AllocResult
from .base import Group, PollContext
from .maps import HashDrain, PerCpuTotals, comm, log2_hist, scalar

PROBES = ("auto", "kprobe", "tracepoint")


class AllocGroup(Group):
    name, program = AllocResult.NAME, "alloc.bpf.c"
    PROBES = PROBES

    def __init__(self, btf=None, nr_orders: int = 11, alloc_probe: str = "auto",
                 note: Callable[[str], None] = lambda msg: None,
                 alloc_function: Optional[str] = None, **_):
        """``alloc_function``: probe this one, unchecked (tests; kernels that name
        the entry otherwise); by default the newest ALLOC_ENTRY_CANDIDATES."""
        want = alloc_probe
        if want not in PROBES:
            raise UsageError(f"unknown allocator probe {want!r} "
                             f"(valid: {', '.join(PROBES)})")
        self.nr_orders = nr_orders
        self.function = alloc_function if want != "tracepoint" else None
        if not self.function and want != "tracepoint" and kprobes_available():
            self.function = alloc_entry()
        if self.function:
            self.probe = "kprobe"
            note(f"allocator probes: kprobe and kretprobe on {self.function} "
                 "(per-order latency histograms)")
        elif want == "kprobe":
            raise KernelUnsupported(
                "no kprobes for the allocator probes: " +
                ("no kprobe PMU (kernel without CONFIG_KPROBES)" if not kprobes_available()
                 else "none of %s in /proc/kallsyms" % ", ".join(ALLOC_ENTRY_CANDIDATES)) +
                "; use --alloc-probe tracepoint")
        else:
            self.probe = "tracepoint"
            why = ("kernel without CONFIG_KPROBES" if not kprobes_available()
                   else "asked for" if want == "tracepoint" else "no allocator entry in /proc/kallsyms")
            note(f"allocator probes: kmem:mm_page_alloc tracepoint ({why}): "
                 "per-order counts and failures, no latency")

    def tracepoints(self):
        return [("kmem", "mm_page_alloc")] if self.probe == "tracepoint" else []

    def defines(self) -> Dict[str, object]:
        return {"MFD_ALLOC_KPROBE": int(self.probe == "kprobe")}

    def kprobes(self):
        if self.probe != "kprobe":
            return []
        return [("kprobe", self.function, "mfd_alloc_entry"),
                ("kretprobe", self.function, "mfd_alloc_return")]

    def bind(self, program) -> None:
        self._stats = PerCpuTotals(program["alloc_stats"])
        self._failures = HashDrain(program["alloc_failures"])

    def poll(self, ctx: PollContext) -> AllocResult:
        s = self._stats.delta()
        latency = self.probe == "kprobe"
        slots = len(s.hist) // self.nr_orders      # MFD_HIST_SLOTS
        by_order = []
        for o in range(self.nr_orders):
            allocs, failures = s.allocs[o], s.failures[o]
            if not (allocs or failures):
                continue
            extra = {}
            if latency:
                calls = allocs + failures
                extra = dict(latency_ns=s.latency_ns[o],
                             avg_ns=round(s.latency_ns[o] / calls) if calls else 0,
                             hist_ns=log2_hist(s.hist[o * slots:(o + 1) * slots]))
            by_order.append(AllocOrder(order=o, allocs=allocs, failures=failures,
                                       rate=ctx.rate(allocs), **extra))
        by_process = sorted((AllocFailure(pid=k.pid, comm=comm(k.comm), order=k.order,
                                          failures=scalar(v)) for k, v in self._failures()),
                            key=lambda r: (-r.failures, r.pid, r.order))
        allocs = sum(r.allocs for r in by_order)
        return AllocResult(probe=self.probe, function=self.function, allocs=allocs,
                           failures=sum(r.failures for r in by_order), rate=ctx.rate(allocs),
                           dropped=s.dropped, by_order=tuple(by_order),
                           failures_by_process=tuple(by_process))
