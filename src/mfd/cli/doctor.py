"""``mfd doctor``: what is wrong with this machine's physical memory, in
plain lines, from two looks at /proc a short window apart.  No BCC."""
from __future__ import annotations

import json
import os
import sys
import time
from typing import List

from .. import ebpf
from ..compaction import compaction_hpage_order
from ..diagnose.findings import SEVERITIES, TUNABLE_DEFAULTS, Look, Thresholds, findings, worst
from ..diagnose.view import Inputs, compaction_view, view_json
from ..kernel import facts
from ..sources.vmstat import read_vmstat
from ..sources.zonestate import read_zone_state
from ..term import info, noted, one_line
from ..errors import UsageError
from . import common

EPILOG = """\
examples:
  sudo mfd doctor                   look twice, 5 s apart, and say what is wrong
  sudo mfd doctor --window 30 --json
  sudo mfd doctor --fail-on warning   for a health check: exit 1 on a warning or worse

Findings, most severe first, each with its numbers and the threshold it used:
no free block of the THP order in a zone; a node's fragmentation score above
kcompactd's high watermark and not falling; direct compaction failing
(compact_fail / compact_stall over the window); the kernel refusing to compact
(fragindex <= vm.extfrag_threshold) while THP faults fall back; watermark
boost active; vm.compaction_proactiveness 0 with a high score; tunables not
at their defaults.  The compaction view (scores, kcompactd's verdict per node,
compaction_suitable() per zone and order) comes with -z, and with --json.

exit status: 0, or 1 when a finding is at least --fail-on (default critical),
or on an error; 2 on a usage error.
"""


def build_parser():
    p = common.parser("mfd doctor", "Say what is wrong with physical memory: findings "
                      "from two looks at /proc a window apart.", EPILOG)
    p.add_argument("--window", type=common.positive_float, default=5.0, metavar="SECONDS",
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
    return common.command_main(build_parser, run, argv, debug)


def run(args) -> int:
    if args.view and args.json:
        raise UsageError("-z does nothing with --json (the JSON holds the view)")
    page_size = os.sysconf("SC_PAGE_SIZE")
    hpage_order = compaction_hpage_order(facts.hpage_pmd_size(), page_size)
    kernel = facts.kernel_version()
    tunables = {name: facts.sysctl_int(name) for name in TUNABLE_DEFAULTS}
    keys = ("compact_stall", "compact_fail", "compact_success", "thp_fault_fallback")
    start = time.monotonic()
    before = read_vmstat(("compact_", "thp_fault_fallback"))
    first, state = _look(page_size, hpage_order, kernel, tunables)
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
    if args.json:
        print(json.dumps({"window": args.window, "hpage_order": hpage_order,
                          "kernel": os.uname().release, "vmstat": delta,
                          "findings": [f.to_json() for f in found],
                          "view": view_json(last.view),
                          "events": events.to_json() if events is not None else None,
                          "notes": noted()}))
    else:
        sys.stdout.write("".join(f"{f.severity.upper():8s} {one_line(f.text)}\n"
                                 for f in found) or f"no findings in {args.window:g} s\n")
        if args.view:
            sys.stdout.write("\n" + view_table(last.view))
    bad = worst(found)
    if args.fail_on == "never" or bad is None:
        return 0
    return 1 if SEVERITIES.index(bad) >= SEVERITIES.index(args.fail_on) else 0

