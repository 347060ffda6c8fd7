"""The terminal summary of a report: span, worst zones and orders, events."""
from __future__ import annotations

from typing import List, Tuple

from ..durations import format_duration, format_time as _stamp
from ..fragindex import format_index
from ..sinks.table import table
from ..term import one_line
from .build import Report, ZoneSummary, rank_zones

# Strings in a recording (zone, host, kernel, source names, event counter
# names) are whatever the file says: every one goes through one_line before it
# reaches the terminal, so a control sequence or a newline in ``kernel`` is
# shown escaped and cannot forge a line of the summary.


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


RUNS_SHOWN = 4      # distinct hosts, sources, intervals named in the runs line


def _some(items: List[str]) -> str:
    """The first RUNS_SHOWN items, and how many more (a file may hold many runs)."""
    more = len(items) - RUNS_SHOWN
    return ", ".join(items[:RUNS_SHOWN]) + (f" and {more} more" if more > 0 else "")


def _runs_line(rep: Report) -> str:
    hosts = sorted({(r.host, r.kernel) for r in rep.runs})
    sources = sorted({r.source + (f" (pgdat via {r.pgdat_path})" if r.pgdat_path else "")
                      for r in rep.runs})
    intervals = sorted({r.interval for r in rep.runs})
    return (f"{len(rep.runs)} run{'s' if len(rep.runs) != 1 else ''}: "
            + _some([f"{one_line(h)}, kernel {one_line(k)}" for h, k in hosts]) + "; "
            + _some([one_line(x) for x in sources]) + "; every "
            + _some([f"{i:g} s" for i in intervals]))


def worst_zones(rep: Report) -> List[ZoneSummary]:
    return rank_zones(rep.zones.values(), rep.order)


def worst_orders(rep: Report, limit: int = 10) -> List[Tuple[ZoneSummary, int]]:
    """(zone, order) pairs, order >= 1, most time above the threshold first, then mean index."""
    pairs = [(s, o) for s in rep.zones.values() for o in range(1, s.nr_orders)]
    pairs.sort(key=lambda p: (-p[0].above[p[1]], -p[0].unusable_mean(p[1]),
                              p[0].node, p[0].zone_idx, p[1]))
    return pairs[:limit]


def _idx(v: float) -> str:
    return format_index(int(round(v)))


def zone_rows(rep: Report) -> Tuple[List[str], List[list]]:
    o, thr = rep.order, format_index(rep.threshold)
    headers = ["NODE", "ZONE", "MANAGED", "FREE_MIN", "FREE_MAX", f"MEAN@{o}", f"MAX@{o}",
               f">{thr}@{o}", "SHARE"]
    rows = []
    for s in worst_zones(rep):
        has = o < s.nr_orders
        rows.append([s.node, one_line(s.zone), s.managed, s.free_min, s.free_max,
                     _idx(s.unusable_mean(o)) if has else "-",
                     format_index(s.unusable_max[o]) if has else "-",
                     format_duration(s.above[o]) if has else "-",
                     _share(s.above[o], s.seconds) if has else "-"])
    return headers, rows


def order_rows(rep: Report, pairs) -> Tuple[List[str], List[list]]:
    thr = format_index(rep.threshold)
    headers = ["NODE", "ZONE", "ORDER", "NR_FREE_MIN", "NR_FREE_MAX", "MEAN", "MAX",
               f">{thr}", "NO_BLOCK"]
    rows = [[s.node, one_line(s.zone), o, s.nr_free_min[o], s.nr_free_max[o],
             _idx(s.unusable_mean(o)), format_index(s.unusable_max[o]),
             format_duration(s.above[o]), format_duration(s.no_block[o])] for s, o in pairs]
    return headers, rows


def _count(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.1f}"


def _rate(v: float) -> str:
    return f"{v:.0f}/s" if v >= 100 else f"{v:.3g}/s"


def event_rows(rep: Report, zeros: bool = False) -> List[list]:
    """[name, total, rate] of every event counter (``zeros``: those that stayed 0 too)."""
    span = rep.event_seconds
    return [[one_line(k), _count(v), _rate(v / span) if span else "-"]
            for k, v in sorted(rep.events.items()) if v or zeros]


def _indented(headers, rows) -> str:
    return "\n".join("  " + line for line in table(rows, headers).splitlines())


def summary_text(rep: Report) -> str:
    span = rep.last - rep.first
    thr = format_index(rep.threshold)
    out = [f"recording  {one_line(rep.path)} (mfd schema {rep.version})",
           f"runs       {_runs_line(rep)}",
           f"span       {_stamp(rep.first)} .. {_stamp(rep.last)} ({format_duration(span)}), "
           f"{rep.samples} samples",
           "",
           f"zones, worst first: time with unusable_index > {thr} at order {rep.order}",
           _indented(*zone_rows(rep)),
           "",
           "worst orders (NO_BLOCK: time with no free block of that order or larger)",
           _indented(*order_rows(rep, worst_orders(rep))),
           ""]
    if rep.events:
        rows = event_rows(rep)
        width = max([5] + [len(r[0]) for r in rows])
        zero = len(rep.events) - len(rows)
        out.append(f"events: totals over {rep.event_samples} samples with events"
                   + (f" ({zero} other counters stayed 0)" if zero else ""))
        out += [f"  {name:<{width}}  {total:>12}  {rate:>10}" for name, total, rate in
                [("EVENT", "TOTAL", "RATE")] + rows]
        out.append("")
    else:
        out += ["events     none recorded (record with mfd -s/--events to add them)", ""]
    out.append("MANAGED, FREE_* in pages; NR_FREE_* in blocks; MEAN, MAX: unusable_index; "
               "unusable_index\nnever falls as the order rises: above the threshold at order "
               f"{rep.order} is above it at every higher order.")
    return "\n".join(out)


