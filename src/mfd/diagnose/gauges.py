"""The diagnosis gauges of one snapshot (for the exporter): the scores
kcompactd computes, the watermarks it compares them with, and the blocks
available now per order.  Pure: the caller reads the sysctl and sizes."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from ..compaction import fragmentation_score_node, fragmentation_score_wmark, \
    fragmentation_score_zone
from ..fragindex import fill_contig_page_info
from ..model import Snapshot
from ..model.diagnosis import Available, Diagnosis, NodeScore, ZoneScore


def diagnosis(snapshot: Snapshot, proactiveness: int, kernel: Tuple[int, ...],
              hpage_order: int, orders: Sequence[int], page_size: int) -> Diagnosis:
    """Scores of every node and populated zone, and for each of ``orders``
    (the THP order and each hugetlb order) the blocks available now.

    Node scores weigh every populated zone of the node, as the kernel does,
    whatever a filter later shows."""
    low = fragmentation_score_wmark(proactiveness, True, tuple(kernel[:2]))
    high = fragmentation_score_wmark(proactiveness, False, tuple(kernel[:2]))
    nodes: List[NodeScore] = []
    zones: List[ZoneScore] = []
    available: List[Available] = []
    for node in snapshot.nodes:
        populated = [z for z in node.zones if z.populated]
        score = fragmentation_score_node(((z.present, z.nr_free) for z in populated),
                                         hpage_order)
        nodes.append(NodeScore(node.node, score, low, high))
        for z in populated:
            zones.append(ZoneScore(z.node, z.zone, fragmentation_score_zone(z.nr_free,
                                                                             hpage_order)))
            # fill_contig_page_info()'s free_blocks_suitable: what mfd can
            # calls "now" (diagnose.can.blocks_now; that module is not
            # imported: it brings the page map's numpy into the exporter)
            available.extend(Available(z.node, z.zone, o, page_size << o,
                                       fill_contig_page_info(z.nr_free, o).free_blocks_suitable,
                                       o == hpage_order)
                             for o in orders)
    return Diagnosis(tuple(nodes), tuple(zones), tuple(available))


def orders_of(hpage_order: int, hugetlb_sizes: Sequence[int], page_size: int) -> List[int]:
    """The THP order and each hugetlb size's order, once each, smallest first
    (sizes that are not a power-of-two number of pages are skipped)."""
    out: Dict[int, None] = {hpage_order: None}
    for size in hugetlb_sizes:
        pages = size // page_size
        if size % page_size == 0 and pages & (pages - 1) == 0 and pages:
            out[pages.bit_length() - 1] = None
    return sorted(out)
