"""``mfd serve``: the Prometheus exporter, one snapshot per scrape, event
counters from the kernel's maps and the diagnosis gauges
(``mfd --prometheus [HOST:]PORT`` is the same)."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Tuple

from .. import __version__, ebpf
from ..derive import Frame
from ..errors import MfdError, UsageError
from ..model import Filter, Sample
from ..sinks.exporter import (DEFAULT_PORT, HEAD_TIMEOUT, MAX_CONNECTIONS, SnapshotCollector,
                              parse_listen, require_client, serve)
from ..sources import open_snapshot_source
from ..term import info, note
from . import common

# Tracepoints that fire on the slow paths only (fallbacks, compaction): cheap
# enough to be on by default.  The alloc group runs on every page allocation
# (README "What events cost": 0.91x page-fault throughput) and is opt-in.
DEFAULT_GROUPS = ("extfrag", "compaction")
DEFAULT_CGROUP_LABELS = 32


EPILOG = f"""\
examples:
  sudo mfd serve                           /metrics on 127.0.0.1:{DEFAULT_PORT}
  sudo mfd serve --listen [::1]:{DEFAULT_PORT}       on IPv6 loopback
  sudo mfd serve --listen 0.0.0.0:{DEFAULT_PORT}     on every IPv4 interface
  sudo mfd serve --listen [::]:{DEFAULT_PORT}        on every IPv6 interface
  mfd serve --source procfs --listen 19610 without root: from /proc, no events
  sudo mfd serve --events all              also the alloc group (on every allocation)
  sudo mfd serve --events none             snapshots and diagnosis gauges only

Every interface is never implied: 0.0.0.0 or [::] must be written out, and
an IPv6 address goes in brackets.  Each connection carries one request and
must send it within {HEAD_TIMEOUT:g} s; at most {MAX_CONNECTIONS} are held at once.

