"""Event counters for Prometheus: each interval's events (mfd.model.Events)
added into counters that only grow over the exporter's life, with labels
from small fixed sets.

The kernel aggregates events in BPF maps between scrapes; a scrape drains
them once (mfd.sources.events) and this adds the interval here.  Per-process
rows are folded into bounded label sets: migratetypes, zones, statuses,
orders, and at most ``cgroup_cap`` cgroup paths (the first seen; the rest are
summed under ``other``, and a path once given a label keeps it, or its
counter would fall).
"""
from __future__ import annotations

from typing import Dict, Iterator, Optional, Sequence, Tuple

from ..model import Events, Filter, Snapshot

OTHER = "other"
NS = 1e9

# The migratetypes the allocator falls back between (mm/page_alloc.c
# fallbacks[]: the per-CPU list types only), spelled as BTF names them
# (mfd.kernel.facts.migratetype_names): their series exist from the start.
PCP_TYPES = ("Unmovable", "Movable", "Reclaimable")

# How a compact_zone() run that began can end (mm/compaction.c compact_zone():
# the __compact_finished() results, and CONTENDED from the migration loop;
# its earlier returns come before mm_compaction_begin), as the tracepoint
# spells them: their series exist from the start.
END_STATUSES = ("success", "complete", "partial_skipped", "contended")

# name -> (help, labels).  Counters are in base units (seconds) and end in _total.
SPECS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "mfd_extfrag_fallbacks_total": (
        "kmem:mm_page_alloc_extfrag events: allocations served from another migratetype's "
        "free list; kind takeover when the whole pageblock changed type (change_ownership), "
        "pollution when it kept its type",
        ("alloc_migratetype", "fallback_migratetype", "kind")),
    "mfd_compaction_runs_total": (
        "compact_zone() runs that ended (compaction:mm_compaction_end), by end status",
        ("node", "zone", "status")),
    "mfd_compaction_run_seconds_total": (
        "Time in compact_zone() runs (mm_compaction_begin to _end), every caller",
        ("node", "zone")),
    "mfd_direct_compaction_stalls_total": (
        "Allocations that entered direct compaction (compaction:"
        "mm_compaction_try_to_compact_pages, as try_to_compact_pages() starts; "
        "/proc/vmstat compact_stall counts only those not skipped)",
        ("order",)),
    "mfd_direct_compaction_runs_total": (
        "compact_zone() runs made by allocating tasks inside direct compaction",
        ("node", "zone")),
    "mfd_direct_compaction_seconds_total": (
        "Time allocating tasks spent compacting this zone in direct compaction",
        ("node", "zone")),
    "mfd_kcompactd_wakes_total": (
        "kcompactd wake-ups (compaction:mm_compaction_kcompactd_wake)", ("node",)),
    "mfd_page_allocations_total": (
        "Page allocations by order (the alloc group: on every allocation)", ("order",)),
    "mfd_page_allocation_failures_total": (
        "Page allocations that failed, by order (the alloc group)", ("order",)),
    "mfd_event_drops_total": (
        "Events not counted because a BPF map was full", ("group",)),
    "mfd_cgroup_extfrag_fallbacks_total": (
        "Extfrag fallbacks by the allocating task's cgroup v2 path (at most --cgroup-labels "
        "paths, the rest as other)", ("cgroup", "kind")),
    "mfd_cgroup_direct_compaction_stalls_total": (
        "Entries into direct compaction by the task's cgroup v2 path", ("cgroup",)),
    "mfd_cgroup_direct_compaction_seconds_total": (
        "Time in direct compaction by the task's cgroup v2 path", ("cgroup",)),
}
# Counted in nanoseconds here (exact), served in seconds.
_SECONDS = {"mfd_compaction_run_seconds_total", "mfd_direct_compaction_seconds_total",
            "mfd_cgroup_direct_compaction_seconds_total"}
# Which metrics each group feeds.
_BY_GROUP = {
    "extfrag": ("mfd_extfrag_fallbacks_total", "mfd_cgroup_extfrag_fallbacks_total"),
    "compaction": ("mfd_compaction_runs_total", "mfd_compaction_run_seconds_total",
                   "mfd_direct_compaction_stalls_total", "mfd_direct_compaction_runs_total",
                   "mfd_direct_compaction_seconds_total", "mfd_kcompactd_wakes_total",
                   "mfd_cgroup_direct_compaction_stalls_total",
                   "mfd_cgroup_direct_compaction_seconds_total"),
    "alloc": ("mfd_page_allocations_total", "mfd_page_allocation_failures_total"),
}


