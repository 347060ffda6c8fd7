"""Fragmentation events, aggregated in the kernel: who fragments memory and
what it costs.

One module per group, each with one eBPF program in bpf/ and one typed result
(mfd.model.events):

* ``extfrag``    kmem:mm_page_alloc_extfrag per process: fallback steals.
* ``alloc``      the buddy allocator's entry: per-order counts and failures,
                 with kprobes also latency (the only group on the hot path).
* ``compaction`` compaction runs per zone, direct compaction per process,
                 kcompactd wake-ups, /proc/vmstat compact_* deltas.

:class:`EventSource` compiles the chosen groups' programs as one unit (one
clang run: BCC's compile dominates start-up), then ``poll()`` once per sample
reads each map once and returns an :class:`~mfd.model.Events`.  A new group
is a module here, its result type in mfd.model.events, and one line in
:data:`GROUP_TYPES`.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ... import ebpf
from ...kernel.cgroups import CgroupNames
from ...errors import UsageError
from ...model import GROUPS, Events, Filter, Snapshot
from ...term import note as stderr_note
from .alloc import AllocGroup
from .base import Group, PollContext
from .compaction import CompactionGroup
from .extfrag import ExtfragGroup

GROUP_TYPES = {g.name: g for g in (ExtfragGroup, AllocGroup, CompactionGroup)}

__all__ = ["GROUPS", "parse_groups", "EventSource"]


def parse_groups(text: str) -> Tuple[str, ...]:
    """``"extfrag,compaction"`` -> ("extfrag", "compaction"), in GROUPS order;
    ``all`` names every group.  Unknown names raise UsageError listing the valid ones."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    valid = ", ".join(GROUPS + ("all",))
    if not names:
        raise UsageError(f"no event group given (valid: {valid})")
    bad = [n for n in names if n not in GROUPS and n != "all"]
    if bad:
        raise UsageError(f"unknown event group {bad[0]!r} (valid: {valid})")
    if "all" in names:
        return GROUPS
    return tuple(g for g in GROUPS if g in names)


def _why_missing(event: str) -> str:
    return " (kernel without CONFIG_COMPACTION)" if event.startswith("compaction") else ""


class EventSource:
    """Loads the chosen event groups; ``poll(snapshot)`` returns one interval's events.

    ``alloc_probe`` tells which path the alloc group took: "kprobe" (latency
    histograms) or "tracepoint" (counts only); None without that group.
    ``filter`` (-i/-c) applies to rows that carry a node or zone: compaction
    per zone and kcompactd wake-ups.  ``alloc_function`` names the allocator
    entry for the kprobe path instead of looking it up.  ``loader`` is
    ebpf.Program's (auto, helper, inprocess).
    """

    def __init__(self, groups: Sequence[str], filter: Filter = Filter(),
                 alloc_probe: str = "auto", note: Callable[[str], None] = stderr_note,
                 debug: bool = False, load: bool = True, btf_path: Optional[str] = None,
                 alloc_function: Optional[str] = None, loader: str = "auto",
                 pageblock_order: Optional[int] = None):
        unknown = [g for g in groups if g not in GROUP_TYPES]
        if unknown or not groups:
            raise UsageError(f"unknown event group {unknown[0] if unknown else ''!r} "
                             f"(valid: {', '.join(GROUPS)})")
        self.filter, self.note, self.debug, self.loader = filter, note, debug, loader
        self._program: Optional[ebpf.Program] = None
        if load:
            ebpf.require_root("tracing events")
            ebpf.start_loader(loader)
        btf = ebpf.load_btf(btf_path, ": event tracing needs the kernel's BTF", note)
        self.sizes = ebpf.sizes(btf)
        self.nr_orders = self.sizes["MFD_NR_ORDERS"]
        # extfrag and direct-compaction rows carry the task's cgroup v2 path
        cgroups = CgroupNames(note) if {"extfrag", "compaction"} & set(groups) else None
        self.groups: List[Group] = [
            GROUP_TYPES[g](btf=btf, nr_orders=self.nr_orders, alloc_probe=alloc_probe,
                           note=note, alloc_function=alloc_function, cgroups=cgroups,
                           pageblock_order=pageblock_order)
            for g in GROUPS if g in groups]
        self.alloc_probe = next((g.probe for g in self.groups if g.name == "alloc"), None)
        self.cflags = self._cflags()
        self._last = time.monotonic()
        self._zone_cache: Tuple[object, Dict, Dict, tuple] = (None, {}, {}, ())
        if load:
            self._load()
            self._last = time.monotonic()

    @property
    def names(self) -> List[str]:
        return [g.name for g in self.groups]

    # -- set-up -----------------------------------------------------------

    def _cflags(self) -> List[str]:
        defs: Dict[str, object] = dict(self.sizes)
        for g in self.groups:
            defs.update(g.defines())
        return ebpf.cflags(defs)

    def source_text(self) -> str:
        """The chosen programs, concatenated: what is compiled (one unit)."""
        return ebpf.source_text(g.program for g in self.groups)

    def _load(self) -> None:
        ebpf.require_tracepoints([tp for g in self.groups for tp in g.tracepoints()],
                                 self.note, why=_why_missing)
        self._program = ebpf.Program(f"the event programs ({', '.join(self.names)})",
                                     self.source_text(), self.cflags, self.note, self.debug,
                                     kprobes=[k for g in self.groups for k in g.kprobes()],
                                     loader=self.loader)
        try:
            for g in self.groups:
                g.bind(self._program)
        except BaseException:
            self.close()
            raise

    # -- sampling ---------------------------------------------------------

    def _zones(self, snapshot: Optional[Snapshot]) -> Tuple[Dict, Dict, tuple]:
        """zone_start_pfn -> (node, name), (node, zone_idx) -> name and the
        populated zones' spans, from a snapshot (read from /proc when none is
        given).  Zones grow with memory hot-add, but a zone's start pfn does
        not move."""
        if snapshot is None:
            from ..procfs import ProcfsSource
            snapshot = ProcfsSource().snapshot()
        zones = list(snapshot.zones())
        key = tuple((z.node, z.zone_idx, z.start_pfn, z.spanned) for z in zones)
        if key != self._zone_cache[0]:
            live = [z for z in zones if z.populated]
            self._zone_cache = (key, {z.start_pfn: (z.node, z.zone) for z in live},
                                {(z.node, z.zone_idx): z.zone for z in zones},
                                tuple(sorted((z.start_pfn, z.start_pfn + z.spanned, z.node,
                                              z.zone) for z in live)))
        return self._zone_cache[1], self._zone_cache[2], self._zone_cache[3]

    def poll(self, snapshot: Optional[Snapshot] = None) -> Events:
        """Everything counted since the previous poll (or since loading).
        Counts are of the interval unless said otherwise; rows of
        per-process tables are sorted busiest first (see mfd.model.events)."""
        now = time.monotonic()
        ctx = PollContext(elapsed=now - self._last, filter=self.filter)
        self._last = now
        if any(g.needs_zones for g in self.groups):
            ctx.zones, ctx.zone_names, ctx.spans = self._zones(snapshot)
        return Events(round(ctx.elapsed, 6), self.filter,
                      tuple(g.poll(ctx) for g in self.groups))

    def close(self) -> None:
        if self._program is not None:
            program, self._program = self._program, None
            program.close()
