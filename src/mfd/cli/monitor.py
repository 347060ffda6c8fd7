"""``mfd`` with no command: the monitor, a sample every -d seconds, with the
seed's flags (``-d -n -i -c -z -e -u -b -s -v``) exactly as they were.

The command line becomes a typed :class:`MonitorConfig` first; flags that
would do nothing in the mode chosen are refused there (exit 2), before
anything is compiled, served or recorded.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from .. import ebpf
from ..origin import version_text
from ..derive import Frame
from ..errors import UsageError
from ..model import Filter, Sample
from ..sinks.jsonl import JsonSink
from ..sinks.text import TextSink, View
from ..sources import open_snapshot_source
from ..term import info, note
from . import common

EPILOG = """\
examples:
  sudo mfd                  all nodes and zones, a table every 2 s
  sudo mfd -n               node table
  sudo mfd -d 2 -i 1        every 2 s, node 1 only
  sudo mfd -c Normal        only zones named Normal (any case)
  sudo mfd -z --count 1     one detailed table (zone sizes and pfns), then exit
  sudo mfd -u -b            unusable index only, with a bar
  sudo mfd --json --count 3 three samples as JSON lines, for scripts
  sudo mfd -s               extfrag events (fallback steals) per process, not the zone table
  sudo mfd --events compaction,alloc   zone table plus compaction and allocator events
  mfd --source procfs       without root or BCC: read /proc instead of eBPF
  sudo mfd --record f.db    also record every sample to SQLite (--retain 7d to cap it)
  sudo mfd -v               full-screen live view (q quits)
  mfd report f.db --html r.html   summary, charts and exports of a recording
  sudo mfd serve            Prometheus metrics on 127.0.0.1:9610

columns: ORDER block order; NR_FREE free blocks of that order (free_area[order].nr_free);
TOTAL free blocks of any order; SUITABLE free blocks able to serve this order;
FREE free pages; EXTFRAG extfrag_index (-1.000: a suitable block exists; near 0:
failure would be for lack of memory; near 1: for fragmentation); UNUSABLE
unusable_index (share of free memory unusable for this order).

