"""``mfd doctor``: what is wrong with this machine's physical memory, in
plain lines, from two looks at /proc a short window apart (and the event
groups over it), or from a recording (``mfd doctor FILE.db``)."""
from __future__ import annotations

import json
import os
import sys
import time
from typing import List

from .. import ebpf
from ..compaction import (COMPACTION_PROACTIVENESS_DEFAULT, compaction_hpage_order,
                          fragmentation_score_wmark)
from ..diagnose.findings import (SEVERITIES, TUNABLE_DEFAULTS, Look, Thresholds, findings,
                                 story_findings, worst)
from ..diagnose.view import Inputs, compaction_view, view_json
from ..kernel import facts
from ..sources.vmstat import read_vmstat
from ..sources.zonestate import read_zone_state
from ..term import info, noted, one_line
from ..durations import format_duration
from ..errors import MfdError, UsageError
from ..model import Filter
from . import common

EPILOG = """\
examples:
  sudo mfd doctor                   look twice, 5 s apart, and say what is wrong
  sudo mfd doctor --window 30 --json
  sudo mfd doctor --fail-on warning   for a health check: exit 1 on a warning or worse
  mfd doctor frag.db --since -1h    what a recording says: for how long no THP-order
                                    block, scores above kcompactd's watermark, who
                                    stalled, took over pageblocks, compaction failing

Findings, most severe first, each with its numbers and the threshold it used:
no free block of the THP order in a zone; a node's fragmentation score above
kcompactd's high watermark and not falling; direct compaction failing
(compact_fail / compact_stall over the window); the kernel refusing to compact
(fragindex <= vm.extfrag_threshold) while THP faults fall back; watermark
boost active; vm.compaction_proactiveness 0 with a high score; tunables not
at their defaults.  The compaction view (scores, kcompactd's verdict per node,
compaction_suitable() per zone and order) comes with -z, and with --json.

From a recording (mfd --record, with -s or --events for who did what), the
findings say for how long, and when: the time with no free block of the THP
order per zone (its longest stretch, and whether it lasted to the end), the
time each node's score stayed above kcompactd's high watermark and whether it
fell, compaction failing, and the direct-compaction stalls, pageblock
takeovers and pollution summed over the recording, by process and cgroup.
A recording holds no tunables: the watermark comes from this machine's
vm.compaction_proactiveness when the recording is this host's, else the
default 20 (--proactiveness says otherwise), and the THP order from this
machine (--thp-order).

exit status: 0, or 1 when a finding is at least --fail-on (default critical),
or on an error; 2 on a usage error.
"""


DEFAULT_WINDOW = 5.0


def build_parser():
    p = common.parser("mfd doctor", "Say what is wrong with physical memory: findings "
                      "from two looks at /proc a window apart, or from a recording.", EPILOG)
    p.add_argument("file", metavar="FILE.db", nargs="?",
                   help="a recording (mfd --record) to diagnose instead of this machine")
    common.add_span(p)
    common.add_filter(p, "only findings about zones named NAME (any case)")
    p.add_argument("--thp-order", type=common.ranged(int, "an integer", 1, 20), metavar="N",
                   help="with FILE: the THP order of the recorded machine (default this "
                        "machine's, from hpage_pmd_size)")
    p.add_argument("--proactiveness", type=common.ranged(int, "an integer", 0, 100),
                   metavar="P", help="with FILE: the recorded machine's "
                                     "vm.compaction_proactiveness (default: this machine's "
                                     "if the recording is this host's, else 20)")
    p.add_argument("--window", type=common.positive_float,
                   metavar="SECONDS",
                   help="observation window (default 5)")
    p.add_argument("--fail-on", choices=SEVERITIES + ("never",), default="critical",
                   help="exit 1 when a finding is this severe or worse (default critical)")
    p.add_argument("--fail-ratio", type=common.ranged(float, "a ratio", 0.0, 1.000001),
                   default=Thresholds.fail_ratio, metavar="R",
                   help="compact_fail/compact_stall from which compaction is failing "
                        "(default 0.5)")
    p.add_argument("--min-stalls", type=common.positive_int, default=Thresholds.min_stalls,
                   metavar="N", help="direct-compaction stalls needed for that verdict "
                                     "(default 1)")
    p.add_argument("--min-zone-mib", type=common.positive_int,
                   default=Thresholds.min_zone_mib, metavar="MIB",
                   help="zones smaller than this are not expected to hold a huge block "
                        "(default 256)")
    p.add_argument("--no-events", action="store_true",
                   help="only /proc: no event groups over the window (they need root and "
                        "BCC; without them doctor says so and goes on)")
    p.add_argument("-z", "--view", action="store_true",
                   help="also the kernel's compaction view as a table: scores, kcompactd's "
                        "verdict per node, compaction_suitable() per zone and order")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout (the "
                                                       "view included)")
    common.add_debug(p, "show tracebacks")
    return p


