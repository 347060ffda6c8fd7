"""The compaction group (bpf/compaction.bpf.c): compaction runs per zone,
direct compaction per process, kcompactd wake-ups, and the change of the
compact_* counters of /proc/vmstat."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

from ...kernel.facts import compact_result_names, tracepoint_fields
from ...model import CompactionResult, CompactionZone, DirectCompaction, KcompactdWake
from ..vmstat import VmstatDelta
from .base import Group, PollContext
from .maps import HashDrain, PerCpuTotals, cgroup_name, comm, log2_hist, scalar


class CompactionGroup(Group):
    name, program = CompactionResult.NAME, "compaction.bpf.c"
    needs_zones = True

    def __init__(self, btf, cgroups=None, **_):
        self.status_names = compact_result_names(btf)
        self.cgroups = cgroups
        fields = tracepoint_fields("compaction", "mm_compaction_kcompactd_wake")
        # highest_zoneidx since 5.8 (see bpf/compaction.bpf.c), classzone_idx before.
        self.zoneidx_field = "classzone_idx" if "classzone_idx" in fields else "highest_zoneidx"
        self.vmstat = VmstatDelta(("compact_",))

    def tracepoints(self):
        return [("compaction", e) for e in (
            "mm_compaction_begin", "mm_compaction_end",
            "mm_compaction_try_to_compact_pages", "mm_compaction_kcompactd_wake")]

    def defines(self) -> Dict[str, object]:
        return {"MFD_KCOMPACTD_ZONEIDX": self.zoneidx_field}

    def bind(self, program) -> None:
        self._begins = HashDrain(program["compact_begins"])
        self._runs = HashDrain(program["compact_runs"])
        self._direct = HashDrain(program["direct_compact"])
        self._direct_zones = HashDrain(program["direct_zones"])
        self._wakes = HashDrain(program["kcompactd_wakes"])
        self._counts = PerCpuTotals(program["compact_counts"])

    @staticmethod
    def _zone(ctx: PollContext, zone_start: int) -> Tuple[Optional[int], str]:
        return ctx.zones.get(zone_start, (None, "pfn %#x" % zone_start))

    def poll(self, ctx: PollContext) -> CompactionResult:
        zones: Dict[int, dict] = {}

        def row(zone_start: int) -> dict:
            if zone_start not in zones:
                node, name = self._zone(ctx, zone_start)
                zones[zone_start] = {"node": node, "zone": name, "begin": 0, "runs": 0,
                                     "duration_ns": 0, "max_ns": 0, "status": {},
                                     "direct_runs": 0, "direct_ns": 0}
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
        for k, v in self._direct_zones():
            r = row(scalar(k))
            r["direct_runs"] += v.runs
            r["direct_ns"] += v.stall_ns
        by_zone = sorted((CompactionZone(**r) for r in zones.values()
                          if ctx.filter.wants(r["node"], r["zone"])),
                         key=lambda r: (r.node if r.node is not None else -1, r.zone))

        direct = sorted((DirectCompaction(pid=k.pid, comm=comm(k.comm), order=k.order,
                                          count=v.count, stall_ns=v.stall_ns,
                                          hist_us=log2_hist(v.hist),
                                          cgroup=cgroup_name(self.cgroups, k.cgroup))
                         for k, v in self._direct()),
                        key=lambda r: (-r.count, -r.stall_ns, r.pid))

        wakes = sorted((KcompactdWake(node=k.nid, order=k.order,
                                      highest_zone=ctx.zone_names.get(
                                          (k.nid, k.highest_zoneidx), str(k.highest_zoneidx)),
                                      wakes=scalar(v))
                        for k, v in self._wakes() if ctx.filter.wants(k.nid)),
                       key=lambda r: (r.node, r.order))
        counts = self._counts.delta()
        return CompactionResult(begin=sum(r.begin for r in by_zone),
                                end=sum(r.runs for r in by_zone),
                                by_zone=tuple(by_zone), direct=tuple(direct),
                                direct_stalls=sum(r.count for r in direct),
                                kcompactd_wake=sum(r.wakes for r in wakes),
                                kcompactd=tuple(wakes), unmatched_end=counts.unmatched_end,
                                dropped=counts.dropped, vmstat=self.vmstat.delta())
