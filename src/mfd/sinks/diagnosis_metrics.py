"""The diagnosis gauges for Prometheus (mfd.model.diagnosis): fragmentation
scores, kcompactd's proactive watermarks, blocks available now."""
from __future__ import annotations

from typing import Iterator

from ..model import Filter
from ..model.diagnosis import Diagnosis


def diagnosis_families(d: Diagnosis, flt: Filter = Filter()) -> Iterator:
    from prometheus_client.core import GaugeMetricFamily
    score = GaugeMetricFamily(
        "mfd_node_fragmentation_score", "kcompactd's fragmentation_score_node() "
        "(mm/compaction.c), 0..100: the zones' scores weighted by present pages",
        labels=["node"])
    low = GaugeMetricFamily(
        "mfd_node_fragmentation_score_low_watermark", "Proactive compaction stops a zone "
        "at or below this score (fragmentation_score_wmark(true), from "
        "vm.compaction_proactiveness)", labels=["node"])
    high = GaugeMetricFamily(
        "mfd_node_fragmentation_score_high_watermark", "Proactive compaction starts when "
        "the node score is above this (fragmentation_score_wmark(false))", labels=["node"])
    zone = GaugeMetricFamily(
        "mfd_zone_fragmentation_score", "fragmentation_score_zone() (mm/compaction.c), "
        "0..100: percent of free pages in blocks below the THP order", labels=["node", "zone"])
    avail = GaugeMetricFamily(
        "mfd_zone_available_blocks", "Free blocks of this order or larger, in blocks of "
        "this order (the THP order and each hugetlb size): what an allocation can have "
        "without compaction; 0 above the largest buddy order; thp=\"true\" on the THP "
        "order", labels=["node", "zone", "order", "size_bytes", "thp"])
    for n in d.nodes:
        if flt.wants(n.node):
            for fam, v in ((score, n.score), (low, n.low), (high, n.high)):
                fam.add_metric([str(n.node)], v)
    for z in d.zones:
        if flt.wants(z.node, z.zone):
            zone.add_metric([str(z.node), z.zone], z.score)
    for a in d.available:
        if flt.wants(a.node, a.zone):
            avail.add_metric([str(a.node), a.zone, str(a.order), str(a.size),
                              "true" if a.thp else "false"], a.blocks)
    yield from (score, low, high, zone, avail)
