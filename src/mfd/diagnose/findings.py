"""``mfd doctor``'s findings: short lines, each naming its numbers and the
threshold it used, from two looks at the kernel a window apart.  Pure."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..compaction import COMPACTION_PROACTIVENESS_DEFAULT, fragmentation_score_wmark
from .can import blocks_now
from .view import NodeView

SEVERITIES = ("info", "warning", "critical")

# The kernel's defaults for the tunables doctor names when they differ
# (Documentation/admin-guide/sysctl/vm.rst): sysctl path -> default.
TUNABLE_DEFAULTS = {
    "vm/compaction_proactiveness": COMPACTION_PROACTIVENESS_DEFAULT,
    "vm/extfrag_threshold": 500,
    "vm/watermark_boost_factor": 15000,
    "vm/watermark_scale_factor": 10,
    "vm/compact_unevictable_allowed": 1,   # 0 is the PREEMPT_RT default
    "vm/defrag_mode": 0,                   # 6.15+
}


@dataclass(frozen=True)
class Thresholds:
    """The thresholds findings use; each is a ``mfd doctor`` option."""
    fail_ratio: float = 0.5       # compact_fail / compact_stall over the window
    min_stalls: int = 1           # fewer direct-compaction stalls than this: no verdict
    min_zone_mib: int = 256       # smaller zones (DMA) are not expected to hold huge blocks


@dataclass(frozen=True)
class Finding:
    severity: str                 # one of SEVERITIES
    code: str                     # stable name, for scripts
    text: str
    node: Optional[int] = None
    zone: Optional[str] = None

    def to_json(self) -> dict:
        return {"severity": self.severity, "code": self.code, "node": self.node,
                "zone": self.zone, "text": self.text}


@dataclass(frozen=True)
class Look:
    """One look at the kernel: the compaction view, the buddy counts, and
    the zone sizes in pages."""
    view: Sequence[NodeView]
    nr_free: Mapping[Tuple[int, str], Sequence[int]]
    present: Mapping[Tuple[int, str], int]


def _size(order: int, page_size: int) -> str:
    size = page_size << order
    return f"{size >> 30} GiB" if size >= 1 << 30 else f"{size >> 20} MiB" \
        if size >= 1 << 20 else f"{size >> 10} KiB"


def findings(first: Look, last: Look, vmstat: Mapping[str, int], window: float,
             tunables: Mapping[str, Optional[int]], hpage_order: int, page_size: int,
             kernel: Tuple[int, ...], th: Thresholds = Thresholds()) -> List[Finding]:
    """Every finding, most severe first.  ``vmstat``: /proc/vmstat's change
    over the window; ``tunables``: sysctl path -> value (None: absent)."""
    out: List[Finding] = []
    min_pages = (th.min_zone_mib << 20) // page_size
    huge = _size(hpage_order, page_size)
    for (node, zone), nr_free in sorted(last.nr_free.items()):
        if last.present.get((node, zone), 0) < min_pages:
            continue
        if blocks_now(nr_free, hpage_order) == 0:
            still = blocks_now(first.nr_free.get((node, zone), ()), hpage_order) == 0
            span = f"for the whole {window:g} s window" if still else "at the end of the window"
            out.append(Finding("warning", "no_hpage_block",
                               f"no free order-{hpage_order} ({huge}) block on node {node} "
                               f"zone {zone} {span}: THP and huge-page allocations must "
                               "compact or fail", node, zone))
    starts = {n.node: n for n in first.view}
    p = tunables.get("vm/compaction_proactiveness")
    for n in last.view:
        before = starts.get(n.node)
        if n.proactive.verdict == "will_compact" and before is not None and \
                before.proactive.verdict == "will_compact" and n.score >= before.score:
            out.append(Finding("warning", "score_not_falling",
                               f"node {n.node} fragmentation score {before.score} -> {n.score} "
                               f"over {window:g} s, above the high watermark {n.proactive.high} "
                               "and not falling: kcompactd's proactive runs make no progress "
                               "(it then backs off to 32 s)", n.node))
        if p == 0:
            high = fragmentation_score_wmark(COMPACTION_PROACTIVENESS_DEFAULT, False,
                                             tuple(kernel[:2]))
            if n.score > high:
                out.append(Finding("warning", "proactive_off",
                                   f"vm.compaction_proactiveness is 0 while node {n.node} "
                                   f"scores {n.score}: at the default "
                                   f"{COMPACTION_PROACTIVENESS_DEFAULT} kcompactd would compact "
                                   f"above {high}", n.node))
        for z in n.zones:
            if z.boost:
                out.append(Finding("info", "watermark_boost",
                                   f"watermark boost active on node {n.node} zone {z.zone}: "
                                   f"{z.boost} pages (kswapd reclaims after a fragmenting "
                                   "fallback, vm.watermark_boost_factor)", n.node, z.zone))
            veto = next((v for v in z.verdicts if v.order == hpage_order), None)
            fallbacks = vmstat.get("thp_fault_fallback", 0)
            if veto is not None and veto.verdict == "no_fragmentation" and fallbacks > 0:
                out.append(Finding("warning", "fragindex_veto",
                                   f"the kernel will not compact node {n.node} zone {z.zone} for "
                                   f"order {hpage_order}: fragindex {veto.fragindex / 1000:.3f} "
                                   f"<= vm.extfrag_threshold {veto.threshold / 1000:.3f} (lack of "
                                   f"memory, not fragmentation) while {fallbacks} THP faults "
                                   f"fell back in {window:g} s", n.node, z.zone))
    stalls, fails = vmstat.get("compact_stall", 0), vmstat.get("compact_fail", 0)
    if stalls >= th.min_stalls and stalls and fails / stalls >= th.fail_ratio:
        out.append(Finding("critical", "compaction_failing",
                           f"direct compaction failing: {fails} of {stalls} stalls failed in "
                           f"{window:g} s (compact_fail/compact_stall {fails / stalls:.2f} >= "
                           f"{th.fail_ratio:.2f})"))
    for name, default in TUNABLE_DEFAULTS.items():
        value = tunables.get(name)
        if value is not None and value != default:
            out.append(Finding("info", "tunable",
                               f"{name.replace('/', '.')} is {value} (default {default})"))
    rank: Dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
    # most severe first; within a severity, per node and zone, then machine-wide
    return sorted(out, key=lambda f: (-rank[f.severity], f.node is None, f.node or 0,
                                      f.zone or ""))


def worst(found: Sequence[Finding]) -> Optional[str]:
    return max((f.severity for f in found), key=SEVERITIES.index, default=None)