class EventCounters:
    """Counters over the process lifetime, fed one interval at a time.

    ``groups`` are the loaded event groups (only their metrics are served);
    ``cgroup_cap`` is how many cgroup paths get a label of their own (0: no
    per-cgroup metrics).  ``start(snapshot)`` creates the series that are
    known in advance at 0, so that rate() sees the first events too."""

    def __init__(self, groups: Sequence[str], cgroup_cap: int = 0):
        self.groups = tuple(groups)
        self.cgroup_cap = cgroup_cap
        self.names = [n for g in self.groups for n in _BY_GROUP.get(g, ())
                      if cgroup_cap or not n.startswith("mfd_cgroup_")] + ["mfd_event_drops_total"]
        self.values: Dict[str, Dict[Tuple[str, ...], int]] = {n: {} for n in self.names}
        self.cgroups: Dict[str, None] = {}      # the paths with a label, first seen first

    def _add(self, name: str, labels: Tuple[str, ...], n: int) -> None:
        series = self.values.get(name)
        if series is not None:
            series[labels] = series.get(labels, 0) + n

    def _cgroup(self, path: str) -> str:
        if path in self.cgroups:
            return path
        if len(self.cgroups) < self.cgroup_cap:
            self.cgroups[path] = None
            return path
        return OTHER

    def start(self, snapshot: Snapshot, flt: Filter = Filter()) -> None:
        """Every series known in advance at 0, so that rate() sees its first
        events: the zones -i/-c pass, the fallback pairs, the end statuses,
        the orders, and the cgroup "other" bucket."""
        zones = [(str(z.node), z.zone) for z in snapshot.zones()
                 if z.populated and flt.wants(z.node, z.zone)]
        orders = [str(o) for o in range(snapshot.nr_orders)]
        for g in self.groups:
            self._add("mfd_event_drops_total", (g,), 0)
        for a in PCP_TYPES:
            for f in PCP_TYPES:
                if a != f:
                    for kind in ("takeover", "pollution"):
                        self._add("mfd_extfrag_fallbacks_total", (a, f, kind), 0)
        for z in zones:
            for status in END_STATUSES:
                self._add("mfd_compaction_runs_total", z + (status,), 0)
            for name in ("mfd_compaction_run_seconds_total", "mfd_direct_compaction_runs_total",
                         "mfd_direct_compaction_seconds_total"):
                self._add(name, z, 0)
        for node in sorted({z[0] for z in zones}):
            self._add("mfd_kcompactd_wakes_total", (node,), 0)
        for o in orders:
            for name in ("mfd_direct_compaction_stalls_total", "mfd_page_allocations_total",
                         "mfd_page_allocation_failures_total"):
                self._add(name, (o,), 0)
        if self.cgroup_cap:
            for kind in ("takeover", "pollution"):
                self._add("mfd_cgroup_extfrag_fallbacks_total", (OTHER, kind), 0)
            for name in ("mfd_cgroup_direct_compaction_stalls_total",
                         "mfd_cgroup_direct_compaction_seconds_total"):
                self._add(name, (OTHER,), 0)

    def add(self, events: Optional[Events]) -> None:
        """One interval's events (None: nothing loaded)."""
        if events is None:
            return
        for result in events:
            self._add("mfd_event_drops_total", (result.NAME,), result.dropped)
            getattr(self, "_" + result.NAME)(result)

    def _extfrag(self, r) -> None:
        for row in r.by_process:
            pollution = row.events - row.change_ownership
            for kind, n in (("takeover", row.change_ownership), ("pollution", pollution)):
                self._add("mfd_extfrag_fallbacks_total",
                          (row.alloc_migratetype, row.fallback_migratetype, kind), n)
                if self.cgroup_cap and n:
                    self._add("mfd_cgroup_extfrag_fallbacks_total",
                              (self._cgroup(row.cgroup), kind), n)

    def _compaction(self, r) -> None:
        for z in r.by_zone:
            zl = ("" if z.node is None else str(z.node), z.zone)
            for status, n in z.status.items():
                self._add("mfd_compaction_runs_total", zl + (status,), n)
            self._add("mfd_compaction_run_seconds_total", zl, z.duration_ns)
            self._add("mfd_direct_compaction_runs_total", zl, z.direct_runs)
            self._add("mfd_direct_compaction_seconds_total", zl, z.direct_ns)
        for d in r.direct:
            self._add("mfd_direct_compaction_stalls_total", (str(d.order),), d.count)
            if self.cgroup_cap:
                cg = (self._cgroup(d.cgroup),)
                self._add("mfd_cgroup_direct_compaction_stalls_total", cg, d.count)
                self._add("mfd_cgroup_direct_compaction_seconds_total", cg, d.stall_ns)
        for w in r.kcompactd:
            self._add("mfd_kcompactd_wakes_total", (str(w.node),), w.wakes)

    def _alloc(self, r) -> None:
        for o in r.by_order:
            self._add("mfd_page_allocations_total", (str(o.order),), o.allocs)
            self._add("mfd_page_allocation_failures_total", (str(o.order),), o.failures)

    def families(self) -> Iterator:
        """prometheus_client metric families, one per served counter."""
        from prometheus_client.core import CounterMetricFamily
        for name in self.names:
            help_text, labels = SPECS[name]
            # CounterMetricFamily appends _total to the samples itself
            fam = CounterMetricFamily(name[:-len("_total")], help_text, labels=list(labels))
            scale = NS if name in _SECONDS else 1
            for lv, v in sorted(self.values[name].items()):
                fam.add_metric(list(lv), v / scale if scale != 1 else v)
            yield fam

