"""Take a map of physical memory (``mfd map``): read /proc/kpageflags over
each populated zone's pfn range in batches, classify its pageblocks
(mfd.pageblocks), read /proc/kpagecgroup for the pinned blocks only, and
/proc/pagetypeinfo once for the migratetypes.

Cost (measured by bench/map.py): the kernel serves about 70 MB/s of
kpageflags on this host's 6.18, 8 bytes per 4 KiB page, so 24 GiB takes about
0.8 s of one CPU in the kernel, without any lock; pagetypeinfo takes the zone
lock with interrupts off for each zone (see sources/pagetypeinfo.py): once
per map, never at a short interval.
"""
from __future__ import annotations

import os
import queue
import socket
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .. import pageblocks as pb
from ..kernel import cgroups, facts
from ..kernel.cgroupmem import memory_hierarchy
from ..kernel.kpageflags import (BATCH, KPAGECGROUP, KPAGEFLAGS, MemoryBlocks, Pace, batches,
                                 iomem_ram, memory_blocks, open_page_file, ranges_valid,
                                 read_entries)
from ..model import Filter
from ..model.pagetypes import PageTypeInfo
from ..model.physmap import PhysMap, ZoneMap
from .pagetypeinfo import PageTypeInfoError, read_pagetypeinfo
from .procfs import (BUDDYINFO, ZONEINFO, ProcfsError, parse_buddyinfo, parse_zone_limits,
                     parse_zoneinfo)

class Holes:
    """Which pfns of a node exist: online memory blocks, else System RAM,
    else only what KPF_NOPAGE says (up to 6.12)."""

    def __init__(self, say: Callable[[str], None], sysfs: str = "/sys",
                 iomem: str = "/proc/iomem", page_size: int = 4096):
        self.blocks: Optional[MemoryBlocks] = memory_blocks(sysfs, page_size)
        self.ram: List[Tuple[int, int]] = []
        self.sysfs = sysfs
        self._zone_of: Dict[int, Optional[str]] = {}
        if self.blocks is None:
            self.ram = iomem_ram(iomem, page_size)
            say("no memory blocks in /sys/devices/system/memory: holes from /proc/iomem"
                if self.ram else
                "no memory blocks in /sys and no System RAM in /proc/iomem: holes are "
                "known only where the kernel flags them (KPF_NOPAGE, up to 6.12)")
            if self.ram:
                say("without memory blocks, zones that overlap across nodes are drawn "
                    "in each")

    def valid(self, pfns: np.ndarray, node: int) -> np.ndarray:
        if self.blocks is not None:
            return self.blocks.valid(pfns, node)
        if self.ram:
            return ranges_valid(pfns, self.ram)
        return np.ones(len(pfns), bool)

    def block_zone(self, block: int) -> Optional[str]:
        """The zone an online memory block is in, from its valid_zones file
        (drivers/base/memory.c valid_zones_show(): one zone name for an
        online block, "none" for one that spans two zones)."""
        if block not in self._zone_of:
            path = os.path.join(self.sysfs, "devices/system/memory", f"memory{block}",
                                "valid_zones")
            try:
                with open(path, "rb") as f:
                    words = f.read(256).decode("ascii", "replace").split()
            except OSError:
                words = []
            self._zone_of[block] = words[0] if len(words) == 1 and words[0] != "none" else None
        return self._zone_of[block]

    def owned(self, pfns: np.ndarray, zone: str, default: bool) -> np.ndarray:
        """bool per pfn: its memory block says it is ``zone``'s, or says
        nothing and ``default``."""
        if self.blocks is None:
            return np.full(len(pfns), default)
        blk = pfns // self.blocks.block_pages
        out = np.empty(len(pfns), bool)
        for b in np.unique(blk).tolist():
            name = self.block_zone(b)
            out[blk == b] = default if name is None else name == zone
        return out


