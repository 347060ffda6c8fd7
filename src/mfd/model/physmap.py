"""A map of physical memory: every pageblock of every populated zone, in
one of the classes of mfd.pageblocks, and who pins the pinned ones."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple


@dataclass
class ZoneMap:
    """One zone's pageblocks, ``first_block`` .. ``first_block + len(classes)``
    (block b covers pfns b*P .. (b+1)*P).  ``classes``: one uint8 per block
    (mfd.pageblocks' HOLE .. PINNED); ``movable_pages``: its movable pages
    in use, what compaction would migrate out.
    ``kind_blocks``/``kind_pages``: per pinning kind (slab, page_table, ...),
    the pinned blocks holding such a page and the pages; ``cgroups``:
    (memory cgroup path, unmovable pages in pinned blocks), most first, None
    without /proc/kpagecgroup; ``uncharged_pages``: those in no memcg (slab,
    reserved, most kernel allocations).  ``migratetype_blocks``: pagetypeinfo's blocks
    per migratetype, None without it.  ``polluted``/``converted``: blocks
    with an extfrag event of each kind while watched (indices into classes),
    None when not watched."""
    node: int
    zone: str
    start_pfn: int
    end_pfn: int
    first_block: int
    classes: Any
    movable_pages: Any
    kind_blocks: Dict[str, int] = field(default_factory=dict)
    kind_pages: Dict[str, int] = field(default_factory=dict)
    cgroups: Optional[List[Tuple[str, int]]] = None
    uncharged_pages: Optional[int] = None         # unmovable pages in pinned blocks, no memcg
    unknown_pages: int = 0          # flagless pages (per-CPU free pages or kernel pages)
    pcp_pages: Optional[int] = None  # of which at most this many are per-CPU free pages
    migratetype_blocks: Optional[Dict[str, int]] = None
    buddy_blocks: Optional[int] = None            # buddyinfo's blocks of pageblock order, read around
    polluted: Optional[Any] = None
    converted: Optional[Any] = None

    @property
    def blocks(self) -> int:
        return len(self.classes)


@dataclass
class PhysMap:
    host: str
    kernel: str
    time: float                       # wall clock when the map was taken
    page_size: int
    pageblock_order: int
    block_pages: int
    zones: List[ZoneMap]
    read_seconds: float               # kpageflags and kpagecgroup
    pagetypeinfo_seconds: Optional[float]
    events_seconds: Optional[float] = None
    notes: List[str] = field(default_factory=list)
