"""The ``mfd`` command line: argument parsing, the sampling loop, clean exits.

Exit status: 0 normal end (also Ctrl-C, SIGTERM, SIGHUP, a closed pipe),
1 runtime failure, 2 usage error.  No traceback without --debug.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from typing import Callable, List, Optional

from . import __version__
from .errors import MfdError, UsageError

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

columns: ORDER block order; NR_FREE free blocks of that order (free_area[order].nr_free);
TOTAL free blocks of any order; SUITABLE free blocks able to serve this order;
FREE free pages; EXTFRAG extfrag_index (-1.000: a suitable block exists; near 0:
failure would be for lack of memory; near 1: for fragmentation); UNUSABLE
unusable_index (share of free memory unusable for this order).

-s columns: ALLOC order and migratetype asked for; FALLBACK order and migratetype
of the free block taken instead; EVENTS in this interval; STEALS those that took
over the whole pageblock (change_ownership); TOTAL since start; RATE/s per second.
"""


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: end like Ctrl-C.

    A BaseException, like KeyboardInterrupt, so that ``except Exception``
    around a step that may fail (BCC's compile and load, say) lets it through
    instead of taking it for that step's failure and carrying on."""


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}")
    if not (v > 0) or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}")
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer: {text!r}")
    return v


def _duration(text: str) -> float:
    from .history import parse_duration
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def _event_groups(text: str):
    from .events import parse_groups
    try:
        return parse_groups(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e))


def _node_id(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"node id must be an integer: {text!r}")
    if v < 0:
        raise argparse.ArgumentTypeError(f"node id must be >= 0: {text!r}")
    return v