def read_pagetypes(say: Callable[[str], None]) -> Tuple[Optional[PageTypeInfo], Optional[float]]:
    """/proc/pagetypeinfo, read once for a map, and how long the kernel took
    (it holds each zone's lock with interrupts off); (None, None), said, when
    it cannot be read."""
    t0 = time.monotonic()
    try:
        return read_pagetypeinfo(), time.monotonic() - t0
    except PageTypeInfoError as e:
        say(f"{e}: the map has no migratetype column")
        return None, None


def _pageblock_order(pt: Optional[PageTypeInfo], page_size: int,
                     say: Callable[[str], None]) -> int:
    if pt is not None:
        return pt.pageblock_order
    order = facts.pageblock_order_guess(page_size)
    say(f"pageblock order {order} taken from the THP size (pagetypeinfo unread)")
    return order


def _cgroup_paths(say: Callable[[str], None]) -> Callable[[int], str]:
    where = memory_hierarchy()
    if where is None:
        say("no memory-cgroup hierarchy is mounted: cgroup inodes are shown as numbers")
        names: Dict[int, str] = {}
    else:
        names = cgroups.walk(where[0])

    def name(ino: int) -> str:
        return names.get(ino, f"inode:{ino}")
    return name


class _Zone:
    """What is known of one zone before its pages are read."""

    def __init__(self, z: dict, pcp: Optional[int] = None):
        self.node, self.zone = z["node"], z["zone"]
        self.start, self.end = z["start_pfn"], z["start_pfn"] + z["spanned"]
        self.pcp = pcp              # pages on the per-CPU lists (zoneinfo pagesets)


def _zones(flt: Filter, zoneinfo: str) -> List[_Zone]:
    with open(zoneinfo, "rb") as f:
        text = f.read(64 << 20).decode("ascii", "replace")
    try:
        pcp = {(lim.node, lim.zone): lim.pcp_count for lim in parse_zone_limits(text, zoneinfo)}
    except ProcfsError:
        pcp = {}
    out = [_Zone(z, pcp.get((z["node"], z["zone"]))) for z in parse_zoneinfo(text, zoneinfo)
           if z["present"]]
    return [z for z in out if flt.wants(z.node, z.zone)]


def _pinned_runs(cls: np.ndarray) -> List[Tuple[int, int]]:
    """[first, last) block index runs of pinned blocks."""
    p = np.concatenate(([False], cls == pb.PINNED, [False]))
    d = np.flatnonzero(np.diff(p.astype(np.int8)))
    return list(zip(d[0::2].tolist(), d[1::2].tolist()))


def _shared(z: _Zone, every: List[_Zone]) -> List[Tuple[int, int, bool]]:
    """The pfn ranges ``z`` shares with other zones of its node (ZONE_MOVABLE
    beside Normal with kernelcore=mirror, or after memory hot-add onlined
    movable), each with whether ``z`` takes it where no memory block says
    (the zone first in zoneinfo does)."""
    out = []
    for e in every:
        if e is not z and e.node == z.node and e.start < z.end and z.start < e.end:
            out.append((max(z.start, e.start), min(z.end, e.end),
                        every.index(z) < every.index(e)))
    return out


