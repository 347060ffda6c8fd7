"""``mfd can COUNT@SIZE``: can this machine give COUNT blocks of SIZE now,
and after compaction?  From /proc alone: no BCC, no compile."""
from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from typing import List, Optional, Tuple

from ..diagnose.can import VERDICT_TEXT, ZoneCan, size_text, zone_can
from ..errors import UsageError
from ..kernel import facts
from ..model import Filter
from ..sources.zonestate import read_zone_state
from ..term import info, noted, one_line
from . import common

EPILOG = """\
examples:
  mfd can 512@2M            512 blocks of 2 MiB (order 9 with 4 KiB pages)?
  mfd can 4@1G -i 1         four 1 GiB blocks on node 1?
  mfd can 100@9 -c Normal   100 order-9 blocks in the Normal zones?
  mfd can                   the THP order and every hugetlb size, no count
  sudo mfd can --map 4@1G   bounded by the pageblock map: aligned runs of 512
                            free or compactable pageblocks

SIZE is an order (a bare number) or a size with K, M, G or T (powers of 1024).
"now" counts free blocks of that order or larger, as /proc/buddyinfo shows
them; "after compaction" is an upper bound: free pages plus the used pages of
Movable and CMA pageblocks (/proc/pagetypeinfo, root only; without it, free
pages alone).  With --map, for orders of pageblock order and up, the bound is
also at most the aligned runs of free and compactable pageblocks (mfd map)
whose used pages fit in the free pages of Movable and CMA pageblocks, where
compaction migrates them to; "(map)" marks it.  The kernel's verdict is its compaction_suitable() chain for the
order, as kcompactd weighs it (the min watermark).

exit status: 0 if COUNT blocks are free now, 1 if not (or on an error), 2 on
a usage error.
"""

_UNITS = {"": None, "K": 10, "M": 20, "G": 30, "T": 40}
_SPEC = re.compile(r"^(?:(\d+)@)?(\d+)([KMGT]?)(?:i?B)?$", re.I)
MAX_ORDER_ASKED = 40     # 2^40 pages: more memory than any machine


@dataclass(frozen=True)
class Ask:
    count: Optional[int]      # None: no count (the no-argument report)
    order: int
    label: str                # as the user wrote it, or "THP" / "hugetlb 1 GiB"


