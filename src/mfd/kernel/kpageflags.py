"""/proc/kpageflags and /proc/kpagecgroup (fs/proc/page.c), and where the
holes in physical memory are.

Entry i of each file is a u64 for pfn i; offsets and lengths must be
multiples of 8.  Both are mode 0400.  The kernel takes no lock to serve
them: each pfn is read on its own (6.18's snapshot_page() copies up to three
struct pages per pfn), so a read races with the allocator, and mfd reads in
batches of BATCH entries, as tools/mm/page-types.c does, never one at a time.

Holes: up to 6.12 a pfn with no online struct page reads KPF_NOPAGE; 6.18's
kpage_read() writes 0 for it instead (Liu Ye's "fs/proc/page: Refactoring to
reduce code duplication", 2025), which a flagless page also reads.  So mfd
takes the memory that exists from the memory-block sysfs files
(/sys/devices/system/memory, CONFIG_MEMORY_HOTPLUG's view of every section,
online or not) and, without them, from /proc/iomem's "System RAM".
"""
from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import MfdError

KPAGEFLAGS = "/proc/kpageflags"
KPAGECGROUP = "/proc/kpagecgroup"
BATCH = 64 << 10          # entries per pread: 512 KiB, page-types' KPAGEFLAGS_BATCH
MEMORY = "devices/system/memory"
NODE = "devices/system/node"
MAX_IOMEM = 4 << 20       # /proc/iomem is a few KiB; bound what a strange one costs


class PageFileError(MfdError):
    """A kpage* file mfd cannot read (one line: what to do)."""


def open_page_file(path: str, required: bool = True) -> Optional[int]:
    """The file opened read-only, or None when it is absent and not required
    (kpagecgroup without CONFIG_MEMCG)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except PermissionError:
        raise PageFileError(f"the pageblock map needs root: {path} is readable by root "
                            "only (run with sudo)") from None
    except FileNotFoundError:
        if required:
            raise PageFileError(f"{path} is missing: this kernel was built without "
                                "CONFIG_PROC_PAGE_MONITOR, so mfd map cannot read pages") from None
        return None
    except OSError as e:
        raise PageFileError(f"cannot open {path}: {e.strerror}") from None


def read_entries(fd: int, start: int, count: int, path: str = KPAGEFLAGS) -> np.ndarray:
    """Entries ``start`` .. ``start + count`` (uint64), in preads of at most
    BATCH entries.  Shorter when the file ends first: the kernel stops at
    get_max_dump_pfn(), max_pfn rounded up to a section."""
    out = np.empty(count, np.uint64)
    got = 0
    while got < count:
        n = min(BATCH, count - got)
        try:
            buf = os.pread(fd, n * 8, (start + got) * 8)
        except OSError as e:
            raise PageFileError(f"cannot read {path} at pfn {start + got:#x}: "
                                f"{e.strerror}") from None
        if len(buf) % 8:
            raise PageFileError(f"{path} returned {len(buf)} bytes, not whole entries")
        k = len(buf) // 8
        out[got:got + k] = np.frombuffer(buf, np.uint64)
        got += k
        if k < n:
            break
    return out[:got]


@dataclass(frozen=True)
class MemoryBlocks:
    """Memory blocks of ``block_pages`` pages each: ``node_of[i]`` is the
    node of online block i, -1 for an offline or absent one."""
    block_pages: int
    node_of: np.ndarray          # int32 per block id
    offline: int                 # blocks that exist but are not online

    def valid(self, pfns: np.ndarray, node: int) -> np.ndarray:
        """bool per pfn: in an online block of ``node``."""
        blk = pfns // self.block_pages
        inside = blk < len(self.node_of)
        out = np.zeros(len(pfns), bool)
        out[inside] = self.node_of[blk[inside]] == node
        return out


def _read_small(path: str, limit: int = 4096) -> Optional[str]:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("ascii", "replace").strip()
    except OSError:
        return None


def _numbered(names, prefix: str) -> List[int]:
    return [int(n[len(prefix):]) for n in names
            if n.startswith(prefix) and n[len(prefix):].isdigit() and n[len(prefix):].isascii()]


def memory_blocks(sysfs: str = "/sys", page_size: int = 4096) -> Optional[MemoryBlocks]:
    """The memory blocks of /sys/devices/system/memory with their node (from
    /sys/devices/system/node/nodeN/memoryM), or None without that directory.
    Without node directories (no CONFIG_NUMA) every block is node 0's."""
    top = os.path.join(sysfs, MEMORY)
    size = _read_small(os.path.join(top, "block_size_bytes"))
    try:
        ids = _numbered(os.listdir(top), "memory")
        block_pages = int(size or "", 16) // page_size
    except (OSError, ValueError):
        return None
    if block_pages <= 0 or not ids:
        return None
    node_dir = os.path.join(sysfs, NODE)
    owner: Dict[int, int] = {}
    try:
        for node in _numbered(os.listdir(node_dir), "node"):
            for m in _numbered(os.listdir(os.path.join(node_dir, f"node{node}")), "memory"):
                owner.setdefault(m, node)
    except OSError:
        owner = {}
    node_of = np.full(max(ids) + 1, -1, np.int32)
    offline = 0
    for i in ids:
        if _read_small(os.path.join(top, f"memory{i}", "state")) != "online":
            offline += 1
            continue
        node_of[i] = owner.get(i, 0 if not owner else -1)
    return MemoryBlocks(block_pages, node_of, offline)