def map_zone(z: _Zone, flags_fd: int, cgroup_fd: Optional[int], holes: Holes, P: int,
             rules: Dict[str, bool], shared: List[Tuple[int, int, bool]],
             pace: Optional[Pace] = None) -> ZoneMap:
    """``rules``: classify()'s keyword arguments for the running kernel;
    ``shared``: _shared()'s ranges, each pfn of which is one zone's."""
    b0, b1 = z.start // P, -(-z.end // P)
    tally = pb.Tally()
    per_cg: Dict[int, int] = {}
    for lo, flags in batches(flags_fd, b0 * P, (b1 - b0) * P, pace=pace):  # BATCH: whole blocks
        n = min(BATCH, b1 * P - lo)
        short = None
        if len(flags) < n:                        # past the last section: none of it exists
            short = lo + len(flags)
            flags = np.concatenate((flags, np.zeros(n - len(flags), np.uint64)))
        pfns = np.arange(lo, lo + n, dtype=np.int64)
        valid = (pfns >= z.start) & (pfns < z.end) & holes.valid(pfns, z.node)
        if short is not None:
            valid &= pfns < short
        for a, b, mine in shared:
            inside = (pfns >= a) & (pfns < b)
            if inside.any():
                valid[inside] &= holes.owned(pfns[inside], z.zone, mine)
        t = pb.classify(flags, valid, P, **rules)
        tally.add(t)
        if cgroup_fd is not None and t.kind_pages:
            for first, last in _pinned_runs(t.classes):
                g = read_entries(cgroup_fd, lo + first * P, (last - first) * P, KPAGECGROUP)
                mask = t.page_unmovable[first * P:last * P]
                for ino, pages in pb.pinning_cgroups(g, mask).items():
                    per_cg[ino] = per_cg.get(ino, 0) + pages
    zm = ZoneMap(z.node, z.zone, z.start, z.end, b0, tally.classes, tally.movable_pages,
                 kind_blocks=tally.kind_blocks, kind_pages=tally.kind_pages,
                 unknown_pages=tally.unknown_pages)
    zm.cgroups = per_cg if cgroup_fd is not None else None     # inodes; named by the caller
    zm.pcp_pages = z.pcp
    return zm


def _buddy_blocks(order: int, buddyinfo: str) -> Dict[Tuple[int, str], int]:
    """Free blocks of pageblock order or larger, in pageblocks (buddyinfo)."""
    with open(buddyinfo, "rb") as f:
        counts = parse_buddyinfo(f.read(1 << 20).decode("ascii", "replace"))
    return {k: sum(n << (o - order) for o, n in enumerate(v) if o >= order)
            for k, v in counts.items()}


def take_map(flt: Filter, say: Callable[[str], None], pagetypes: bool = True,
             zoneinfo: str = ZONEINFO, buddyinfo: str = BUDDYINFO,
             flags_path: str = KPAGEFLAGS, cgroup_path: Optional[str] = KPAGECGROUP,
             sysfs: str = "/sys", max_cgroups: int = 8,
             rate: Optional[float] = None, known: Optional[PageTypeInfo] = None) -> PhysMap:
    """The map of every zone ``flt`` passes.  ``rate``: at most this many
    pfns read per second (None: as fast as the kernel serves them).
    ``known``: pagetypeinfo the caller has read already (not read again).
    ``cgroup_path`` None: no memory cgroups (recorded maps keep classes only)."""
    page_size = os.sysconf("SC_PAGE_SIZE")
    flags_fd = open_page_file(flags_path, required=True)
    cgroup_fd = None
    try:
        cgroup_fd = None if cgroup_path is None else open_page_file(cgroup_path, required=False)
        if cgroup_fd is None and cgroup_path is not None:
            say(f"no {cgroup_path} (a kernel without CONFIG_MEMCG): the map has no "
                "cgroup column")
        pt, pt_seconds = known, None
        if pagetypes and known is None:
            pt, pt_seconds = read_pagetypes(say)
        order = _pageblock_order(pt, page_size, say)
        P = 1 << order
        holes = Holes(say, sysfs, page_size=page_size)
        rules = {"unevictable_movable":
                 facts.sysctl_int("vm/compact_unevictable_allowed", 1) != 0,
                 "large_folios_move":
                 tuple(facts.kernel_version()[:2]) >= pb.LARGE_FOLIO_COMPACTION_SINCE}
        every = _zones(Filter(), zoneinfo)          # overlaps count filtered-out zones too
        zones = [z for z in every if flt.wants(z.node, z.zone)]
        before = _buddy_blocks(order, buddyinfo)
        t0 = time.monotonic()
        pace = Pace(rate)
        maps: List[ZoneMap] = []
        for z in zones:
            shared = _shared(z, every)
            if shared and holes.blocks is None:
                say(f"node {z.node} zone {z.zone} overlaps another zone of its node, and no "
                    "memory block says whose pfns are whose: the first zone gets them")
            maps.append(map_zone(z, flags_fd, cgroup_fd, holes, P, rules, shared, pace))
        read_seconds = time.monotonic() - t0
        after = _buddy_blocks(order, buddyinfo)
    finally:
        os.close(flags_fd)
        if cgroup_fd is not None:
            os.close(cgroup_fd)
    name = _cgroup_paths(say) if cgroup_fd is not None else None
    for zm in maps:
        key = (zm.node, zm.zone)
        if name is not None:
            zm.uncharged_pages = zm.cgroups.pop(0, 0)
            top = sorted(zm.cgroups.items(), key=lambda kv: (-kv[1], kv[0]))
            zm.cgroups = [(name(ino), pages) for ino, pages in top[:max_cgroups]]
        zm.buddy_blocks = (before.get(key, 0) + after.get(key, 0)) // 2
        if pt is not None and key in pt.blocks:
            zm.migratetype_blocks = dict(pt.blocks[key])
    return PhysMap(socket.gethostname(), os.uname().release, time.time(), page_size, order, P,
                   maps, read_seconds, pt_seconds)


