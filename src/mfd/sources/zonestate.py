"""One look at what the allocator weighs, from /proc: the buddy counts
(buddyinfo), each zone's watermarks and reserves (zoneinfo) and, for root,
the free lists and pageblocks per migratetype (pagetypeinfo).  For the
questions ``mfd can`` and ``mfd doctor`` answer, not for every interval:
pagetypeinfo is expensive for the kernel (see sources/pagetypeinfo.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from ..model import Snapshot
from ..model.pagetypes import PageTypeInfo, ZoneLimits
from .pagetypeinfo import PageTypeInfoError, read_pagetypeinfo
from .procfs import ProcfsSource, read_zone_limits


@dataclass(frozen=True)
class ZoneState:
    snapshot: Snapshot
    limits: Sequence[ZoneLimits]
    pagetypes: Optional[PageTypeInfo]
    pagetypes_problem: Optional[str]     # why pagetypes is None (not root, say)

    def nr_free(self) -> Dict[Tuple[int, str], Tuple[int, ...]]:
        return {(z.node, z.zone): tuple(z.nr_free) for z in self.snapshot.zones()
                if z.populated}

    def limits_of(self) -> Dict[Tuple[int, str], ZoneLimits]:
        return {(z.node, z.zone): z for z in self.limits}


def read_zone_state(pagetypes: bool = True) -> ZoneState:
    snap = ProcfsSource().snapshot()
    limits: List[ZoneLimits] = read_zone_limits()
    pt, problem = None, None
    if pagetypes:
        try:
            pt = read_pagetypeinfo()
        except PageTypeInfoError as e:
            problem = str(e)
    return ZoneState(snap, limits, pt, problem)