def _look(page_size: int, hpage_order: int, kernel, tunables):
    state = read_zone_state()
    nr_free = state.nr_free()
    inp = Inputs(nr_free=nr_free, limits=state.limits, pagetypes=state.pagetypes,
                 proactiveness=tunables.get("vm/compaction_proactiveness") or 0,
                 extfrag_threshold=tunables.get("vm/extfrag_threshold") or 500,
                 kswapd_running=facts.kswapd_running(), hpage_order=hpage_order,
                 kernel=kernel)
    present = {(z.node, z.zone): z.present for z in state.limits}
    return Look(compaction_view(inp), nr_free, present), state


# short names for the table's per-order cells
_CELL = {"allocatable": "ok", "reclaim_first": "recl", "no_fragmentation": "veto",
         "compaction_can_help": "COMP"}


def view_table(nodes) -> str:
    """The compaction view as a -z-style table: per node its score and
    kcompactd's verdict, per zone its score, boost and the verdict per order."""
    lines = []
    for n in nodes:
        p = n.proactive
        lines.append(f"node {n.node}: fragmentation score {n.score} (low {p.low}, high "
                     f"{p.high}): {p.reason}")
        if not n.zones:
            continue
        orders = [v.order for v in n.zones[0].verdicts]
        head = "".join(f"{o:>5}" for o in orders)
        lines.append(f"  {'ZONE':<8} {'SCORE':>5} {'BOOST':>6} {head}")
        for z in n.zones:
            cells = "".join(f"{_CELL[v.verdict]:>5}" for v in z.verdicts)
            lines.append(f"  {one_line(z.zone):<8} {z.score:>5} {z.boost:>6} {cells}")
    lines.append("  ok: allocatable now; recl: too little free memory, the kernel reclaims "
                 "first; veto: lack of memory, not fragmentation (the kernel won't compact); "
                 "COMP: fragmentation, compaction can help")
    return "\n".join(lines) + "\n"


def _events():
    """extfrag and compaction over the window, or None (said once) where they
    cannot load: not root, no BCC, no BTF."""
    from ..errors import MfdError
    from ..sources.events import EventSource
    try:
        source = EventSource(["extfrag", "compaction"], note=info)
    except MfdError as e:
        info(f"no event groups over the window ({e}): findings from /proc only")
        return None
    finally:
        ebpf.release_loader()
    return source


def main(argv: List[str], debug: bool = False) -> int:
    return common.command_main(build_parser, run, common.join_time_args(argv), debug)


def _usage(args) -> None:
    if args.view and args.json:
        raise UsageError("-z does nothing with --json (the JSON holds the view)")
    live = ("--window" if args.window is not None else None,
            "--no-events" if args.no_events else None, "-z" if args.view else None)
    recorded = ("--since" if args.since is not None else None,
                "--until" if args.until is not None else None,
                "--thp-order" if args.thp_order is not None else None,
                "--proactiveness" if args.proactiveness is not None else None)
    if args.file is not None and any(live):
        raise UsageError(f"{next(x for x in live if x)} does nothing with a recording "
                         "(it is for a live look)")
    if args.file is None and any(recorded):
        raise UsageError(f"{next(x for x in recorded if x)} needs a recording: mfd doctor "
                         "FILE.db")


def _report(args, found, extra: dict, text_tail: str = "", nothing: str = "") -> int:
    """Print the findings (text or --json) and return the exit status."""
    flt = Filter(args.node, args.zone)
    # -i/-c narrow the findings about a node or zone; machine-wide ones stay
    found = [f for f in found if f.node is None or flt.wants(f.node, f.zone)]
    if args.json:
        print(json.dumps(dict(extra, findings=[f.to_json() for f in found], notes=noted())))
    else:
        sys.stdout.write("".join(f"{f.severity.upper():8s} {one_line(f.text)}\n"
                                 for f in found) or nothing)
        sys.stdout.write(text_tail)
    bad = worst(found)
    if args.fail_on == "never" or bad is None:
        return 0
    return 1 if SEVERITIES.index(bad) >= SEVERITIES.index(args.fail_on) else 0


