"""``mfd map``: every pageblock of physical memory classified (free,
compactable, pinned, huge, uncertain, hole) and drawn, with what pins the
pinned ones.  Root: /proc/kpageflags is 0400."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from typing import List

from .. import ebpf
from ..errors import MfdError, UsageError
from ..kernel.kpageflags import KPAGEFLAGS, open_page_file
from ..safefs import output_target
from ..model import Filter
from ..sinks.mapdoc import map_doc
from ..sinks.maptext import render
from ..kernel.facts import pageblock_order_guess
from ..sources.pagemap import attach_block_events, read_pagetypes, take_map
from ..sources.procfs import ProcfsSource
from ..term import info, noted
from . import common

EPILOG = """\
examples:
  sudo mfd map                 the map of every populated zone, fitted to the terminal
  sudo mfd map -i 0 -c Normal  node 0's Normal zone
  sudo mfd map --json | jq '.zones[] | {zone, counts}'
  sudo mfd map --png map.png --html map.html   pictures to look at later
  sudo mfd map --no-pagetypeinfo   without reading /proc/pagetypeinfo
  sudo mfd map --events 30     watch extfrag events for 30 s, then mark the pageblocks
                               they polluted (!) and count those they converted

A pageblock (2 MiB with 4 KiB pages) is
  free         every page free in the buddy allocator
  compactable  free and movable pages only: compaction can empty it
  pinned       at least one unmovable page (slab, page table, reserved, ...)
  huge         one THP or hugetlb page covers it
  uncertain    pages with no flags: per-CPU free pages or kernel allocations
  hole         not all of it is memory of this zone (a hole, offline, another node)
A cell shows the worst class among its pageblocks.  Compactable is an upper
bound: pages pinned by GUP or DMA look movable in /proc/kpageflags.

Cost: /proc/kpageflags is read once over every zone (8 bytes per 4 KiB page,
about 1 s for 24 GiB on 6.18, no lock taken); /proc/kpagecgroup only for the
pinned blocks; /proc/pagetypeinfo once, which takes each zone's lock with
interrupts off while it counts (--no-pagetypeinfo skips it).
"""


def build_parser():
    p = common.parser("mfd map", "Draw physical memory one pageblock per cell: free, "
                      "compactable, pinned, huge, with who pins it (root).", EPILOG)
    common.add_filter(p)
    p.add_argument("--json", action="store_true",
                   help="one JSON object: per-zone counts and every pageblock's class as runs")
    p.add_argument("--png", metavar="FILE", type=common.path_arg,
                   help="write the map as a PNG picture ('-': stdout; needs matplotlib)")
    p.add_argument("--html", metavar="FILE", type=common.path_arg,
                   help="write the map as one HTML page; hover a cell for its pfns and counts")
    common.add_follow_symlinks(p)
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour the map (auto: on a terminal without NO_COLOR or TERM=dumb)")
    p.add_argument("--events", type=common.ranged(float, "a number of seconds", 0.1, 86401),
                   metavar="SECONDS",
                   help="first watch kmem:mm_page_alloc_extfrag for SECONDS (Ctrl-C stops "
                        "early), then draw with the polluted and converted pageblocks")
    p.add_argument("--rate", type=common.ranged(float, "a number of GiB per second", 0.01,
                                                100000), metavar="GIB_PER_S",
                   help="read the page flags of at most this much memory per second "
                        "(default: as fast as the kernel serves them, about 25 GiB/s here)")
    p.add_argument("--no-pagetypeinfo", action="store_true",
                   help="do not read /proc/pagetypeinfo (no migratetypes, no compaction targets)")
    common.add_debug(p, "show tracebacks")
    return p


def use_color(choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    return (sys.stdout.isatty() and "NO_COLOR" not in os.environ
            and os.environ.get("TERM", "dumb") != "dumb")


def watch(seconds: float, order: int, debug: bool):
    """Count extfrag events per pageblock of ``order`` for ``seconds`` (or
    until Ctrl-C), through the monitor's extfrag group (bpf/extfrag.bpf.c
    buckets them in the kernel): (polluted, converted, seconds watched)."""
    from ..sources.events import EventSource
    ev = EventSource(["extfrag"], note=info, debug=debug, pageblock_order=order)
    ebpf.release_loader()               # loaded: the compiler's process can go
    t0 = time.monotonic()
    try:
        try:
            time.sleep(seconds)
        except KeyboardInterrupt:           # the user has seen enough: draw now
            info(f"watched {time.monotonic() - t0:.1f} s of {seconds:g}")
        result = ev.poll().get("extfrag")
        group = ev.groups[0]
    finally:
        ev.close()
    if result.pageblocks_dropped:
        info(f"{result.pageblocks_dropped} extfrag events found no room in the pageblock map")
    return group.polluted, group.converted, time.monotonic() - t0


def _check_outputs(args) -> None:
    outs = {"--png": args.png, "--html": args.html}
    if sum(p == "-" for p in outs.values()) + (args.json and "-" in outs.values()) > 1 or \
            (args.png == "-" and args.html == "-"):
        raise UsageError("only one of --json, --png - and --html - can write to stdout")
    files = [p for p in outs.values() if p and p != "-"]
    if len(set(map(os.path.abspath, files))) < len(files):
        raise UsageError("--png and --html name the same file")
    if args.follow_symlinks and not files:
        raise UsageError("--follow-symlinks needs an output file (--png or --html)")
    # A planted symlink or a missing directory is said now, not after a map
    # (and minutes of --events); the write checks again (mfd.safefs).
    for path in files:
        output_target(path, args.follow_symlinks)
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise MfdError(f"cannot write {path}: no directory {folder}")


def run(args) -> int:
    _check_outputs(args)
    flt = Filter(args.node, args.zone).resolve_in(ProcfsSource().snapshot())
    common.require_stdout("the map")
    plots = None
    if args.png:
        try:
            from ..report import mapimage as plots
        except ImportError:
            raise common.no_matplotlib() from None
    # pagetypeinfo first: events are bucketed by the kernel's pageblock order,
    # which it prints, and the map reuses it
    os.close(open_page_file(KPAGEFLAGS))       # not root: that one line, before anything
    pt, pt_seconds = (None, None) if args.no_pagetypeinfo else read_pagetypes(info)
    watched = None
    if args.events:
        watched = watch(args.events, pt.pageblock_order if pt else pageblock_order_guess(),
                        args.debug)
    rate = args.rate * (1 << 30) / os.sysconf("SC_PAGE_SIZE") if args.rate else None
    pm = take_map(flt, info, pagetypes=False, rate=rate, known=pt)
    pm.pagetypeinfo_seconds = pt_seconds
    if watched is not None:
        attach_block_events(pm, *watched)
    if args.png:
        common.write_output(args.png, plots.render_map_png(pm), args.follow_symlinks)
    if args.html:
        from ..report.maphtml import map_page
        common.write_output(args.html, map_page(pm).encode("utf-8"), args.follow_symlinks)
    if args.json:
        sys.stdout.write(json.dumps(map_doc(pm, noted())) + "\n")
    if args.json or args.png or args.html:
        return 0
    size = shutil.get_terminal_size((80, 24))
    sys.stdout.write(render(pm, (size.columns, size.lines), use_color(args.color)))
    return 0


def main(argv: List[str], debug: bool = False) -> int:
    return common.command_main(build_parser, run, argv, debug)