-s columns: ALLOC order and migratetype asked for; FALLBACK order and migratetype
of the free block taken instead; EVENTS in this interval; STEALS those that took
over the whole pageblock (change_ownership); TOTAL since start; RATE/s per second.
"""

USAGE = """mfd [-d SECONDS] [--count N] [-n] [-i ID] [-c NAME] [-z] [-e] [-u] [-b] [-s] [-v]
           [--events GROUPS] [--json] [--record FILE] [other options]
       mfd report FILE.db [options]
       mfd serve [--listen HOST:PORT] [options]"""


# The event sources (and the event records they import) are imported only when
# events are asked for: the snapshot monitor starts without them (see model).
def _event_groups(text: str) -> Tuple[str, ...]:
    from ..sources.events import parse_groups
    if text.strip().lower() == "none":      # --prometheus: serve no events (mfd serve's word)
        return ("none",)
    try:
        return parse_groups(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e))


# Recorded maps: not more often than this, and read at this rate (bench/map.py:
# back-to-back maps at full speed slow page faults on the other CPUs by a fifth,
# at 4 GiB/s not measurably).
MIN_MAP_INTERVAL = 10.0
MAX_MAP_INTERVAL = 30 * 86400.0
MAP_RATE_GIB = 4.0


def build_parser(commands: Sequence[Tuple[str, str]] = ()) -> argparse.ArgumentParser:
    """The monitor's parser; ``commands`` ((usage, summary) of each command)
    head the epilog of -h."""
    listed = "".join(f"  {use:<26}  {summary}\n" for use, summary in
                     [("(none)", "the monitor: a sample every -d seconds (the options above)")]
                     + list(commands))
    p = common.parser("mfd", "Linux physical-memory fragmentation monitor: per node, zone and "
                      "order, the buddy allocator's free blocks and the kernel's "
                      "extfrag_index and unusable_index.",
                      ("commands:\n" + listed + "\n" if commands else "") + EPILOG)
    p.usage = USAGE
    p.add_argument("-d", "--interval", type=common.positive_float, default=2.0,
                   metavar="SECONDS", help="seconds between samples (default 2)")
    p.add_argument("--count", type=common.positive_int, metavar="N",
                   help="take N samples, then exit")
    p.add_argument("-n", "--nodes", action="store_true", help="show the node table")
    common.add_filter(p)
    p.add_argument("-z", "--detail", action="store_true",
                   help="detailed table: zone start pfn, spanned, present, managed pages")
    p.add_argument("-e", "--extfrag", action="store_true", help="show extfrag_index only")
    p.add_argument("-u", "--unusable", action="store_true", help="show unusable_index only")
    p.add_argument("-b", "--bar", action="store_true", help="add a bar for the index shown")
    p.add_argument("-s", "--extfrag-events", action="store_true",
                   help="count extfrag events (fallback steals) per process, shown "
                        "instead of the zone table (the extfrag event group)")
    p.add_argument("--events", type=_event_groups, metavar="GROUPS", default=(),
                   help="also trace event groups, comma-separated: extfrag, alloc "
                        "(on every page allocation: costs), compaction, or all; -i/-c "
                        "filter the compaction rows")
    p.add_argument("--by", choices=("process", "cgroup"), default="process",
                   help="event tables per process (default) or summed per cgroup v2 path "
                        "(extfrag and direct compaction)")
    p.add_argument("--alloc-probe", choices=("auto", "kprobe", "tracepoint"), default="auto",
                   help="how the alloc group hooks the allocator (default auto: kprobe "
                        "with latency if the kernel has kprobes, else tracepoint)")
    p.add_argument("-v", "--visual", action="store_true", help="full-screen live view")
    p.add_argument("--json", action="store_true", help="one JSON object per sample")
    p.add_argument("--prometheus", metavar="[HOST:]PORT",
                   help="the same as mfd serve --listen [HOST:]PORT")
    p.add_argument("--record", metavar="FILE", type=common.path_arg,
                   help="also write every sample to the SQLite file FILE (see mfd report)")
    p.add_argument("--retain", type=common.duration, metavar="DURATION",
                   help="with --record: drop samples older than DURATION (30m, 12h, 7d)")
    p.add_argument("--map-interval", type=common.ranged(float, "a number of seconds",
                                                        MIN_MAP_INTERVAL, MAX_MAP_INTERVAL),
                   metavar="SECONDS",
                   help=f"with --record: also record a pageblock map (mfd map) every SECONDS "
                        f"(at least {MIN_MAP_INTERVAL:g}; root; read at {MAP_RATE_GIB:g} GiB/s)")
    common.add_follow_symlinks(p)
    common.add_source(p)
    common.add_debug(p)
    p.add_argument("--ebpf", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--version", action="version", version=version_text())
    # The command (report, serve, ...) and its arguments: see mfd.cli.main.
    p.add_argument("command", nargs="?", help=argparse.SUPPRESS)
    p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p


OUTPUTS = ("zones", "nodes", "events", "json", "live")


@dataclass(frozen=True)
class MonitorConfig:
    """What the monitor was asked to do, checked."""

    interval: float = 2.0
    count: Optional[int] = None
    filter: Filter = Filter()
    output: str = "zones"                # one of OUTPUTS
    view: View = View()
    groups: Tuple[str, ...] = ()         # event groups, in GROUPS order
    alloc_probe: str = "auto"
    record: Optional[str] = None
    retain: Optional[float] = None
    map_interval: Optional[float] = None
    follow_symlinks: bool = False
    source: str = "auto"
    pgdat_path: str = "auto"
    bpf_loader: str = "auto"
    debug: bool = False


# Flags that shape the text tables, by option name and the flag users type.
_TABLE_FLAGS = (("detail", "-z"), ("extfrag", "-e"), ("unusable", "-u"), ("bar", "-b"))


def _refuse(args, flags, why: str) -> None:
    """Usage error naming the first of ``flags`` ((dest, spelling)) that was given."""
    given = [flag for dest, flag in flags if getattr(args, dest)]
    if given:
        raise UsageError(f"{given[0]} does nothing {why}")


def config(args) -> MonitorConfig:
    """The typed configuration of a parsed command line (UsageError for a bad one)."""
    if args.visual and args.json:
        raise UsageError("-v and --json do not go together (the live view is for a terminal)")
    if args.retain is not None and not args.record:
        raise UsageError("--retain needs --record FILE")
    if args.map_interval is not None and not args.record:
        raise UsageError("--map-interval needs --record FILE (maps are recorded; mfd map "
                         "draws one now)")
    if args.follow_symlinks and not args.record:
        raise UsageError("--follow-symlinks needs --record FILE (the only file the "
                         "monitor writes)")
    groups: Tuple[str, ...] = ()
    if args.events or args.extfrag_events:
        from ..model.events import GROUPS
        groups = tuple(g for g in GROUPS
                       if g in args.events or (g == "extfrag" and args.extfrag_events))
    if args.by != "process" and not ({"extfrag", "compaction"} & set(groups)):
        raise UsageError("--by cgroup does nothing without -s or --events extfrag/compaction")
    if args.by != "process" and (args.json or args.visual):
        raise UsageError("--by cgroup does nothing with --json or -v (every row carries "
                         "its cgroup there)" if args.json else
                         "--by cgroup does nothing with -v (the live view has no event table)")
    if args.alloc_probe != "auto" and "alloc" not in groups:
        raise UsageError("--alloc-probe does nothing without the alloc group "
                         "(add --events alloc)")
    if args.pgdat_path != "auto" and args.source == "procfs":
        raise UsageError("--pgdat-path does nothing with --source procfs "
                         "(it tells the eBPF walker how to find the nodes)")
    if args.bpf_loader != "auto" and args.source == "procfs" and not groups:
        raise UsageError("--bpf-loader does nothing with --source procfs and no --events "
                         "(nothing is compiled)")
    filter_flags = (("node", "-i"), ("zone", "-c"))
    if args.visual:
        output = "live"
        _refuse(args, (("nodes", "-n"),), "with -v: the live view has no node table")
        _refuse(args, (("detail", "-z"), ("bar", "-b")),
                "with -v: the live view colours every cell by its index")
    elif args.json:
        output = "json"
        _refuse(args, (("nodes", "-n"),) + _TABLE_FLAGS,
                "with --json: every object holds every node, zone and field")
    elif args.extfrag_events:
        output = "events"
        _refuse(args, (("nodes", "-n"),) + _TABLE_FLAGS,
                "with -s: -s shows the event tables instead of the zone table")
        if "compaction" not in groups:
            _refuse(args, filter_flags, "with -s alone: extfrag events are counted per "
                    "process, not per node or zone (--events compaction has zone rows)")
    elif args.nodes:
        output = "nodes"
        _refuse(args, (("zone", "-c"),) + _TABLE_FLAGS,
                "with -n: the node table has no zones or indices")
    else:
        output = "zones"
    source = args.source
    if output == "events" and source == "auto" and not args.record:
        # The event tables alone show no snapshot (it only names the zones of
        # compaction rows): /proc spares a BCC compile and says nothing wrong.
        source = "procfs"
    show_pgdat = os.geteuid() == 0 and sys.stdout.isatty()
    view = View(detail=args.detail, extfrag=args.extfrag or not args.unusable,
                unusable=args.unusable or not args.extfrag, bar=args.bar,
                show_pgdat=show_pgdat, by=args.by)
    return MonitorConfig(interval=args.interval, count=args.count,
                         filter=Filter(args.node, args.zone), output=output, view=view,
                         groups=groups, alloc_probe=args.alloc_probe,
                         record=args.record, retain=args.retain,
                         map_interval=args.map_interval,
                         follow_symlinks=args.follow_symlinks, source=source,
                         pgdat_path=args.pgdat_path, bpf_loader=_loader(args),
                         debug=args.debug)


# A run bounded by --count that ends within this long compiles in-process
# under --bpf-loader auto: bench/startup.py measured the loader helper ~20 ms
# (4%) slower to the first table, and the compiler's memory is held briefly.
SHORT_RUN_SECONDS = 10.0


def _loader(args) -> str:
    if args.bpf_loader == "auto" and args.count is not None \
            and args.count * args.interval <= SHORT_RUN_SECONDS:
        return "inprocess"
    return args.bpf_loader


def print_programs(cfg: MonitorConfig) -> int:
    """--ebpf: the C mfd would compile, with its cflags, and nothing loaded."""
    from ..sources.zonewalk import ZonewalkSource
    walker = ZonewalkSource(pgdat_path=cfg.pgdat_path, load=False)
    print("// cflags: " + " ".join(walker.cflags))
    print(walker.source_text())
    if cfg.groups:
        from ..sources.events import EventSource
        ev = EventSource(cfg.groups, cfg.filter, cfg.alloc_probe, note=info, load=False)
        print("// events cflags: " + " ".join(ev.cflags))
        print(ev.source_text())
    return 0


def _sinks(cfg: MonitorConfig) -> Tuple[list, object]:
    """The sinks, the recorder first (a sample on screen is a sample committed),
    and how the loop waits (a full-screen view waits on its keyboard)."""
    sinks: List = []
    wait = time.sleep
    try:
        if cfg.record:
            from ..sinks.recorder import Recorder
            sinks.append(Recorder(cfg.record, interval=cfg.interval, retain=cfg.retain,
                                  note=note, follow_symlinks=cfg.follow_symlinks))
        if cfg.output == "live":
            from ..sinks.live import LiveView
            index = "extfrag" if cfg.view.extfrag and not cfg.view.unusable else "unusable"
            sinks.append(LiveView(cfg.view, index, count=cfg.count))
            wait = sinks[-1].wait
        elif cfg.output == "json":
            sinks.append(JsonSink(socket.gethostname(), os.uname().release))
        else:
            sinks.append(TextSink(cfg.view, {"zones": "zones", "nodes": "nodes",
                                             "events": "none"}[cfg.output]))
    except BaseException:
        for sink in reversed(sinks):
            sink.close()
        raise
    return sinks, wait


def run(cfg: MonitorConfig) -> int:
    if cfg.output == "live":
        from ..sinks.live import check_terminal
        check_terminal()    # TERM=dumb, or no tty: refused before anything is compiled
    source = open_snapshot_source(cfg.source, cfg.pgdat_path, cfg.debug, info, cfg.bpf_loader)
    sinks: List = []
    events = maps = None
    try:
        # -i/-c against the kernel's own nodes and zones, before anything is
        # compiled or recorded; from here on the zone is spelt as the kernel does.
        flt = cfg.filter.resolve_in(source.snapshot())
        # Everything compiled and loaded before any sink starts: a failed load
        # leaves no new recording and no live view behind, and the memory the
        # loading took (BTF parsed again) is returned before SQLite's heap is
        # laid over it.
        if cfg.groups:
            from ..sources.events import EventSource
            events = EventSource(cfg.groups, flt, cfg.alloc_probe, note=info, debug=cfg.debug,
                                 loader=cfg.bpf_loader)
        ebpf.release_loader()   # every program is loaded: the compiler's process can go
        if cfg.map_interval is not None:
            from ..sources.pagemap import PeriodicMaps
            maps = PeriodicMaps(flt, cfg.map_interval, info,
                                MAP_RATE_GIB * (1 << 30) / os.sysconf("SC_PAGE_SIZE"))
        sinks, wait = _sinks(cfg)
        if events is not None:
            wait(cfg.interval)  # events count over an interval, the first sample's too
        n = 0
        start = last = time.monotonic()
        while True:
            snap = source.snapshot()
            now = time.monotonic()
            sample = Sample(snapshot=snap, interval=(now - last) if n else cfg.interval, seq=n,
                            events=events.poll(snap) if events is not None else None)
            last = now
            frame = Frame(sample, flt)
            for sink in sinks:
                sink.emit(frame)
            if maps is not None:
                if n == 0:
                    maps.start()        # after the first sample: its run files the maps
                for pm in maps.ready():
                    sinks[0].emit_map(pm)   # the recorder (--map-interval needs --record)
            n += 1
            if cfg.count is not None and n >= cfg.count:
                return 0
            # Fixed rate, like vmstat: sleep to the next tick, not a full interval.
            delay = start + n * cfg.interval - time.monotonic()
            if delay < 0:
                start -= delay  # fell behind (suspend, slow terminal): re-anchor
                delay = 0
            wait(delay)
    finally:
        if maps is not None:
            maps.close()
            for pm in maps.ready():         # a map that finished as mfd stopped
                sinks[0].emit_map(pm)
        for sink in reversed(sinks):
            sink.close()
        if events is not None:
            events.close()
        source.close()
        ebpf.release_loader()
