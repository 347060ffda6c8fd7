"""The three event groups: what each compiles, attaches and reports per interval.

Each group owns one program in bpf/ and turns its maps into the JSON-able dict
that becomes ``Sample.events[<group>]`` (see mfd.model.Sample).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from ..errors import KernelUnsupported, UsageError
from . import kernel
from .maps import HashDrain, PerCpuTotals, comm, log2_hist, scalar
from .vmstat import VmstatDelta

# Cumulative per-process counts are kept in user space; past this many keys
# the ones not seen for longest are forgotten (short-lived processes pile up).
MAX_CUMULATIVE_KEYS = 20000


@dataclass
class PollContext:
    """What every group needs to turn one interval's maps into rows."""

    elapsed: float                                   # seconds since the last poll
    zones: Dict[int, Tuple[int, str]] = field(default_factory=dict)  # zone_start_pfn -> (node, name)
    zone_names: Dict[Tuple[int, int], str] = field(default_factory=dict)  # (node, zone_idx) -> name
    node: Optional[int] = None                       # -i
    zone: Optional[str] = None                       # -c (any case)

    def rate(self, n: int) -> float:
        return round(n / self.elapsed, 3) if self.elapsed > 0 else 0.0

    def wants(self, node: Optional[int], zone: Optional[str] = None) -> bool:
        """Does a row for (node, zone) pass -i/-c?  zone None: a node-only row."""
        if self.node is not None and node != self.node:
            return False
        if self.zone is not None and zone is not None and zone.lower() != self.zone.lower():
            return False
        return True


class Group:
    name = ""
    program = ""

    def defines(self) -> Dict[str, object]:
        return {}

    def attach(self, bpf) -> None:
        """Attach what BCC does not attach by itself (TRACEPOINT_PROBEs it does)."""

    def bind(self, bpf) -> None:
        raise NotImplementedError

    def poll(self, ctx: PollContext) -> dict:
        raise NotImplementedError


