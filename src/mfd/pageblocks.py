"""Pageblocks classified from /proc/kpageflags: the rules, pure and vectorised.

Compaction turns a pageblock back into a free block of pageblock order only
if every page in it is free or can be migrated; one slab page, page table or
reserved page pins the whole block.  The rules follow fs/proc/page.c
(stable_page_flags) and mm/compaction.c (isolate_migratepages_block):

page, first match wins (unmovable before movable: a reserved or zero page that
is mapped must not count as movable):
  free        KPF_BUDDY (set on every page of a free buddy block, not only
              the head: is_free_buddy_page(), 6.1 and 6.18 alike)
  unmovable   SLAB, PGTABLE, RESERVED, ZERO_PAGE, HWPOISON, OFFLINE, and
              UNEVICTABLE or MLOCKED when vm.compact_unevictable_allowed is 0
  movable     LRU, ANON, MMAP, KSM, or UPTODATE/SWAPBACKED (a page still in
              a per-CPU LRU batch); large folios too (mTHP, page cache)
  a tail      what its head is (6.1 reads LRU of the tail page itself)
  unmovable   too: a compound page with none of the above (a kernel
              allocation with __GFP_COMP; free pages are never compound)
  unknown     anything else, flags 0 above all: a page on a per-CPU free
              list reads 0, and so does a kernel allocation with no flag

block, over its pages (``valid`` False marks a page outside the zone, in an
offline or absent memory block, or KPF_NOPAGE on 6.1..6.12):
  hole        some page not valid: compaction cannot make it a free block
  huge        one compound page covers it: a PMD THP or hugetlb page (HEAD
              on its first page, TAIL on the rest), or a tail of a larger
              hugetlb page (TAIL on all); compaction skips such blocks
  pinned      some unmovable page
  free        every page free
  uncertain   some unknown page, no unmovable one
  compactable free and movable pages only
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np

# include/uapi/linux/kernel-page-flags.h (0..26, stable) and the kernel's own
# include/linux/kernel-page-flags.h (32.., "subject to change": 6.1 and 6.18 agree
# on RESERVED and MLOCKED)
KPF = {"LOCKED": 0, "UPTODATE": 3, "SWAPBACKED": 14, "SLAB": 7, "LRU": 5, "BUDDY": 10, "MMAP": 11, "ANON": 12,
       "COMPOUND_HEAD": 15, "COMPOUND_TAIL": 16, "HUGE": 17, "UNEVICTABLE": 18,
       "HWPOISON": 19, "NOPAGE": 20, "KSM": 21, "THP": 22, "OFFLINE": 23, "ZERO_PAGE": 24,
       "PGTABLE": 26, "RESERVED": 32, "MLOCKED": 33}


def _bits(*names: str) -> np.uint64:
    v = 0
    for n in names:
        v |= 1 << KPF[n]
    return np.uint64(v)


BUDDY = _bits("BUDDY")
HEAD, TAIL = _bits("COMPOUND_HEAD"), _bits("COMPOUND_TAIL")
HUGE_OR_THP = _bits("HUGE", "THP")
# UPTODATE and SWAPBACKED without LRU: a new page-cache or anon page still in
# a per-CPU folio batch (lru_add_drain() has not put it on the LRU yet).
MOVABLE = _bits("LRU", "ANON", "MMAP", "KSM", "UPTODATE", "SWAPBACKED")
NOPAGE = _bits("NOPAGE")
UNEVICTABLE = _bits("UNEVICTABLE", "MLOCKED")

# Block classes, in the order of how bad they are for a huge allocation: a
# terminal cell standing for several blocks shows the worst (highest) one.
HOLE, FREE, HUGE, COMPACTABLE, UNCERTAIN, PINNED = range(6)
CLASSES = ("hole", "free", "huge", "compactable", "uncertain", "pinned")

# What pins a block: the unmovable page kinds, each a KPF bit set.
PIN_KINDS: Tuple[Tuple[str, np.uint64], ...] = (
    ("slab", _bits("SLAB")), ("page_table", _bits("PGTABLE")),
    ("reserved", _bits("RESERVED")), ("zero_page", _bits("ZERO_PAGE")),
    ("hwpoison", _bits("HWPOISON")), ("offline", _bits("OFFLINE")),
)
UNEVICTABLE_KIND = ("unevictable", UNEVICTABLE)
KERNEL_COMPOUND = "kernel_compound"     # no KPF bit: see classify()
LARGE_FOLIO = "large_folio"             # a movable large folio compaction skips (< 6.9)
# "mm/compaction: enable compacting >0 order folios" (Zi Yan, skip_isolation_on_order()):
# absent in 6.1, present in 6.18; merged for 6.9 (the first release is not
# verified on a 6.9 kernel here).
LARGE_FOLIO_COMPACTION_SINCE = (6, 9)


@dataclass
class Tally:
    """What one or more batches of pageblocks held: per-block classes (one
    uint8 each) and movable pages in use (what compaction would migrate out,
    one uint32 each) and, for the
    pinned blocks, the kinds and memory cgroups (kpagecgroup inodes, 0 for
    none) of the pages that pin them."""

    parts: list = field(default_factory=list)     # per-block class arrays, in pfn order
    movable_parts: list = field(default_factory=list)
    kind_blocks: Dict[str, int] = field(default_factory=dict)   # pinned blocks with the kind
    kind_pages: Dict[str, int] = field(default_factory=dict)
    cgroup_pages: Dict[int, int] = field(default_factory=dict)  # unmovable pages per memcg
    unknown_pages: int = 0
    # per page of the one batch classify() saw (not kept by add()): unmovable
    page_unmovable: Optional[np.ndarray] = None

    @staticmethod
    def _joined(parts: list, dtype) -> list:
        if len(parts) != 1:
            parts[:] = [np.concatenate(parts) if parts else np.zeros(0, dtype)]
        return parts[0]

    @property
    def classes(self) -> np.ndarray:
        return self._joined(self.parts, np.uint8)

    @property
    def movable_pages(self) -> np.ndarray:
        return self._joined(self.movable_parts, np.uint32)

    def add(self, other: "Tally") -> None:
        self.parts += other.parts
        self.movable_parts += other.movable_parts
        for mine, theirs in ((self.kind_blocks, other.kind_blocks),
                             (self.kind_pages, other.kind_pages),
                             (self.cgroup_pages, other.cgroup_pages)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        self.unknown_pages += other.unknown_pages

    def add_cgroups(self, pages: Dict[int, int]) -> None:
        for k, v in pages.items():
            self.cgroup_pages[k] = self.cgroup_pages.get(k, 0) + v

    def counts(self) -> Dict[str, int]:
        n = np.bincount(self.classes, minlength=len(CLASSES))
        return {name: int(n[i]) for i, name in enumerate(CLASSES)}


def _unmovable_mask(unevictable_movable: bool):
    kinds = PIN_KINDS + (() if unevictable_movable else (UNEVICTABLE_KIND,))
    mask = np.uint64(0)
    for _, bit in kinds:
        mask |= bit
    return kinds, mask


def classify(flags: np.ndarray, valid: np.ndarray, block_pages: int,
             unevictable_movable: bool = True, large_folios_move: bool = True) -> Tally:
    """Classify ``len(flags) // block_pages`` whole pageblocks.  ``flags``:
    kpageflags entries (uint64), ``valid``: bool per page.
    ``large_folios_move``: compaction migrates a large folio that does not
    cover its block (False before LARGE_FOLIO_COMPACTION_SINCE: such a
    folio pins the block).  Pure; one pass of numpy per rule.  The cgroups
    of the pinning pages come after, for the pinned blocks alone
    (:func:`pinning_cgroups`)."""
    n = len(flags) // block_pages
    f = flags[:n * block_pages].reshape(n, block_pages)
    ok = valid[:n * block_pages].reshape(n, block_pages) & ((f & NOPAGE) == 0)
    buddy = (f & BUDDY) != 0
    kinds, unmov_mask = _unmovable_mask(unevictable_movable)
    unmov = ((f & unmov_mask) != 0) & ~buddy & ok
    movable = ((f & MOVABLE) != 0) & ~buddy & ~unmov & ok
    head = (f & HEAD) != 0
    tail = (f & TAIL) != 0
    # A tail page is what its folio is.  6.1 reads a tail's own page->flags
    # for LRU and UPTODATE, so the tails of an unmapped large page-cache folio
    # read TAIL alone; folios are naturally aligned, so a tail's head is the
    # last head before it in the same block (or outside it: a compound page
    # that covers the block, judged below).
    if tail.any():
        pos = np.where(head, np.arange(block_pages)[None, :], -1)
        last = np.maximum.accumulate(pos, axis=1)
        inherit = tail & (last >= 0) & ok
        rows = np.nonzero(inherit)[0]
        src = last[inherit]
        unmov[inherit] = unmov[rows, src]
        movable[inherit] = movable[rows, src]
    # A compound page that is neither free, movable nor huge is a kernel
    # allocation (__GFP_COMP: kmalloc_large, skb frags, ...): free pages,
    # per-CPU ones included, are never compound (free_pages_prepare()).
    kernel_compound = (head | tail) & ~buddy & ~unmov & ~movable & ok & ((f & HUGE_OR_THP) == 0)
    unmov |= kernel_compound
    unknown = ~buddy & ~unmov & ~movable & ok
    hugeish = ((f & HUGE_OR_THP) != 0) & (head | tail)
    heads = head.sum(axis=1)
    covered = hugeish.all(axis=1) & (((heads == 1) & head[:, 0]) | (heads == 0))
    # Before Zi Yan's "mm/compaction: enable compacting >0 order folios",
    # isolate_migratepages_block() skipped every compound page outside
    # alloc_contig (6.1: "if (PageCompound(page) && !cc->alloc_contig)"), so a
    # movable large folio (page cache, shmem) inside a block pins it.
    large_folio = np.zeros_like(unmov)
    if not large_folios_move:
        large_folio = (head | tail) & movable & ~covered[:, None]
        unmov |= large_folio
        movable &= ~large_folio

    cls = np.full(n, COMPACTABLE, np.uint8)
    cls[unknown.any(axis=1)] = UNCERTAIN
    cls[(buddy & ok).all(axis=1)] = FREE
    pins = unmov.any(axis=1)
    cls[pins] = PINNED
    cls[covered & ~pins] = HUGE       # the huge zero page (THP|ZERO_PAGE) pins
    cls[~ok.all(axis=1)] = HOLE
    pinned = cls == PINNED

    t = Tally(parts=[cls], movable_parts=[movable.sum(axis=1).astype(np.uint32)],
              unknown_pages=int(unknown.sum()),
              page_unmovable=unmov.reshape(-1))
    if pinned.any():
        fp = f[pinned]
        up = unmov[pinned]
        found = [(name, ((fp & bit) != 0) & up) for name, bit in kinds]
        found.append((KERNEL_COMPOUND, kernel_compound[pinned]))
        found.append((LARGE_FOLIO, large_folio[pinned]))
        for name, has in found:
            pages = int(has.sum())
            if pages:
                t.kind_pages[name] = pages
                t.kind_blocks[name] = int(has.any(axis=1).sum())
    return t


def pinning_cgroups(cgroups: np.ndarray, unmovable: np.ndarray) -> Dict[int, int]:
    """kpagecgroup inode -> unmovable pages (``unmovable``: Tally.page_unmovable
    for the same pfns).  Inode 0: no memory cgroup (slab, reserved and most
    kernel pages)."""
    ino, count = np.unique(cgroups[unmovable[:len(cgroups)]], return_counts=True)
    return {int(i): int(c) for i, c in zip(ino, count)}


def after_compaction(classes: np.ndarray, movable_pages: np.ndarray,
                     first_block: int, group: int, targets: Optional[int],
                     huge_ok: bool = False) -> int:
    """An upper bound on the free blocks of ``group`` pageblocks (``group``
    a power of two: 1 for pageblock order, 512 for 1 GiB with 2 MiB blocks)
    that perfect compaction could make: naturally aligned groups whose
    blocks are all free, compactable or uncertain (flagless pages may be
    per-CPU free pages: an upper bound counts them free), the groups with
    the fewest movable pages in use first, while those pages fit in
    ``targets`` free pages elsewhere
    (compaction's free scanner takes pages only from Movable and CMA
    pageblocks: suitable_migration_target()); None: no limit.
    ``first_block``: the pageblock number of ``classes[0]``; ``huge_ok``:
    huge blocks count too (alloc_contig_range() migrates them)."""
    ok = (classes == FREE) | (classes == COMPACTABLE) | (classes == UNCERTAIN)
    if huge_ok:
        ok |= classes == HUGE
    used = np.where(ok, movable_pages.astype(np.int64), 0)
    lo = -(-first_block // group) * group - first_block     # the first aligned block
    n = (len(ok) - lo) // group
    if n <= 0:
        return 0
    whole = ok[lo:lo + n * group].reshape(n, group).all(axis=1)
    need = np.sort(used[lo:lo + n * group].reshape(n, group).sum(axis=1)[whole])
    if targets is None:
        return int(len(need))
    return int(np.searchsorted(np.cumsum(need), targets, side="right"))


def index_runs(classes: np.ndarray) -> list:
    """[(class, blocks), ...]: the classes run-length encoded, in pfn order."""
    if not len(classes):
        return []
    edges = np.flatnonzero(np.diff(classes)) + 1
    starts = np.concatenate(([0], edges))
    lengths = np.diff(np.concatenate((starts, [len(classes)])))
    return list(zip(classes[starts].tolist(), lengths.tolist()))


def from_runs(runs) -> np.ndarray:
    """The per-block classes of index_runs() output."""
    if not runs:
        return np.zeros(0, np.uint8)
    cls, n = zip(*runs)
    return np.repeat(np.array(cls, np.uint8), np.array(n, np.int64))


def runs(classes: np.ndarray) -> list:
    """[[class name, blocks], ...]: the classes run-length encoded, in pfn order."""
    return [[CLASSES[c], n] for c, n in index_runs(classes)]


def worst_per_cell(classes: np.ndarray, per_cell: int) -> np.ndarray:
    """The worst class in each run of ``per_cell`` blocks (the last cell may
    hold fewer): what one terminal cell shows."""
    n = len(classes)
    cells = -(-n // per_cell)
    padded = np.full(cells * per_cell, HOLE, np.uint8)
    padded[:n] = classes
    return padded.reshape(cells, per_cell).max(axis=1)
