"""Fragmentation events, aggregated in the kernel: who fragments memory and
what it costs.

Three groups, each one eBPF program in bpf/ (see groups.py):

* ``extfrag``    kmem:mm_page_alloc_extfrag per process: fallback steals.
* ``alloc``      the buddy allocator's entry: per-order counts and failures,
                 with kprobes also latency (the only group on the hot path).
* ``compaction`` compaction runs per zone, direct compaction per process,
                 kcompactd wake-ups, /proc/vmstat compact_* deltas.

:class:`EventCollector` compiles the chosen groups' programs as one unit (one
clang run: BCC's compile dominates start-up), then ``poll()`` once per sample
reads each map once and returns the ``Sample.events`` dict.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .. import sysfs
from ..errors import KernelUnsupported, PermissionDenied, SourceUnavailable, UsageError

GROUPS = ("extfrag", "alloc", "compaction")

__all__ = ["GROUPS", "parse_groups", "EventCollector"]


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


def _stderr_note(msg: str) -> None:
    import sys
    print(f"mfd: {msg}", file=sys.stderr)


class EventCollector:
    """Loads the chosen event groups; ``poll(snapshot)`` returns one interval's events.

    ``alloc_probe`` tells which path the alloc group took: "kprobe" (latency
    histograms) or "tracepoint" (counts only); None without that group.
    ``node``/``zone`` (the -i/-c filters) apply to rows that carry a node or
    zone: compaction per zone and kcompactd wake-ups.  ``alloc_function``
    names the allocator entry for the kprobe path instead of looking it up.
    """

    def __init__(self, groups: Sequence[str], node: Optional[int] = None,
                 zone: Optional[str] = None, alloc_probe: str = "auto",
                 note: Callable[[str], None] = _stderr_note, debug: bool = False,
                 load: bool = True, btf_path: str = "/sys/kernel/btf/vmlinux",
                 alloc_function: Optional[str] = None):
        from ..btf import BTF, BTFError
        from ..collectors.bpf import CACHE_DIR
        from .groups import AllocGroup, CompactionGroup, ExtfragGroup

        unknown = [g for g in groups if g not in GROUPS]
        if unknown or not groups:
            raise UsageError(f"unknown event group {unknown[0] if unknown else ''!r} "
                             f"(valid: {', '.join(GROUPS)})")
        self.node, self.zone, self.note, self.debug = node, zone, note, debug
        self._bpf = None
        if load and os.geteuid() != 0:
            raise PermissionDenied("tracing events needs root: run with sudo")
        try:
            btf = BTF.load(btf_path, cache_dir=CACHE_DIR)
            self.nr_orders = btf.array_len("zone", "free_area")
            self.nr_zones = btf.array_len("pglist_data", "node_zones")
            parts = {"extfrag": lambda: ExtfragGroup(btf),
                     "alloc": lambda: AllocGroup(self.nr_orders, alloc_probe, note,
                                                 alloc_function),
                     "compaction": lambda: CompactionGroup(btf)}
            self.groups = [parts[g]() for g in GROUPS if g in groups]
        except BTFError as e:
            raise KernelUnsupported(f"{e}: event tracing needs the kernel's BTF") from e
        self.alloc_probe = next((g.probe for g in self.groups if g.name == "alloc"), None)
        self.cflags = self._cflags()
        self._last = time.monotonic()
        self._zone_cache: Tuple[object, Dict, Dict] = (None, {}, {})
        if load:
            self._load()
            self._last = time.monotonic()

    @property
    def names(self) -> List[str]:
        return [g.name for g in self.groups]

    # -- set-up -----------------------------------------------------------

    def _cflags(self) -> List[str]:
        from ..collectors.bpf import bpf_dir

        # bpf/mfd.h sizes its snapshot records with these, so every program
        # including it needs them.
        defs: Dict[str, object] = {"MFD_NR_ORDERS": self.nr_orders,
                                   "MFD_NR_ZONES": self.nr_zones,
                                   "MFD_NR_NODES": len(sysfs.memory_nodes())}
        for g in self.groups:
            defs.update(g.defines())
        return ["-I" + bpf_dir()] + ["-D%s=%s" % kv for kv in defs.items()]

    def source_text(self) -> str:
        """The chosen programs, concatenated: what is compiled (one unit)."""
        from ..collectors.bpf import bpf_dir

        parts = []
        for g in self.groups:
            with open(os.path.join(bpf_dir(), g.program)) as f:
                parts.append(f"/* ---- {g.program} ---- */\n" + f.read())
        return "\n".join(parts)

    def _load(self) -> None:
        from ..collectors.bpf import _first_error, _first_line, capture_stderr, import_bcc
        from ..tracing import ensure_tracefs, mount_hint, tracepoint_exists

        if not ensure_tracefs(self.note):
            raise KernelUnsupported(mount_hint())
        need = {"extfrag": [("kmem", "mm_page_alloc_extfrag")],
                "alloc": [("kmem", "mm_page_alloc")] if self.alloc_probe == "tracepoint" else [],
                "compaction": [("compaction", e) for e in (
                    "mm_compaction_begin", "mm_compaction_end",
                    "mm_compaction_try_to_compact_pages", "mm_compaction_kcompactd_wake")]}
        missing = [f"{c}:{e}" for g in self.names for c, e in need[g] if not tracepoint_exists(c, e)]
        if missing:
            why = " (kernel without CONFIG_COMPACTION)" if missing[0].startswith("compaction") else ""
            raise KernelUnsupported(f"this kernel has no {', '.join(missing)} tracepoint{why}")
        BPF = import_bcc(self.note)
        failure = None
        with capture_stderr(passthrough=self.debug) as captured:
            try:
                self._bpf = BPF(text=self.source_text().encode(), cflags=self.cflags)
                for g in self.groups:
                    g.attach(self._bpf)
            except Exception as e:  # BCC raises bare Exception for compile/verifier/attach errors
                failure = e
        if failure is not None:
            self.close()
            detail = _first_error(captured.text()) or _first_line(failure)
            raise SourceUnavailable(f"cannot load the event programs ({', '.join(self.names)}): "
                                    f"{detail} (--debug shows the compiler's output)") from failure
        try:
            for g in self.groups:
                g.bind(self._bpf)
        except BaseException:
            self.close()
            raise

    # -- sampling ---------------------------------------------------------

    def _zones(self, snapshot) -> Tuple[Dict, Dict]:
        """zone_start_pfn -> (node, name) and (node, zone_idx) -> name, from a
        snapshot (read from /proc when none is given).  Zones grow with memory
        hot-add, but a zone's start pfn does not move."""
        if snapshot is None:
            from ..collectors.procfs import ProcfsCollector
            snapshot = ProcfsCollector().snapshot()
        zones = list(snapshot.zones())
        key = tuple((z.node, z.zone_idx, z.start_pfn) for z in zones)
        if key != self._zone_cache[0]:
            self._zone_cache = (key, {z.start_pfn: (z.node, z.zone) for z in zones if z.populated},
                                {(z.node, z.zone_idx): z.zone for z in zones})
        return self._zone_cache[1], self._zone_cache[2]

    def poll(self, snapshot=None) -> dict:
        """Everything counted since the previous poll (or since loading): the
        ``Sample.events`` dict (mfd.model).  Counts are of the interval unless
        said otherwise; rows of per-process tables are sorted busiest first.

        * ``interval``: seconds the counts cover; ``filter``: {"node", "zone"}
          when -i/-c were given.
        * ``extfrag``: events, change_ownership, cumulative (since start),
          rate (/s), dropped (map full), by_process: [{pid, comm, alloc_order,
          fallback_order, alloc_migratetype, fallback_migratetype (names),
          events, change_ownership, cumulative, rate}].
        * ``alloc``: probe ("kprobe" or "tracepoint"), function (kprobe path),
          allocs, failures, rate, dropped, by_order: [{order, allocs, failures,
          rate; kprobe path also latency_ns, avg_ns, hist_ns}],
          failures_by_process: [{pid, comm, order, failures}].
        * ``compaction``: begin, end (runs begun/ended in the zones that pass
          the filter), by_zone: [{node, zone, begin, runs, duration_ns, max_ns,
          status: {name: runs}}], direct: [{pid, comm, order, count, stall_ns,
          hist_us}], direct_stalls, kcompactd_wake, kcompactd: [{node, order,
          highest_zone, wakes}], unmatched_end, dropped, vmstat: {compact_*:
          change}.

        Histograms are lists of {lo, hi, count}, non-empty log2 buckets.
        """
        from .groups import PollContext

        now = time.monotonic()
        ctx = PollContext(elapsed=now - self._last, node=self.node, zone=self.zone)
        self._last = now
        if any(g.name == "compaction" for g in self.groups):
            ctx.zones, ctx.zone_names = self._zones(snapshot)
        out: dict = {"interval": round(ctx.elapsed, 6)}
        if self.node is not None or self.zone is not None:
            out["filter"] = {"node": self.node, "zone": self.zone}
        for g in self.groups:
            out[g.name] = g.poll(ctx)
        return out

    def close(self) -> None:
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None