def attach_block_events(pm: PhysMap, polluted: Dict[int, int], converted: Dict[int, int],
                        seconds: float) -> None:
    """Give each zone the pageblocks (indices into its classes) that extfrag
    events polluted or converted while watched.  A block is a zone's when it
    lies in the zone's span and is not a hole there (zones of two nodes can
    span the same pfns)."""
    pm.events_seconds = round(seconds, 3)
    for z in pm.zones:
        for name, counts in (("polluted", polluted), ("converted", converted)):
            idx = np.fromiter((b - z.first_block for b in counts
                               if z.first_block <= b < z.first_block + z.blocks),
                              np.int64)
            if len(idx):
                idx = idx[z.classes[idx] != pb.HOLE]
            setattr(z, name, set(idx.tolist()))


class PeriodicMaps:
    """Pageblock maps every ``interval`` seconds, taken by one thread at
    ``rate`` pfns per second (bench/map.py: uncapped, continuous reading of
    kpageflags slows page faults on the other CPUs by a fifth; 4 GiB/s does
    not), for ``mfd --record --map-interval``.  /proc/pagetypeinfo is read
    once, at the start, for the pageblock order: a recorded map keeps the
    classes only.  :meth:`ready` hands over the finished maps; a map that
    fails stops the maps (said once), not the monitor."""

    def __init__(self, flt: Filter, interval: float, say: Callable[[str], None],
                 rate: Optional[float]):
        os.close(open_page_file(KPAGEFLAGS, required=True))    # root: said now, not later
        try:
            self.pt: Optional[PageTypeInfo] = read_pagetypeinfo()
        except PageTypeInfoError:
            self.pt = None
        said: set = set()

        def once(msg: str) -> None:       # the same facts every map: say them once
            if msg not in said:
                said.add(msg)
                say(msg)
        self.flt, self.interval, self.say, self.rate = flt, interval, once, rate
        self._q: "queue.Queue" = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pagemaps", daemon=True)
        self.failed = False

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self._q.put(take_map(self.flt, self.say, pagetypes=False, rate=self.rate,
                                     known=self.pt, cgroup_path=None))
            except Exception as e:          # handed to the main thread by ready()
                self._q.put(e)
                return
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def ready(self) -> List[PhysMap]:
        out = []
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                return out
            if isinstance(item, Exception):
                self.failed = True
                self.say(f"pageblock maps stopped: {item}; monitoring goes on")
            else:
                out.append(item)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(0.5)          # a daemon: a read in progress ends with mfd
