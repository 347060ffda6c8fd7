"""The diagnosis of one snapshot as numbers (mfd.diagnose.gauges computes it,
the exporter serves it): kcompactd's fragmentation scores and proactive
watermarks, and the blocks the buddy allocator can give now for the THP
order and each hugetlb size."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class NodeScore:
    node: int
    score: int          # fragmentation_score_node(), 0 .. 100
    low: int            # fragmentation_score_wmark(low=true): kcompactd stops a zone at or below
    high: int           # ... (low=false): kcompactd starts when the node score is above


@dataclass(frozen=True)
class ZoneScore:
    node: int
    zone: str
    score: int          # fragmentation_score_zone(): unweighted, 0 .. 100


@dataclass(frozen=True)
class Available:
    """Free blocks of ``order`` or larger, in order-``order`` units (what
    ``mfd can`` calls "now").  0 above the buddy allocator's largest order:
    gigantic pages come from alloc_contig_pages(), never from a free list."""
    node: int
    zone: str
    order: int
    size: int           # bytes: page size << order
    blocks: int
    thp: bool = False   # the THP order (COMPACTION_HPAGE_ORDER), which kcompactd scores


@dataclass(frozen=True)
class Diagnosis:
    nodes: Tuple[NodeScore, ...] = ()
    zones: Tuple[ZoneScore, ...] = ()
    available: Tuple[Available, ...] = ()