# -- two recordings side by side (mfd report A.db --compare B.db) ----------------------

def _stats_cell(stats) -> str:
    """median/p90/max as the kernel prints indices, "-" when the side has none."""
    return "-" if stats is None else "/".join(format_index(v) for v in stats)


def _delta(a, b) -> str:
    """B's median minus A's, in index units with a sign."""
    if a is None or b is None:
        return "-"
    d = b[0] - a[0]
    return ("+" if d > 0 else "") + (format_index(d) if d >= 0 else "-" + format_index(-d))


def comparison_side_lines(cmp) -> List[str]:
    out = []
    for tag, side in zip("AB", cmp.sides):
        rep = side.report
        out.append(f"{tag} {one_line(side.label)}: {one_line(rep.path)}, {_stamp(rep.first)} "
                   f".. {_stamp(rep.last)} ({format_duration(rep.last - rep.first)}), "
                   f"{rep.samples} samples; {_runs_line(rep)}")
    return out


def no_block_rows(cmp) -> Tuple[List[str], List[list]]:
    a, b = (one_line(s.label) for s in cmp.sides)
    headers = ["NODE", "ZONE", f"{a}", "SHARE", f"{b}", "SHARE"]
    rows = []
    for key in cmp.common_zones():
        cells = [key[0], one_line(key[1])]
        for side in cmp.sides:
            nb = cmp.no_block(side, key)
            cells += ["-", "-"] if nb is None else [format_duration(nb[0]),
                                                    f"{100 * nb[1]:.1f}%"]
        rows.append(cells)
    return headers, rows


def index_rows(cmp, name: str, zones=None) -> Tuple[List[str], List[list]]:
    a, b = (one_line(s.label) for s in cmp.sides)
    headers = ["NODE", "ZONE", "ORDER", f"{a} MED/P90/MAX", f"{b} MED/P90/MAX", "MEDIAN B-A"]
    rows = [[node, one_line(zone), o, _stats_cell(sa), _stats_cell(sb), _delta(sa, sb)]
            for node, zone, o, sa, sb in cmp.index_rows(name, zones)]
    return headers, rows


def rate_rows(cmp) -> Tuple[List[str], List[list]]:
    a, b = (one_line(s.label) for s in cmp.sides)
    rows = []
    for name in cmp.event_names():
        ra, rb = (side.rate(name) for side in cmp.sides)
        ratio = f"{rb / ra:.2f}x" if ra and rb is not None else "-"
        rows.append([one_line(name), _rate(ra) if ra is not None else "-",
                     _rate(rb) if rb is not None else "-", ratio])
    return ["EVENT", f"{a} RATE", f"{b} RATE", "B/A"], rows


def comparison_text(cmp, huge: str) -> str:
    """The terminal summary of two recordings; ``huge``: the THP order's size."""
    out = ["compare    " + line if i == 0 else "           " + line
           for i, line in enumerate(comparison_side_lines(cmp))]
    common = cmp.common_zones()
    out.append("zones      " + (", ".join(f"node {n} {one_line(z)}" for n, z in common)
                                or "none in both"))
    for side in cmp.sides:
        only = cmp.only_in(side)
        if only:
            out.append(f"           only in {one_line(side.label)}: "
                       + ", ".join(f"node {n} {one_line(z)}" for n, z in only))
    out.append("")
    if common:
        out += [f"time with no free order-{cmp.hpage_order} ({huge}) block or larger "
                "(THP and huge pages must compact or fail)", _indented(*no_block_rows(cmp)), ""]
        for name in ("unusable", "extfrag"):
            out += [f"{name}_index per order over the samples: median/p90/max "
                    + ("(-1.000: a free block of the order existed)" if name == "extfrag"
                       else "(share of free memory in blocks smaller than the order)"),
                    _indented(*index_rows(cmp, name)), ""]
    if cmp.event_names():
        out += ["event rates (per second of recorded events)", _indented(*rate_rows(cmp)), ""]
    elif any(side.report.event_samples for side in cmp.sides):
        out += ["events     recorded, and every counter stayed 0 in both", ""]
    else:
        out += ["events     none recorded in either (record with mfd -s/--events)", ""]
    out.append("Percentiles are nearest-rank over each recording's samples: each figure is "
               "one the kernel\nprinted. unusable_index's MEDIAN B-A below 0: B less "
               "fragmented at that order; extfrag_index's\n-1.000 is the kernel's \"a free "
               "block exists\", so a shift to or from it is a change of verdict.")
    return "\n".join(out)
