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
  mfd --source procfs       without root or BCC: read /proc instead of eBPF

columns: ORDER block order; NR_FREE free blocks of that order (free_area[order].nr_free);
TOTAL free blocks of any order; SUITABLE free blocks able to serve this order;
FREE free pages; EXTFRAG extfrag_index (-1.000: a suitable block exists; near 0:
failure would be for lack of memory; near 1: for fragmentation); UNUSABLE
unusable_index (share of free memory unusable for this order).
"""


class Terminated(Exception):
    """SIGTERM or SIGHUP arrived: end like Ctrl-C."""


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


def _node_id(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"node id must be an integer: {text!r}")
    if v < 0:
        raise argparse.ArgumentTypeError(f"node id must be >= 0: {text!r}")
    return v


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, then exit 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: {message} (see {self.prog} -h)\n")


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
                   help="count extfrag events (fallback steals) per process")
    p.add_argument("-v", "--visual", action="store_true", help="full-screen live view")
    p.add_argument("--json", action="store_true", help="one JSON object per sample")
    p.add_argument("--source", choices=("auto", "bpf", "procfs"), default="auto",
                   help="where snapshots come from (default auto: bpf, else procfs)")
    p.add_argument("--pgdat-path", choices=("auto", "kallsyms", "memcg"), default="auto",
                   help="how the eBPF walker finds each node's pglist_data (default auto)")
    p.add_argument("--debug", action="store_true", help="show tracebacks and BCC's output")
    p.add_argument("--ebpf", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--version", action="version", version=f"mfd {__version__}")
    return p


def note(msg: str) -> None:
    print(f"mfd: {msg}", file=sys.stderr, flush=True)


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


def _on_signal(signum, frame):
    raise Terminated()


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
            out = json.dumps(snapshot_json(snap, self.view, self.host, self.kernel))
        elif self.args.nodes:
            out = block_header(snap) + "\n" + node_table(snap, self.view) + "\n"
        else:
            out = block_header(snap) + "\n" + zone_table(snap, self.view) + "\n"
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

    if args.extfrag_events or args.visual:
        raise UsageError("-s and -v are not available in this version of mfd")
    if args.ebpf:
        from .collectors.bpf import BpfCollector
        c = BpfCollector(pgdat_path=args.pgdat_path, load=False)
        print("// cflags: " + " ".join(c.cflags))
        print(c.source_text())
        return 0
    view = make_view(args)
    collector = open_collector(args.source, args.pgdat_path, args.debug)
    sinks = [Printer(args, view)]
    wait = time.sleep          # a full-screen view may wait on its keyboard instead
    try:
        n = 0
        start = last = time.monotonic()
        while True:
            snap = collector.snapshot()
            now = time.monotonic()
            if n == 0:
                _validate_filters(snap, args)
            sample = Sample(snapshot=snap, interval=(now - last) if n else args.interval, seq=n)
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
        collector.close()


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # -h, --version, usage errors
        return e.code if isinstance(e.code, int) else 2
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    try:
        return run(args)
    except (KeyboardInterrupt, Terminated):
        return 0
    except BrokenPipeError:
        # The reader went away (mfd | head): end quietly, and keep Python from
        # complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except MfdError as e:
        if args.debug:
            raise
        note(str(e))
        return e.exit_code
    except Exception as e:  # a bug: one line, traceback on request
        if args.debug:
            raise
        note(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)")
        return 1