class ExtfragGroup(Group):
    """kmem:mm_page_alloc_extfrag per process, orders and migratetypes."""

    name, program = "extfrag", "extfrag.bpf.c"

    def __init__(self, btf):
        self.migratetypes = kernel.migratetype_names(btf)
        self._cumulative: Dict[tuple, List[int]] = {}   # key -> [events, last poll seen]
        self._total = 0
        self._polls = 0

    def bind(self, bpf) -> None:
        self._drain = HashDrain(bpf[b"extfrag_counts"])
        self._dropped = PerCpuTotals(bpf[b"extfrag_dropped"])

    def _mt(self, value: int) -> str:
        return self.migratetypes.get(value, f"type {value}")

    def poll(self, ctx: PollContext) -> dict:
        self._polls += 1
        rows = []
        for k, v in self._drain():
            key = (k.pid, comm(k.comm), k.alloc_order, k.fallback_order,
                   k.alloc_migratetype, k.fallback_migratetype)
            cum = self._cumulative.setdefault(key, [0, 0])
            cum[0] += v.events
            cum[1] = self._polls
            rows.append({"pid": key[0], "comm": key[1], "alloc_order": key[2],
                         "fallback_order": key[3], "alloc_migratetype": self._mt(key[4]),
                         "fallback_migratetype": self._mt(key[5]), "events": v.events,
                         "change_ownership": v.change_ownership, "cumulative": cum[0],
                         "rate": ctx.rate(v.events)})
        self._forget_oldest()
        rows.sort(key=lambda r: (-r["events"], -r["cumulative"], r["pid"]))
        events = sum(r["events"] for r in rows)
        self._total += events
        return {"events": events, "change_ownership": sum(r["change_ownership"] for r in rows),
                "cumulative": self._total, "rate": ctx.rate(events),
                "dropped": scalar(self._dropped.delta()), "by_process": rows}

    def _forget_oldest(self) -> None:
        if len(self._cumulative) > MAX_CUMULATIVE_KEYS:
            keep = sorted(self._cumulative.items(), key=lambda kv: kv[1][1])
            self._cumulative = dict(keep[len(keep) - MAX_CUMULATIVE_KEYS // 2:])


class AllocGroup(Group):
    """The allocator's entry: kprobe/kretprobe when the kernel has kprobes,
    else the kmem:mm_page_alloc tracepoint."""

    name, program = "alloc", "alloc.bpf.c"
    PROBES = ("auto", "kprobe", "tracepoint")

    def __init__(self, nr_orders: int, want: str = "auto",
                 note: Callable[[str], None] = lambda msg: None,
                 function: Optional[str] = None):
        """``function``: probe this one, unchecked (tests; kernels that name
        the entry otherwise); by default the newest ALLOC_ENTRY_CANDIDATES."""
        if want not in self.PROBES:
            raise UsageError(f"unknown allocator probe {want!r} "
                             f"(valid: {', '.join(self.PROBES)})")
        self.nr_orders = nr_orders
        self.function = function if want != "tracepoint" else None
        if not self.function and want != "tracepoint" and kernel.kprobes_available():
            self.function = kernel.alloc_entry()
        if self.function:
            self.probe = "kprobe"
            note(f"allocator probes: kprobe and kretprobe on {self.function} "
                 "(per-order latency histograms)")
        elif want == "kprobe":
            raise KernelUnsupported(
                "no kprobes for the allocator probes: " +
                ("no kprobe PMU (kernel without CONFIG_KPROBES)" if not kernel.kprobes_available()
                 else "none of %s in /proc/kallsyms" % ", ".join(kernel.ALLOC_ENTRY_CANDIDATES)) +
                "; use --alloc-probe tracepoint")
        else:
            self.probe = "tracepoint"
            why = ("kernel without CONFIG_KPROBES" if not kernel.kprobes_available()
                   else "asked for" if want == "tracepoint" else "no allocator entry in /proc/kallsyms")
            note(f"allocator probes: kmem:mm_page_alloc tracepoint ({why}): "
                 "per-order counts and failures, no latency")

    def defines(self) -> Dict[str, object]:
        return {"MFD_ALLOC_KPROBE": int(self.probe == "kprobe")}

    def attach(self, bpf) -> None:
        if self.probe == "kprobe":
            bpf.attach_kprobe(event=self.function.encode(), fn_name=b"mfd_alloc_entry")
            bpf.attach_kretprobe(event=self.function.encode(), fn_name=b"mfd_alloc_return")

    def bind(self, bpf) -> None:
        self._stats = PerCpuTotals(bpf[b"alloc_stats"])
        self._failures = HashDrain(bpf[b"alloc_failures"])

    def poll(self, ctx: PollContext) -> dict:
        s = self._stats.delta()
        latency = self.probe == "kprobe"
        slots = len(s.hist) // self.nr_orders      # MFD_HIST_SLOTS
        by_order = []
        for o in range(self.nr_orders):
            allocs, failures = s.allocs[o], s.failures[o]
            if not (allocs or failures):
                continue
            row = {"order": o, "allocs": allocs, "failures": failures, "rate": ctx.rate(allocs)}
            if latency:
                calls = allocs + failures
                row["latency_ns"] = s.latency_ns[o]
                row["avg_ns"] = round(s.latency_ns[o] / calls) if calls else 0
                row["hist_ns"] = log2_hist(s.hist[o * slots:(o + 1) * slots])
            by_order.append(row)
        by_process = sorted(({"pid": k.pid, "comm": comm(k.comm), "order": k.order,
                              "failures": scalar(v)} for k, v in self._failures()),
                            key=lambda r: (-r["failures"], r["pid"], r["order"]))
        allocs = sum(r["allocs"] for r in by_order)
        return {"probe": self.probe, "function": self.function, "allocs": allocs,
                "failures": sum(r["failures"] for r in by_order), "rate": ctx.rate(allocs),
                "dropped": s.dropped, "by_order": by_order,
                "failures_by_process": by_process}


class CompactionGroup(Group):
    """Compaction runs per zone, direct compaction per process, kcompactd
    wake-ups, and the compact_* counters of /proc/vmstat."""

    name, program = "compaction", "compaction.bpf.c"

    def __init__(self, btf):
        self.status_names = kernel.compact_result_names(btf)
        fields = kernel.tracepoint_fields("compaction", "mm_compaction_kcompactd_wake")
        # highest_zoneidx since 5.8 (see bpf/compaction.bpf.c), classzone_idx before.
        self.zoneidx_field = "classzone_idx" if "classzone_idx" in fields else "highest_zoneidx"
        self.vmstat = VmstatDelta(("compact_",))

    def defines(self) -> Dict[str, object]:
        return {"MFD_KCOMPACTD_ZONEIDX": self.zoneidx_field}

    def bind(self, bpf) -> None:
        self._begins = HashDrain(bpf[b"compact_begins"])
        self._runs = HashDrain(bpf[b"compact_runs"])
        self._direct = HashDrain(bpf[b"direct_compact"])
        self._wakes = HashDrain(bpf[b"kcompactd_wakes"])
        self._counts = PerCpuTotals(bpf[b"compact_counts"])

    def _zone(self, ctx: PollContext, zone_start: int) -> Tuple[Optional[int], str]:
        return ctx.zones.get(zone_start, (None, "pfn %#x" % zone_start))

    def poll(self, ctx: PollContext) -> dict:
        zones: Dict[int, dict] = {}

        def row(zone_start: int) -> dict:
            if zone_start not in zones:
                node, name = self._zone(ctx, zone_start)
                zones[zone_start] = {"node": node, "zone": name, "begin": 0, "runs": 0,
                                     "duration_ns": 0, "max_ns": 0, "status": {}}
            return zones[zone_start]

        for k, v in self._begins():
            row(scalar(k))["begin"] += scalar(v)
        for k, v in self._runs():
            r = row(k.zone_start)
            r["runs"] += v.runs
            r["duration_ns"] += v.total_ns
            r["max_ns"] = max(r["max_ns"], v.max_ns)
            status = self.status_names.get(k.status, str(k.status))
            r["status"][status] = r["status"].get(status, 0) + v.runs
        by_zone = sorted((r for r in zones.values() if ctx.wants(r["node"], r["zone"])),
                         key=lambda r: (r["node"] if r["node"] is not None else -1, r["zone"]))

        direct = []
        for k, v in self._direct():
            direct.append({"pid": k.pid, "comm": comm(k.comm), "order": k.order,
                           "count": v.count, "stall_ns": v.stall_ns,
                           "hist_us": log2_hist(v.hist)})
        direct.sort(key=lambda r: (-r["count"], -r["stall_ns"], r["pid"]))

        wakes = []
        for k, v in self._wakes():
            if not ctx.wants(k.nid):
                continue
            wakes.append({"node": k.nid, "order": k.order,
                          "highest_zone": ctx.zone_names.get((k.nid, k.highest_zoneidx),
                                                             str(k.highest_zoneidx)),
                          "wakes": scalar(v)})
        wakes.sort(key=lambda r: (r["node"], r["order"]))
        counts = self._counts.delta()
        return {"begin": sum(r["begin"] for r in by_zone),
                "end": sum(r["runs"] for r in by_zone),
                "by_zone": by_zone,
                "direct": direct,
                "direct_stalls": sum(r["count"] for r in direct),
                "kcompactd_wake": sum(r["wakes"] for r in wakes),
                "kcompactd": wakes,
                "unmatched_end": counts.unmatched_end,
                "dropped": counts.dropped,
                "vmstat": self.vmstat.delta()}