def one_line(text: str) -> str:
    """``text`` with control characters escaped: a message quoting user input
    (an argument holding a newline or a terminal escape) stays one plain line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, then exit 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: {one_line(message)} (see {self.prog} -h)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mfd", description="Linux physical-memory fragmentation monitor: "
                "per node, zone and order, the buddy allocator's free blocks and the "
                "kernel's extfrag_index and unusable_index.",
                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-d", "--interval", type=_positive_float, default=2.0, metavar="SECONDS",
                   help="seconds between samples (default 2)")
    p.add_argument("--count", type=_positive_int, metavar="N",
                   help="take N samples, then exit")
    p.add_argument("-n", "--nodes", action="store_true", help="show the node table")
    p.add_argument("-i", "--node", type=_node_id, metavar="ID", help="only node ID")
    p.add_argument("-c", "--zone", metavar="NAME",
                   help="only zones named NAME (DMA, DMA32, Normal, HighMem, Movable, "
                        "Device; any case)")
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
    p.add_argument("--alloc-probe", choices=("auto", "kprobe", "tracepoint"), default="auto",
                   help="how the alloc group hooks the allocator (default auto: kprobe "
                        "with latency if the kernel has kprobes, else tracepoint)")
    p.add_argument("-v", "--visual", action="store_true", help="full-screen live view")
    p.add_argument("--json", action="store_true", help="one JSON object per sample")
    p.add_argument("--prometheus", metavar="[HOST:]PORT",
                   help="serve Prometheus metrics on HOST:PORT (default host 127.0.0.1), "
                        "one snapshot per scrape, instead of printing tables")
    p.add_argument("--record", metavar="FILE",
                   help="also write every sample to the SQLite file FILE (see mfd report)")
    p.add_argument("--retain", type=_duration, metavar="DURATION",
                   help="with --record: drop samples older than DURATION (30m, 12h, 7d)")
    p.add_argument("--source", choices=("auto", "bpf", "procfs"), default="auto",
                   help="where snapshots come from (default auto: bpf, else procfs)")
    p.add_argument("--pgdat-path", choices=("auto", "kallsyms", "memcg"), default="auto",
                   help="how the eBPF walker finds each node's pglist_data (default auto)")
    p.add_argument("--debug", action="store_true", help="show tracebacks and BCC's output")
    p.add_argument("--ebpf", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--version", action="version", version=f"mfd {__version__}")
    return p


def note(msg: str) -> None:
    print(f"mfd: {one_line(msg)}", file=sys.stderr, flush=True)


def open_collector(source: str, pgdat_path: str = "auto", debug: bool = False,
                   note: Callable[[str], None] = note):
    """The collector for --source; ``auto`` falls back to procfs and says why, once."""
    from .collectors.procfs import ProcfsCollector

    if source == "procfs":
        return ProcfsCollector()
    from .collectors.bpf import BpfCollector
    from .errors import PermissionDenied
    try:
        return BpfCollector(pgdat_path=pgdat_path, note=note, debug=debug)
    except MfdError as e:
        if source == "bpf":
            raise
        if isinstance(e, PermissionDenied):
            note("not root: reading /proc instead of eBPF (run with sudo for the eBPF source)")
        else:
            note(f"{e}; falling back to /proc")
        return ProcfsCollector()


def event_groups(args):
    """The event groups asked for: --events, and extfrag for -s."""
    from .events import GROUPS
    return tuple(g for g in GROUPS if g in args.events or (g == "extfrag" and args.extfrag_events))


def open_events(args, load: bool = True):
    """The event collector for -s/--events, or None when no group is asked for."""
    groups = event_groups(args)
    if not groups:
        return None
    from .events import EventCollector
    return EventCollector(groups, node=args.node, zone=args.zone, alloc_probe=args.alloc_probe,
                          note=note, debug=args.debug, load=load)


def _on_signal(signum, frame):
    # The first signal ends mfd; more while it cleans up are ignored (bcc's
    # habit): one arriving inside BCC's detach would leave it half done.
    for sig in _END_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated()


_END_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _validate_filters(snap, args) -> None:
    from .render import node_ids, zone_names

    nodes = list(node_ids(snap))
    if args.node is not None and args.node not in nodes:
        raise UsageError(f"no node {args.node} (nodes: {', '.join(map(str, nodes))})")
    if args.zone is not None:
        names = zone_names(snap)
        if args.zone.lower() not in (n.lower() for n in names):
            raise UsageError(f"no zone {args.zone!r} (zones: {', '.join(names)})")


class Printer:
    """The periodic text (or --json) output on stdout, one block per sample."""

    def __init__(self, args, view):
        self.args, self.view = args, view
        self.host, self.kernel = socket.gethostname(), os.uname().release

    def emit(self, sample) -> None:
        from .render import block_header, node_table, snapshot_json, zone_table

        snap = sample.snapshot
        if self.args.json:
            doc = snapshot_json(snap, self.view, self.host, self.kernel)
            if sample.events is not None:
                doc["events"] = sample.events
            out = json.dumps(doc)
        elif self.args.extfrag_events:
            out = ""  # -s: the event tables alone, as the seed showed them
        elif self.args.nodes:
            out = block_header(snap) + "\n" + node_table(snap, self.view) + "\n"
        else:
            out = block_header(snap) + "\n" + zone_table(snap, self.view) + "\n"
        if sample.events is not None and not self.args.json:
            from .events.render import events_header, events_text
            out = (out or events_header(snap.time, sample.events["interval"]) + "\n") + \
                events_text(sample.events) + "\n"
        print(out, flush=True)

    def close(self) -> None:
        pass


def make_view(args):
    from .render import View

    return View(node=args.node, zone=args.zone, detail=args.detail,
                extfrag=args.extfrag or not args.unusable,
                unusable=args.unusable or not args.extfrag, bar=args.bar,
                show_pgdat=os.geteuid() == 0 and sys.stdout.isatty())


def run(args) -> int:
    from .model import Sample

    if args.visual and args.json:
        raise UsageError("-v and --json do not go together (the live view is for a terminal)")
    if args.retain is not None and not args.record:
        raise UsageError("--retain needs --record FILE")
    if args.prometheus and event_groups(args):
        raise UsageError("-s and --events do not go with --prometheus (it serves snapshots)")
    if args.ebpf:
        from .collectors.bpf import BpfCollector
        c = BpfCollector(pgdat_path=args.pgdat_path, load=False)
        print("// cflags: " + " ".join(c.cflags))
        print(c.source_text())
        ev = open_events(args, load=False)
        if ev is not None:
            print("// events cflags: " + " ".join(ev.cflags))
            print(ev.source_text())
        return 0
    if args.prometheus:
        from .exporter import parse_listen
        parse_listen(args.prometheus)  # a bad address is a usage error, before any loading
        clash = [flag for flag, on in (("--record", args.record), ("-v", args.visual),
                                        ("--json", args.json), ("-n", args.nodes),
                                        ("--count", args.count)) if on]
        if clash:
            raise UsageError(f"--prometheus serves metrics until stopped; it does not go "
                             f"with {', '.join(clash)}")
    view = make_view(args)
    # -s shows no zone table: snapshots from /proc then, sparing a BCC compile.
    collector = open_collector("procfs" if args.extfrag_events and args.source == "auto"
                               else args.source, args.pgdat_path, args.debug)
    sinks = []
    events = None
    wait = time.sleep          # a full-screen view may wait on its keyboard instead
    try:
        # -i/-c against the kernel's own nodes and zones, before anything is
        # compiled, served or recorded.
        _validate_filters(collector.snapshot(), args)
        if args.prometheus:
            from .exporter import serve
            return serve(collector, view, args.prometheus, note)
        if args.record:        # first: a sample on screen is a sample committed
            from .history import Recorder
            sinks.append(Recorder.from_args(args, note))
        if args.visual:
            from .live import LiveView
            sinks.append(LiveView(args, view))
            wait = sinks[-1].wait
        else:
            sinks.append(Printer(args, view))
        events = open_events(args)
        if events is not None:
            wait(args.interval)  # events count over an interval, the first sample's too
        n = 0
        start = last = time.monotonic()
        while True:
            snap = collector.snapshot()
            now = time.monotonic()
            sample = Sample(snapshot=snap, interval=(now - last) if n else args.interval, seq=n,
                            events=events.poll(snap) if events is not None else None)
            last = now
            for sink in sinks:
                sink.emit(sample)
            n += 1
            if args.count is not None and n >= args.count:
                return 0
            # Fixed rate, like vmstat: sleep to the next tick, not a full interval.
            delay = start + n * args.interval - time.monotonic()
            if delay < 0:
                start -= delay  # fell behind (suspend, slow terminal): re-anchor
                delay = 0
            wait(delay)
    finally:
        for sink in reversed(sinks):
            sink.close()
        if events is not None:
            events.close()
        collector.close()


def main(argv: Optional[List[str]] = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["report"]:
        from .report import main as report_main
        return report_main(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # -h, --version, usage errors
        return e.code if isinstance(e.code, int) else 2
    return finish(lambda: run(args), args.debug)


def finish(body: Callable[[], int], debug: bool = False) -> int:
    """Run ``body`` (mfd, mfd report) and turn how it ends into an exit status."""
    for sig in _END_SIGNALS:
        signal.signal(sig, _on_signal)
    try:
        return body()
    except (KeyboardInterrupt, Terminated):
        return 0
    except BrokenPipeError:
        # The reader went away (mfd | head): end quietly, and keep Python from
        # complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except MfdError as e:
        if debug:
            raise
        note(str(e))
        return e.exit_code
    except Exception as e:  # a bug: one line, traceback on request
        if debug:
            raise
        note(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)")
        return 1
