"""``mfd doctor``'s findings: short lines, each naming its numbers and the
threshold it used, from two looks at the kernel a window apart.  Pure."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..compaction import COMPACTION_PROACTIVENESS_DEFAULT, fragmentation_score_wmark
from ..durations import format_duration, format_time
from .can import blocks_now, size_text
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


def findings(first: Look, last: Look, vmstat: Mapping[str, int], window: float,
             tunables: Mapping[str, Optional[int]], hpage_order: int, page_size: int,
             kernel: Tuple[int, ...], th: Thresholds = Thresholds(),
             events=None, pageblock_order: int = 9) -> List[Finding]:
    """Every finding, most severe first.  ``vmstat``: /proc/vmstat's change
    over the window; ``tunables``: sysctl path -> value (None: absent);
    ``events``: the event groups over the window (mfd.model.events.Events),
    or None."""
    out: List[Finding] = event_findings(events, pageblock_order) if events is not None else []
    min_pages = (th.min_zone_mib << 20) // page_size
    huge = size_text(hpage_order, page_size)
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
    out += _compaction_failing(vmstat, f"in {window:g} s", th)
    for name, default in TUNABLE_DEFAULTS.items():
        value = tunables.get(name)
        if value is not None and value != default:
            out.append(Finding("info", "tunable",
                               f"{name.replace('/', '.')} is {value} (default {default})"))
    return ranked(out)


def ranked(found: Sequence[Finding]) -> List[Finding]:
    """Most severe first; within a severity, per node and zone, then machine-wide."""
    rank: Dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(found, key=lambda f: (-rank[f.severity], f.node is None, f.node or 0,
                                        f.zone or ""))


def _compaction_failing(vmstat: Mapping[str, int], when: str, th: Thresholds) -> List[Finding]:
    stalls, fails = vmstat.get("compact_stall", 0), vmstat.get("compact_fail", 0)
    if stalls >= th.min_stalls and stalls and fails / stalls >= th.fail_ratio:
        return [Finding("critical", "compaction_failing",
                        f"direct compaction failing: {fails} of {stalls} stalls failed {when} "
                        f"(compact_fail/compact_stall {fails / stalls:.2f} >= "
                        f"{th.fail_ratio:.2f})")]
    return []


def _span(start: Optional[float], end: Optional[float]) -> str:
    return f"{format_time(start)} .. {format_time(end)}"


def story_findings(story, hpage_order: int, page_size: int, proactiveness: int,
                   high_wmark: int, th: Thresholds = Thresholds(),
                   pageblock_order: Optional[int] = None) -> List[Finding]:
    """Every finding a recording supports (mfd.diagnose.story.Story), most
    severe first.  What a recording does not hold (tunables, watermark boost,
    the zone watermarks behind compaction_suitable) needs a live look.
    ``pageblock_order`` defaults to the THP order, as on every kernel with
    THP (pageblock_order = min(HPAGE_PMD_ORDER, MAX_PAGE_ORDER))."""
    pageblock_order = hpage_order if pageblock_order is None else pageblock_order
    events = story.events()
    whole = format_duration(story.seconds)
    out: List[Finding] = [] if events is None else event_findings(
        events, pageblock_order, when=f"in {format_duration(story.event_seconds)} of events")
    min_pages = (th.min_zone_mib << 20) // page_size
    huge = size_text(hpage_order, page_size)
    for (node, zone), z in sorted(story.zones.items()):
        nb = z.no_block
        if z.present < min_pages or not nb.total:
            continue
        still = "; none at the end" if nb.now else "; there was one at the end"
        out.append(Finding("warning" if nb.now else "info", "no_hpage_block",
                           f"no free order-{hpage_order} ({huge}) block on node {node} zone "
                           f"{zone} for {format_duration(nb.total)} of {whole} (longest "
                           f"{format_duration(nb.longest)}, {_span(nb.longest_from, nb.longest_to)})"
                           f"{still}: THP and huge-page allocations had to compact or fail",
                           node, zone))
    for node, n in sorted(story.nodes.items()):
        a = n.above
        if not (proactiveness and a.total):
            continue
        head = (f"node {node} fragmentation score above kcompactd's high watermark "
                f"{high_wmark} (vm.compaction_proactiveness {proactiveness}) for "
                f"{format_duration(a.total)} of {whole}")
        if a.now:
            stuck = n.last >= n.since_score
            out.append(Finding(
                "warning" if stuck else "info", "score_above_high",
                f"{head}, and since {format_time(a.since)} to the end: score {n.since_score} "
                f"-> {n.last}, " + ("not falling: kcompactd's proactive runs made no progress "
                                    "(it then backs off to 32 s)" if stuck else "falling"),
                node))
        else:
            out.append(Finding("info", "score_above_high",
                               f"{head} (longest {format_duration(a.longest)}, "
                               f"{_span(a.longest_from, a.longest_to)}); below it at the end "
                               f"(score {n.last})", node))
    if story.fail_span is not None:
        out += _compaction_failing(story.vmstat, "over the recording's events (failures "
                                   f"{_span(*story.fail_span)})", th)
    if events is not None and story.takeover_span is not None:
        out = [replace(f, text=f"{f.text}; takeovers from {format_time(story.takeover_span[0])} "
                                f"to {format_time(story.takeover_span[1])}")
               if f.code == "pageblock_takeover" else f for f in out]
    return ranked(out)


def worst(found: Sequence[Finding]) -> Optional[str]:
    return max((f.severity for f in found), key=SEVERITIES.index, default=None)


def event_findings(events, pageblock_order: int, top: int = 3,
                   when: Optional[str] = None) -> List[Finding]:
    """Findings from the event groups over the window (an mfd.model.events
    Events with extfrag and compaction): who stalls in direct compaction, who
    takes over pageblocks and who pollutes them.

    kmem:mm_page_alloc_extfrag's change_ownership is 1 when the fallback
    converted the pageblock to the requester's type (a takeover) and 0 when
    the block kept its foreign type; a fallback below pageblock_order that
    leaves the type is pollution (the TP_printk's "fragmenting", which the
    record does not carry: fallback_order < pageblock_order).  Attribution
    is to current, the task whose allocation fell back (for per-CPU refills,
    the one that missed the cache)."""
    out: List[Finding] = []
    when = when or f"in {events.interval:g} s"
    comp = events.get("compaction")
    if comp is not None and comp.direct:
        rows: Dict[Tuple[int, str], List[int]] = {}
        for d in comp.direct:
            acc = rows.setdefault((d.pid, d.comm), [0, 0])
            acc[0] += d.count
            acc[1] += d.stall_ns
        busiest = sorted(rows.items(), key=lambda kv: -kv[1][1])[:top]
        who = ", ".join(f"{comm} (pid {pid}) {n} for {ns / 1e6:.1f} ms"
                        for (pid, comm), (n, ns) in busiest) + _by_cgroup(comp.direct, "count",
                                                                          top)
        out.append(Finding("warning", "direct_compaction",
                           f"direct compaction stalled {sum(n for n, _ in rows.values())} "
                           f"times {when}: {who}"))
    ext = events.get("extfrag")
    if ext is not None and ext.by_process:
        groups = {"pageblock_takeover": _by_cgroup(ext.by_process, "change_ownership", top)}
        took: Dict[Tuple[int, str], int] = {}
        polluted: Dict[Tuple[int, str], int] = {}
        for r in ext.by_process:
            if r.change_ownership:
                took[(r.pid, r.comm)] = took.get((r.pid, r.comm), 0) + r.change_ownership
            left = r.events - r.change_ownership
            if left and r.fallback_order < pageblock_order:
                polluted[(r.pid, r.comm)] = polluted.get((r.pid, r.comm), 0) + left
        for code, table, what in (
                ("pageblock_takeover", took, "took over pageblocks of another migratetype "
                                            "(extfrag change_ownership)"),
                ("pageblock_pollution", polluted, "left pages of another migratetype in "
                                                  f"pageblocks (fallbacks below order "
                                                  f"{pageblock_order} that kept the block's "
                                                  "type)")):
            if table:
                busiest = sorted(table.items(), key=lambda kv: -kv[1])[:top]
                who = ", ".join(f"{comm} (pid {pid}) {n}" for (pid, comm), n in busiest) + \
                    groups.get(code, "")
                out.append(Finding("info", code, f"{sum(table.values())} fallbacks "
                                                 f"{when} {what}: {who}"))
    return out


def _by_cgroup(rows, field: str, top: int) -> str:
    """"; by cgroup: /a 5, /b 2" when the rows are in cgroups other than the
    root (a cgroup v1-only host has all in "/": nothing to add)."""
    acc: Dict[str, int] = {}
    for r in rows:
        acc[r.cgroup] = acc.get(r.cgroup, 0) + getattr(r, field)
    acc = {cg: n for cg, n in acc.items() if n}
    if set(acc) <= {"/"}:
        return ""
    busiest = sorted(acc.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return "; by cgroup: " + ", ".join(f"{cg} {n}" for cg, n in busiest)