def _recording(args, page_size: int, hpage_order: int) -> int:
    from ..diagnose.story import tell
    from ..recording import History
    with History(args.file) as hist:
        sel = common.select(hist, args.since, args.until, Filter(args.node, args.zone))
        # The watermark is needed as the samples stream by: the last run's
        # host and kernel stand for the file (one file is one machine's runs).
        if not hist.runs:
            raise MfdError(f"{args.file} holds samples but no run: not what mfd records")
        run = hist.runs[max(hist.runs)]
        orders = max(r.nr_orders for r in hist.runs.values())
        if hpage_order >= orders:
            raise UsageError(f"--thp-order {hpage_order}: {args.file} has orders 0-{orders - 1}"
                             if args.thp_order is not None else
                             f"this machine's THP order {hpage_order} is beyond the orders "
                             f"0-{orders - 1} of {args.file}: say it with --thp-order")
        kernel, p = run.kernel, args.proactiveness
        if p is None and run.host == os.uname().nodename:
            p = facts.sysctl_int("vm/compaction_proactiveness")
        if p is None:
            p = COMPACTION_PROACTIVENESS_DEFAULT
        release = tuple(facts.kernel_version(kernel)[:2])
        high = fragmentation_score_wmark(p, False, release)
        story = tell(hist.samples(sel.since, sel.until), hpage_order, high, sel.filter)
    if not story.samples:
        raise sel.nothing()
    if args.zone is not None and not story.zones:
        raise UsageError(f"no populated zone matches -c {args.zone} in {args.file}")
    th = Thresholds(args.fail_ratio, args.min_stalls, args.min_zone_mib)
    found = story_findings(story, hpage_order, page_size, p, high, th)
    if not story.event_samples:
        info(f"{args.file} holds no events (record with -s or --events): no findings on "
             "who stalled or took over pageblocks")
    span = f"{format_duration(story.seconds)} of {args.file}"
    extra = {"file": args.file, "first": story.first, "last": story.last,
             "samples": story.samples, "hpage_order": hpage_order, "proactiveness": p,
             "high_wmark": high, "kernel": kernel, "vmstat": story.vmstat}
    return _report(args, found, extra, nothing=f"no findings in {span}\n")


def run(args) -> int:
    _usage(args)
    page_size = os.sysconf("SC_PAGE_SIZE")
    hpage_order = args.thp_order if args.thp_order is not None else \
        compaction_hpage_order(facts.hpage_pmd_size(), page_size)
    if args.file is not None:
        return _recording(args, page_size, hpage_order)
    if args.window is None:
        args.window = DEFAULT_WINDOW
    kernel = facts.kernel_version()
    tunables = {name: facts.sysctl_int(name) for name in TUNABLE_DEFAULTS}
    keys = ("compact_stall", "compact_fail", "compact_success", "thp_fault_fallback")
    start = time.monotonic()
    before = read_vmstat(("compact_", "thp_fault_fallback"))
    first, state = _look(page_size, hpage_order, kernel, tunables)
    Filter(args.node, args.zone).resolve(sorted({z.node for z in state.limits}),
                                         list(dict.fromkeys(z.zone for z in state.limits)))
    if state.pagetypes_problem:
        info(f"{state.pagetypes_problem}: the verdicts weigh buddyinfo's counts alone")
    source = None if args.no_events else _events()
    try:
        # the window runs from the first look; the events count from their load
        time.sleep(max(0.0, start + args.window - time.monotonic()))
        events = source.poll() if source is not None else None
    finally:
        if source is not None:
            source.close()
    last, state = _look(page_size, hpage_order, kernel, tunables)
    after = read_vmstat(("compact_", "thp_fault_fallback"))
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
    th = Thresholds(args.fail_ratio, args.min_stalls, args.min_zone_mib)
    pageblock_order = state.pagetypes.pageblock_order if state.pagetypes else hpage_order
    found = findings(first, last, delta, args.window, tunables, hpage_order, page_size,
                     kernel, th, events, pageblock_order)
    extra = {"window": args.window, "hpage_order": hpage_order,
             "kernel": os.uname().release, "vmstat": delta, "view": view_json(last.view),
             "events": events.to_json() if events is not None else None}
    return _report(args, found, extra, "\n" + view_table(last.view) if args.view else "",
                   f"no findings in {args.window:g} s\n")