def parse_iomem_ram(text: str, page_size: int = 4096) -> List[Tuple[int, int]]:
    """[start_pfn, end_pfn) of each top-level "System RAM" range of
    /proc/iomem (addresses read as 0 for anyone but root)."""
    out = []
    for line in text.splitlines():
        if line[:1].isspace():
            continue                    # a child resource (Kernel code, ...)
        span, sep, name = line.partition(" : ")
        lo, dash, hi = span.partition("-")
        if not sep or not dash or name.strip() != "System RAM":
            continue
        try:
            a, b = int(lo, 16), int(hi, 16) + 1
        except ValueError:
            continue
        if b > a:
            out.append((-(-a // page_size), b // page_size))
    return out


def iomem_ram(path: str = "/proc/iomem", page_size: int = 4096) -> List[Tuple[int, int]]:
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_IOMEM).decode("ascii", "replace")
    except OSError:
        return []
    ranges = parse_iomem_ram(text, page_size)
    return [] if all(b <= 1 for _a, b in ranges) else ranges   # zeros: not root


def ranges_valid(pfns: np.ndarray, ranges: List[Tuple[int, int]]) -> np.ndarray:
    out = np.zeros(len(pfns), bool)
    for a, b in ranges:
        out |= (pfns >= a) & (pfns < b)
    return out


class Pace:
    """At most ``rate`` entries per second over a whole map (None: no cap):
    the reader sleeps before a batch that would run ahead of the rate."""

    def __init__(self, rate: Optional[float]):
        self.rate = rate
        self.start = time.monotonic()
        self.done = 0

    def wait(self, entries: int, stop: threading.Event) -> None:
        """Sleep until ``entries`` more are due, or until ``stop`` is set
        (Ctrl-C must not wait out a slow rate)."""
        if self.rate:
            ahead = self.start + self.done / self.rate - time.monotonic()
            if ahead > 0:
                stop.wait(ahead)
        self.done += entries


def batches(fd: int, first: int, count: int, path: str = KPAGEFLAGS, ahead: int = 2,
            pace: Optional[Pace] = None):
    """(pfn, entries) for ``first`` .. ``first + count`` in BATCH-entry
    pieces, read by one thread up to ``ahead`` pieces ahead of the caller: the
    kernel's work for the next piece (pread releases the GIL) overlaps the
    caller's classification of this one.  Memory stays at ``ahead + 1``
    pieces (512 KiB each)."""
    q: "queue.Queue" = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def reader():
        try:
            for lo in range(first, first + count, BATCH):
                if stop.is_set():
                    return
                n = min(BATCH, first + count - lo)
                if pace is not None:
                    pace.wait(n, stop)
                    if stop.is_set():
                        return
                q.put((lo, read_entries(fd, lo, n, path)))
            q.put(None)
        except BaseException as e:          # handed to the caller, raised there
            q.put(e)

    t = threading.Thread(target=reader, name="kpageflags", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():                 # unblock a reader waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            t.join(0.01)
