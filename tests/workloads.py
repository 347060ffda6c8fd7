"""Workloads that make fragmentation happen on a real kernel, for mfd's tests
and benchmarks (mfd itself never runs them).

Each runs in a child process, so the events it causes carry its own pid:

    python tests/workloads.py page-tables
    python tests/workloads.py fragment --mib 4096 --hold

A child prints one line ``ready {json}`` when it has done its work (the json
says what it did) and, with ``--hold``, keeps its memory until its stdin is
closed.  :class:`Child` drives that from Python.

What makes what happen (verified on the development VM, see ENVIRONMENT.md):

* page-tables: page-table pages are unmovable; one page-table page per 2 MiB
  read in a huge sparse mapping drains the unmovable free lists, and the
  allocator steals movable pageblocks (kmem:mm_page_alloc_extfrag,
  alloc_migratetype Unmovable, fallback Movable, change_ownership 1).
  Stolen pageblocks stay unmovable when freed (until they merge with a
  movable buddy), so a later run must ask for more than the free unmovable
  pages to steal again: by default it sizes itself from /proc/pagetypeinfo.
* populate: faults in anonymous memory (movable), in the kernel with
  MADV_POPULATE_WRITE; the high-order variant (--thp) faults huge pages.
* fragment: faults in memory, then gives back every other page: free memory
  in single pages that cannot merge (the buddy of each is in use).
* HugeBlocks: takes every free block of order >= 9 as hugetlb pages, so that
  huge-page faults (populate --thp) must compact directly, which THP's
  default "defrag=madvise" lets madvised regions do.
* compact_memory(): writes /proc/sys/vm/compact_memory (root): every zone is
  compacted.  It changes the state being measured: tests only.
"""
from __future__ import annotations

import argparse
import json
import mmap
import os
import select
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

PAGE = mmap.PAGESIZE
HUGE = 2 << 20
MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)  # Linux 5.14; Python 3.12 names it
MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)

__all__ = ["Child", "HugeBlocks", "page_tables", "populate", "fragment", "steal",
           "compact_memory", "free_blocks_at_least", "free_pages_of_type", "pcp_pages",
           "fault_throughput"]


def _anon(size: int, noreserve: bool = False) -> mmap.mmap:
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | (MAP_NORESERVE if noreserve else 0)
    return mmap.mmap(-1, size, flags=flags)


def _fault_in(m: mmap.mmap, size: int) -> None:
    """Fault in every page of m, inside the kernel when it can (one syscall)."""
    try:
        m.madvise(MADV_POPULATE_WRITE, 0, size)
    except OSError:  # kernel before 5.14: touch each page from here
        for off in range(0, size, PAGE):
            m[off] = 1


def page_tables(gib: Optional[int] = None, margin_mib: int = 128) -> mmap.mmap:
    """Read one byte every 2 MiB of a sparse mapping: one page-table page
    (unmovable) per read, and no data page (reads map the shared zero page).
    ``gib`` GiB of mapping, or by default enough to use up the free unmovable
    pages (/proc/pagetypeinfo) and ``margin_mib`` MiB more, so that the
    allocator must steal.  (The per-CPU lists hold unmovable pages too, which
    no file counts apart from the others: ask for more if that was not
    enough.)  Returns the mapping (keep it to keep the page tables)."""
    if gib is None:
        need = free_pages_of_type("Unmovable") + (margin_mib << 20) // PAGE
        size = max(need, 1 << 14) * HUGE
    else:
        size = gib << 30
    m = _anon(size, noreserve=True)
    m.madvise(mmap.MADV_NOHUGEPAGE)  # else a touch could fault a whole huge page
    for off in range(0, size, HUGE):
        m[off]
    return m


def pcp_pages(path: str = "/proc/zoneinfo") -> int:
    """Free pages held in the per-CPU lists of every zone ("count:" lines)."""
    import re

    with open(path) as f:
        return sum(int(n) for n in re.findall(r"^\s+count:\s+(\d+)", f.read(), re.M))


def free_pages_of_type(migratetype: str, path: str = "/proc/pagetypeinfo") -> int:
    """Free pages on the ``migratetype`` free lists of every zone (root only;
    0 when unreadable).  Pages on the per-CPU lists are not counted."""
    total = 0
    try:
        with open(path) as f:
            for line in f:
                head, _, counts = line.partition(", type ")
                if not counts or not head.startswith("Node"):
                    continue
                fields = counts.split()
                if fields[0] == migratetype:
                    total += sum(int(n) << o for o, n in enumerate(fields[1:]))
    except OSError:
        return 0
    return total


