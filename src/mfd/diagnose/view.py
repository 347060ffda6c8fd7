"""The kernel's compaction view of one sample, per node and zone: the
fragmentation scores kcompactd computes, whether it will start proactive
compaction, and compaction_suitable()'s verdict per order.  Pure: the
caller reads buddyinfo, zoneinfo, pagetypeinfo and the sysctls."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..compaction import (ProactiveVerdict, SuitableVerdict, fragmentation_score_node,
                          fragmentation_score_zone, proactive_verdict)
from ..model.pagetypes import PageTypeInfo, ZoneLimits
from .can import zone_can


@dataclass(frozen=True)
class ZoneView:
    node: int
    zone: str
    present: int
    score: int                        # fragmentation_score_zone(): unweighted
    boost: int                        # watermark_boost now (zoneinfo "boost")
    verdicts: Tuple[SuitableVerdict, ...]   # orders 1 .. the largest, in order


@dataclass(frozen=True)
class NodeView:
    node: int
    score: int                        # fragmentation_score_node()
    proactive: ProactiveVerdict
    zones: Tuple[ZoneView, ...]


@dataclass(frozen=True)
class Inputs:
    """What one look at the kernel gives: per (node, zone) the buddy counts
    and limits, pagetypeinfo (None if unreadable), the sysctls, which
    nodes' kswapd is running, the THP order and the kernel version."""
    nr_free: Mapping[Tuple[int, str], Sequence[int]]
    limits: Sequence[ZoneLimits]
    pagetypes: Optional[PageTypeInfo]
    proactiveness: int
    extfrag_threshold: int
    kswapd_running: Mapping[int, bool]
    hpage_order: int
    kernel: Tuple[int, ...]


def compaction_view(inp: Inputs) -> List[NodeView]:
    by_node: Dict[int, List[ZoneLimits]] = {}
    for z in inp.limits:
        by_node.setdefault(z.node, []).append(z)
    out = []
    for node, zones in sorted(by_node.items()):
        populated = [z for z in zones if z.present and (z.node, z.zone) in inp.nr_free]
        score = fragmentation_score_node(
            ((z.present, inp.nr_free[(z.node, z.zone)]) for z in populated), inp.hpage_order)
        views = []
        for z in populated:
            nr_free = inp.nr_free[(z.node, z.zone)]
            verdicts = tuple(zone_can(o, nr_free, z, inp.kernel, inp.extfrag_threshold,
                                      inp.pagetypes).verdict for o in range(1, len(nr_free)))
            views.append(ZoneView(z.node, z.zone, z.present,
                                  fragmentation_score_zone(nr_free, inp.hpage_order),
                                  z.boost, verdicts))
        out.append(NodeView(node, score,
                            proactive_verdict(score, inp.proactiveness,
                                              inp.kswapd_running.get(node, False),
                                              tuple(inp.kernel[:2])),
                            tuple(views)))
    return out


def view_json(nodes: Sequence[NodeView]) -> list:
    return [{"node": n.node, "score": n.score,
             "proactive": {"verdict": n.proactive.verdict, "low": n.proactive.low,
                           "high": n.proactive.high, "reason": n.proactive.reason},
             "zones": [{"zone": z.zone, "score": z.score, "boost": z.boost,
                        "orders": [{"order": v.order, "verdict": v.verdict,
                                    "fragindex": (None if v.fragindex is None
                                                  else v.fragindex / 1000)}
                                   for v in z.verdicts]}
                       for z in n.zones]}
            for n in nodes]