Events are counted in the kernel between scrapes; counters grow over mfd's
lifetime.  By default the extfrag and compaction groups are loaded when mfd
can (root, BTF; otherwise it says why once and serves without them); an
explicit --events fails if they cannot load.  Per-cgroup counters label at
most --cgroup-labels cgroup v2 paths, the first seen; later ones add to
cgroup="other".
"""


def build_parser() -> argparse.ArgumentParser:
    p = common.parser("mfd serve", "Serve Prometheus metrics: each scrape takes one "
                      "snapshot and reads the event counts the kernel kept since the "
                      "last one; the diagnosis gauges come from the same snapshot.", EPILOG)
    p.add_argument("--listen", metavar="[HOST:]PORT", default=str(DEFAULT_PORT),
                   help=f"address to listen on (default 127.0.0.1:{DEFAULT_PORT}; "
                        "no host means loopback; IPv6 in brackets, as [::1]:PORT)")
    p.add_argument("--events", metavar="GROUPS",
                   help="event groups to count, comma-separated: extfrag, compaction, alloc "
                        "(on every page allocation: costs), all, or none (default "
                        "extfrag,compaction, without --source procfs)")
    p.add_argument("--alloc-probe", choices=("auto", "kprobe", "tracepoint"), default="auto",
                   help="how the alloc group hooks the allocator (default auto)")
    p.add_argument("--cgroup-labels", type=_cgroup_cap, metavar="N",
                   help=f"per-cgroup counters for at most N cgroup paths, the rest as "
                        f"\"other\" (default {DEFAULT_CGROUP_LABELS}; 0: none)")
    common.add_filter(p)
    common.add_source(p)
    common.add_debug(p)
    return p


def _cgroup_cap(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > 10000:
        raise argparse.ArgumentTypeError(f"wants a number of cgroups from 0 to 10000, "
                                         f"not {text!r}")
    return int(text)


@dataclass(frozen=True)
class ServeConfig:
    listen: str = str(DEFAULT_PORT)
    filter: Filter = Filter()
    source: str = "auto"
    pgdat_path: str = "auto"
    debug: bool = False
    flag: str = "--listen"          # how the address was given, for messages
    bpf_loader: str = "auto"
    groups: Tuple[str, ...] = DEFAULT_GROUPS
    groups_given: bool = False      # --events given: a load failure is an error
    alloc_probe: str = "auto"
    cgroup_labels: int = DEFAULT_CGROUP_LABELS


def _groups(args) -> Tuple[Tuple[str, ...], bool]:
    text = getattr(args, "events", None)
    if isinstance(text, tuple):     # the monitor's parser (--prometheus) parsed it
        text = ",".join(text) or None
    if text is None:
        return (() if args.source == "procfs" else DEFAULT_GROUPS), False
    names = [n.strip().lower() for n in text.split(",")]
    if "none" in names:
        if names != ["none"]:
            raise UsageError(f"--events none goes alone, not in {text!r}")
        return (), True
    from ..sources.events import parse_groups
    return parse_groups(text), True


def config(args, flag: str = "--listen") -> ServeConfig:
    listen = args.prometheus if flag == "--prometheus" else args.listen
    parse_listen(listen, flag)      # a bad address is a usage error, before any loading
    groups, given = _groups(args)
    for flag_name, dest in (("--pgdat-path", "pgdat_path"), ("--bpf-loader", "bpf_loader")):
        if getattr(args, dest) != "auto" and args.source == "procfs" and not groups:
            raise UsageError(f"{flag_name} does nothing with --source procfs "
                             "(nothing is compiled)")
    alloc_probe = getattr(args, "alloc_probe", "auto")
    if alloc_probe != "auto" and "alloc" not in groups:
        raise UsageError("--alloc-probe does nothing without the alloc group "
                         "(add --events alloc)")
    cap = getattr(args, "cgroup_labels", None)
    if cap is not None and not {"extfrag", "compaction"} & set(groups):
        raise UsageError("--cgroup-labels does nothing without the extfrag or "
                         "compaction group")
    return ServeConfig(listen, Filter(args.node, args.zone), args.source,
                       args.pgdat_path, args.debug, flag, args.bpf_loader,
                       groups, given, alloc_probe,
                       DEFAULT_CGROUP_LABELS if cap is None else cap)


def _open_events(cfg: ServeConfig, flt: Filter):
    """The event groups, loaded; None without any.  Without --events, a
    failure to load (not root, no BTF, no tracepoints) is said once and the
    exporter serves without events."""
    if not cfg.groups:
        return None
    from ..sources.events import EventSource
    try:
        return EventSource(cfg.groups, flt, cfg.alloc_probe, note=info, debug=cfg.debug,
                           loader=cfg.bpf_loader)
    except MfdError as e:
        if cfg.groups_given:
            raise
        note(f"serving without event counters: {e}")
        return None


def _diagnose():
    """diagnose(snapshot): the diagnosis gauges.  The THP order, the hugetlb
    sizes and the kernel release are read once; vm.compaction_proactiveness
    on every scrape (an administrator may move it)."""
    from ..compaction import COMPACTION_PROACTIVENESS_DEFAULT, compaction_hpage_order
    from ..diagnose.gauges import diagnosis, orders_of
    from ..kernel import facts
    page_size = os.sysconf("SC_PAGE_SIZE")
    hpage = compaction_hpage_order(facts.hpage_pmd_size(), page_size)
    orders = orders_of(hpage, facts.hugetlb_sizes(), page_size)
    kernel = facts.kernel_version()

    def diagnose(snapshot):
        p = facts.sysctl_int("vm/compaction_proactiveness", COMPACTION_PROACTIVENESS_DEFAULT)
        return diagnosis(snapshot, min(max(p, 0), 100), kernel, hpage, orders, page_size)
    return diagnose


def run(cfg: ServeConfig) -> int:
    require_client()
    try:
        source = open_snapshot_source(cfg.source, cfg.pgdat_path, cfg.debug, info,
                                      cfg.bpf_loader)
    except BaseException:
        ebpf.release_loader()
        raise
    events = None
    try:
        first = source.snapshot()
        flt = cfg.filter.resolve_in(first)
        events = _open_events(cfg, flt)
        ebpf.release_loader()   # loaded: the compiler's process can go
        counters = None
        if events is not None:
            from ..sinks.event_metrics import EventCounters
            counters = EventCounters(events.names, cfg.cgroup_labels)
            counters.start(first, flt)

        def take() -> Frame:
            snap = source.snapshot()
            ev = None
            if events is not None:
                try:
                    ev = events.poll(snap)
                except OSError as e:
                    raise MfdError(f"reading the event maps: {e.strerror or e}") from e
            return Frame(Sample(snap, ev.interval if ev else 0.0, 0, events=ev), flt)

        names = ",".join(events.names) if events is not None else "none"
        collector = SnapshotCollector(
            take, {"version": __version__, "source": source.name,
                   "pgdat_path": getattr(source, "pgdat_path", None) or "",
                   "kernel": os.uname().release, "events": names},
            counters, _diagnose())
        return serve(collector, cfg.listen, note, cfg.flag, said=info)
    finally:
        ebpf.release_loader()
        if events is not None:
            events.close()
        source.close()


def main(argv: list, debug: bool = False) -> int:
    return common.command_main(build_parser, lambda args: run(config(args)), argv, debug)