def parse_ask(text: str, page_size: int) -> Ask:
    """COUNT@SIZE: ``512@2M``, ``4@1G``, ``100@9``."""
    m = _SPEC.match(text.strip())
    if not m or m.group(1) is None:
        raise UsageError(f"cannot read {text!r}: write COUNT@SIZE, as 512@2M, 4@1G or 100@9 "
                         "(an order)")
    count, number, unit = int(m.group(1)), int(m.group(2)), m.group(3).upper()
    if count <= 0:
        raise UsageError(f"{text!r}: COUNT must be at least 1")
    if not unit:
        order = number
    else:
        size = number << _UNITS[unit]
        if size < page_size or size % page_size or (size // page_size) & (size // page_size - 1):
            raise UsageError(f"{text!r}: {number}{unit} is not a power-of-two multiple of "
                             f"the {page_size >> 10} KiB page")
        order = (size // page_size).bit_length() - 1
    if order > MAX_ORDER_ASKED:
        raise UsageError(f"{text!r}: order {order} is beyond any machine")
    return Ask(count, order, text.strip())


def build_parser():
    p = common.parser("mfd can", "Can the buddy allocator give COUNT blocks of SIZE, now "
                      "and after compaction, per node and zone?", EPILOG)
    p.add_argument("ask", nargs="?", metavar="COUNT@SIZE",
                   help="blocks and their size: 512@2M, 4@1G, 100@9 (an order)")
    common.add_filter(p)
    p.add_argument("--map", action="store_true",
                   help="bound orders of pageblock order and up by the pageblock map "
                        "(root: reads /proc/kpageflags, about 1 s for 24 GiB; see mfd map)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    common.add_debug(p, "show tracebacks")
    return p


def default_asks(page_size: int) -> List[Ask]:
    """The THP order and every hugetlb size the kernel offers."""
    asks = []
    thp = facts.hpage_pmd_size()
    if thp:
        asks.append(Ask(None, (thp // page_size).bit_length() - 1, "THP"))
    for size in facts.hugetlb_sizes():
        order = (size // page_size).bit_length() - 1
        if all(a.order != order for a in asks):
            asks.append(Ask(None, order, f"hugetlb {size_text(order, page_size)}"))
    return asks


def answer(asks: List[Ask], flt: Filter, with_map: bool = False):
    state = read_zone_state()
    flt = flt.resolve_in(state.snapshot)
    limits = state.limits_of()
    kernel = facts.kernel_version()
    threshold = facts.sysctl_int("vm/extfrag_threshold", 500)
    maps, block_pages = {}, 512
    if with_map:
        from ..sources.pagemap import take_map
        pm = take_map(flt, info, pagetypes=state.pagetypes is not None, known=state.pagetypes)
        maps, block_pages = {(z.node, z.zone): z for z in pm.zones}, pm.block_pages
    out = []
    for ask in asks:
        rows = [zone_can(ask.order, z.nr_free, limits[(z.node, z.zone)], kernel, threshold,
                         state.pagetypes, maps.get((z.node, z.zone)), block_pages)
                for z in flt.zones(state.snapshot) if (z.node, z.zone) in limits]
        out.append((ask, rows))
    return out, state.pagetypes_problem


def _row_json(r: ZoneCan) -> dict:
    v = r.verdict
    return {"node": r.node, "zone": r.zone, "order": r.order, "now": r.now,
            "after_compaction": r.bound, "after_compaction_basis": r.bound_basis,
            "verdict": v.verdict if v else None,
            "verdict_text": (VERDICT_TEXT[v.verdict] if v else
                             "above the largest buddy order: alloc_contig_pages()"),
            "reason": v.reason if v else None,
            "fragindex": None if v is None or v.fragindex is None else v.fragindex / 1000,
            "extfrag_threshold": v.threshold if v else None}


def render_text(results, page_size: int) -> str:
    lines = []
    for ask, rows in results:
        what = f"order {rows[0].order if rows else ask.order} ({size_text(ask.order, page_size)})"
        head = (f"{ask.label}: {ask.count} block{'s' if ask.count != 1 else ''} of {what}"
                if ask.count is not None else f"{ask.label}: {what}")
        lines.append(head)
        lines.append(f"  {'NODE':>4}  {'ZONE':<8}  {'NOW':>9}  {'AFTER COMPACTION':>22}  KERNEL")
        for r in rows:
            v = VERDICT_TEXT[r.verdict.verdict] if r.verdict else \
                "above the largest buddy order (alloc_contig_pages())"
            bound = f"<= {r.bound}" + {"free pages": " (free pages)",
                                        "pageblock map": " (map)"}.get(r.bound_basis, "")
            lines.append(f"  {r.node:>4}  {one_line(r.zone):<8}  {r.now:>9}  {bound:>22}  {v}")
        total = sum(r.now for r in rows)
        lines.append(f"  {'total':<14}  {total:>9}  {'<= ' + str(sum(r.bound for r in rows)):>22}")
        if ask.count is not None:
            lines.append(f"  fits now: {'yes' if total >= ask.count else 'no'} "
                         f"({total} {'>=' if total >= ask.count else '<'} {ask.count})")
        lines.append("")
    return "\n".join(lines)


def main(argv: List[str], debug: bool = False) -> int:
    return common.command_main(build_parser, run, argv, debug)


def run(args) -> int:
    page_size = os.sysconf("SC_PAGE_SIZE")
    asks = [parse_ask(args.ask, page_size)] if args.ask else default_asks(page_size)
    if not asks:
        raise UsageError("no THP and no hugetlb sizes here: give COUNT@SIZE")
    results, why = answer(asks, Filter(args.node, args.zone), args.map)
    if why:
        info(f"{why}: the after-compaction bound counts free pages only")
    if args.json:
        doc = {"asks": [{"label": a.label, "count": a.count, "order": a.order,
                         "size_bytes": page_size << a.order,
                         "now": sum(r.now for r in rows),
                         "fits_now": (None if a.count is None else
                                      sum(r.now for r in rows) >= a.count),
                         "zones": [_row_json(r) for r in rows]} for a, rows in results],
               "notes": noted()}
        print(json.dumps(doc))
    else:
        sys.stdout.write(render_text(results, page_size))
    first, rows = results[0]
    if first.count is None:
        return 0
    return 0 if sum(r.now for r in rows) >= first.count else 1