def populate(mib: int, thp: bool = False) -> mmap.mmap:
    """Fault in ``mib`` MiB of anonymous memory: base pages, or huge pages
    with ``thp`` (order-9 allocations; with THP "defrag" at its default
    "madvise", such faults compact directly when no free huge page exists)."""
    size = mib << 20
    m = _anon(size + (HUGE if thp else 0))
    m.madvise(mmap.MADV_HUGEPAGE if thp else mmap.MADV_NOHUGEPAGE)
    _fault_in(m, size)
    return m


def free_blocks_at_least(order: int, path: str = "/proc/buddyinfo") -> int:
    """Free blocks of ``order`` or more, in pages of that order, over all zones."""
    total = 0
    with open(path) as f:
        for line in f:
            counts = [int(x) for x in line.split()[4:]]
            total += sum(n << (o - order) for o, n in enumerate(counts) if o >= order)
    return total


def fragment(mib: int, chunk_mib: int = 256,
             between: Optional[Callable[[], None]] = None) -> Dict[str, object]:
    """Fault in ``mib`` MiB, then give back every other page: free memory in
    single pages whose buddies are in use, unable to merge.  All of it is
    touched before anything is given back, so the faults cannot reuse the
    holes; ``between`` runs in between.  The mappings are in the returned
    dict's "maps" (keep them)."""
    maps = [populate(chunk_mib) for _ in range(mib // chunk_mib)]
    if between is not None:
        between()
    chunk = chunk_mib << 20
    for m in maps:
        for off in range(PAGE, chunk, 2 * PAGE):
            m.madvise(mmap.MADV_DONTNEED, off, PAGE)
    return {"maps": maps, "touched_mib": len(maps) * chunk_mib,
            "released_pages": len(maps) * chunk // PAGE // 2}


class HugeBlocks:
    """Take every free block of order >= 9 as hugetlb pages (root), so that
    the next huge-page allocation must compact; gives them back on exit.

    Writing /proc/sys/vm/nr_hugepages allocates huge pages from the free
    lists; a request beyond the free blocks compacts in this task.  Leaves
    at least ``floor_mib`` MiB free (fragment memory first: its holes are
    free memory no huge page can use), so the machine keeps room.
    """

    def __init__(self, floor_mib: int = 2048, path: str = "/proc/sys/vm/nr_hugepages"):
        self.floor_mib, self.path = floor_mib, path
        self.before: Optional[int] = None
        self.taken = 0

    def _set(self, n: int) -> int:
        with open(self.path, "w") as f:
            f.write(f"{n}\n")
        with open(self.path) as f:
            return int(f.read())

    def __enter__(self) -> "HugeBlocks":
        with open(self.path) as f:
            self.before = int(f.read())
        have = self.before
        for _ in range(8):  # the zone can grow meanwhile (deferred page init)
            want = free_blocks_at_least(9)
            # Free memory outside those blocks stays free; only it counts for the floor.
            room = (_meminfo()["MemFree"] >> 10) - self.floor_mib
            want = min(want, max(0, room // 2))
            if want == 0:
                break
            got = self._set(have + want)
            if got == have:
                break
            have = got
        self.taken = have - self.before
        return self

    def __exit__(self, *exc) -> bool:
        if self.before is not None:
            self._set(self.before)
        return False


def _meminfo(path: str = "/proc/meminfo") -> Dict[str, int]:
    """/proc/meminfo in kB."""
    info = {}
    with open(path) as f:
        for line in f:
            name, _, rest = line.partition(":")
            info[name] = int(rest.split()[0])
    return info


def compact_memory(path: str = "/proc/sys/vm/compact_memory") -> None:
    """Compact every zone of every node now (root).  Tests only."""
    with open(path, "w") as f:
        f.write("1\n")


def fault_throughput(mib: int, seconds: float, thp: bool = False, cpu: bool = False) -> float:
    """Pages (4 KiB, or huge pages with ``thp``) faulted in per second: map
    ``mib`` MiB, fault it in, unmap, again, for ``seconds``.  With ``cpu``,
    per second of this process's CPU time (the faults run in it), which
    other load on the machine disturbs less than it does wall-clock time."""
    done = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    while True:
        m = populate(mib, thp=thp)
        m.close()
        done += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    if cpu:
        elapsed = time.process_time() - cpu_start
    per = (mib << 20) // (HUGE if thp else PAGE)
    return done * per / elapsed


def steal(seconds: float, gib: Optional[int] = None, mib: int = 2048) -> int:
    """Unmovable then movable memory in turns, for ``seconds``: a steady
    stream of pageblock steals both ways.  Returns the rounds done."""
    rounds = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        page_tables(gib).close()
        populate(mib).close()
        rounds += 1
    return rounds


class Child:
    """One workload in a child process (``python tests/workloads.py ...``)."""

    def __init__(self, *argv: str, python: str = sys.executable, prefix: List[str] = (),
                 preexec: Optional[Callable[[], None]] = None):
        """``prefix``: a command to run it under (setpriv, to run it as another user);
        ``preexec``: run in the child before it starts (joining a cgroup)."""
        self.argv = [*prefix, python, os.path.abspath(__file__), *argv]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, preexec_fn=preexec)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ready(self, timeout: float = 300, word: str = "ready") -> dict:
        """Wait for the child's ``ready`` line (or another ``word``); its json."""
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if r else ""
        if not line.startswith(word + " "):
            self.release()
            raise RuntimeError(f"workload {' '.join(self.argv[2:])} failed: "
                               f"{line.strip() or self.proc.stderr.read().strip() or 'timed out'}")
        return json.loads(line.split(" ", 1)[1])

    def proceed(self) -> None:
        """Let a paused child (fragment --pause) go on."""
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def release(self, timeout: float = 60) -> int:
        """Let the child exit (it frees its memory) and reap it."""
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def run(self, timeout: float = 300) -> dict:
        """Start-to-end for workloads that do not hold: ready, then reaped."""
        try:
            return self.ready(timeout)
        finally:
            self.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()
        return False


def _pause() -> None:
    print("paused {}", flush=True)
    sys.stdin.readline()


def set_comm(name: str) -> None:
    """prctl(PR_SET_NAME): what the kernel reports as this task's comm."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(15, ctypes.c_char_p(name.encode("utf-8", "surrogateescape")[:15]), 0, 0, 0):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NAME)")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python tests/workloads.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--comm", help="set this process's comm first (prctl PR_SET_NAME): the name "
                                  "its events carry, up to 15 bytes of anything")
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("page-tables", help="page-table pages from a sparse mapping (extfrag steals)")
    s.add_argument("--gib", type=int, help="mapping size (default: enough to use up the free "
                                            "unmovable pages, and 128 MiB more)")
    s = sub.add_parser("populate", help="fault in anonymous memory")
    s.add_argument("--mib", type=int, required=True)
    s.add_argument("--thp", action="store_true", help="huge pages (order 9)")
    s = sub.add_parser("fragment", help="leave free memory in single pages")
    s.add_argument("--mib", type=int, required=True)
    s.add_argument("--pause", action="store_true",
                   help="after faulting in, print 'paused' and wait for a line on stdin")
    s = sub.add_parser("steal", help="page-tables and populate in turns, for --seconds")
    s.add_argument("--seconds", type=float, default=10.0)
    s = sub.add_parser("throughput", help="page faults per second")
    s.add_argument("--mib", type=int, default=256)
    s.add_argument("--seconds", type=float, default=2.0)
    s.add_argument("--thp", action="store_true")
    for s in sub.choices.values():
        s.add_argument("--hold", action="store_true", help="keep the memory until stdin closes")
    args = p.parse_args(argv)
    if args.comm is not None:
        set_comm(args.comm)

    keep: object = None
    if args.what == "page-tables":
        keep = page_tables(args.gib)
        info: dict = {"touches": len(keep) // HUGE}
    elif args.what == "populate":
        keep = populate(args.mib, thp=args.thp)
        info = {"mib": args.mib}
    elif args.what == "fragment":
        info = fragment(args.mib, between=_pause if args.pause else None)
        keep = info.pop("maps")
    elif args.what == "steal":
        info = {"rounds": steal(args.seconds)}
    else:
        info = {"per_second": fault_throughput(args.mib, args.seconds, thp=args.thp)}
    print("ready " + json.dumps(info), flush=True)
    if args.hold:
        sys.stdin.read()  # until the parent closes our stdin
    del keep
    return 0


if __name__ == "__main__":
    sys.exit(main())
