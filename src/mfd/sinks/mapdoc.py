"""``mfd map --json``: one object with the per-zone counts and the class of
every pageblock as run-length encoded runs, in pfn order."""
from __future__ import annotations

from typing import List

from .. import pageblocks as pb
from ..model.physmap import PhysMap, ZoneMap


def zone_doc(z: ZoneMap, block_pages: int) -> dict:
    counts = dict(zip(pb.CLASSES, (int(n) for n in _bincount(z))))
    return {
        "node": z.node, "zone": z.zone, "start_pfn": z.start_pfn, "end_pfn": z.end_pfn,
        "first_block": z.first_block, "first_block_pfn": z.first_block * block_pages,
        "blocks": z.blocks, "counts": counts,
        "buddyinfo_blocks": z.buddy_blocks,
        "unknown_pages": z.unknown_pages,
        # flagless pages are per-CPU free pages (at most pcp_pages, zoneinfo's
        # pagesets) or kernel pages with no flag: of unknown_pages, at least
        # unknown_pages - pcp_pages are allocated
        "pcp_pages": z.pcp_pages,
        "pinned_by_kind": {k: {"blocks": z.kind_blocks[k], "pages": z.kind_pages[k]}
                           for k in sorted(z.kind_pages, key=lambda k: -z.kind_pages[k])},
        "pinned_by_cgroup": (None if z.cgroups is None else
                             [{"cgroup": c, "pages": n} for c, n in z.cgroups]),
        "pinned_uncharged_pages": z.uncharged_pages,
        "migratetype_blocks": z.migratetype_blocks,
        "polluted_blocks": None if z.polluted is None else len(z.polluted),
        "converted_blocks": None if z.converted is None else len(z.converted),
        # pageblock numbers (pfn >> pageblock_order), as the events' pfns give them
        "polluted": _numbers(z, z.polluted), "converted": _numbers(z, z.converted),
        "runs": pb.runs(z.classes),
    }


def _numbers(z: ZoneMap, idx):
    return None if idx is None else sorted(z.first_block + i for i in idx)


def _bincount(z: ZoneMap):
    import numpy as np
    return np.bincount(z.classes, minlength=len(pb.CLASSES))


def map_doc(pm: PhysMap, notes: List[str]) -> dict:
    return {"host": pm.host, "kernel": pm.kernel, "time": pm.time, "page_size": pm.page_size,
            "pageblock_order": pm.pageblock_order, "pages_per_block": pm.block_pages,
            "classes": list(pb.CLASSES), "read_seconds": round(pm.read_seconds, 4),
            "pagetypeinfo_seconds": (None if pm.pagetypeinfo_seconds is None
                                     else round(pm.pagetypeinfo_seconds, 4)),
            "events_seconds": pm.events_seconds,
            "zones": [zone_doc(z, pm.block_pages) for z in pm.zones], "notes": notes}
