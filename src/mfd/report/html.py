"""A self-contained HTML report: the summary tables and the charts inline."""
from __future__ import annotations

import html
import os

from ..durations import format_duration, format_time as _stamp
from ..fragindex import format_index
from .build import Report
from .summary import _runs_line, event_rows, order_rows, zone_rows


def _html_table(headers, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _head(title: str) -> str:
    """The page's head and its one style sheet; ``title`` is escaped already."""
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>mfd report: {title}</title><style>"
            "body{font-family:sans-serif;margin:1.5em;color:#222}"
            "table{border-collapse:collapse;margin:.5em 0 1.5em}"
            "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right;font-size:90%}"
            "th{background:#eee}img{max-width:100%}"
            "</style></head><body>")


def html_page(rep: Report, png: bytes, maps: str = "") -> str:
    """A self-contained page: summary tables and the charts as an inline PNG;
    ``maps``: the section on the recording's pageblock maps (report.maps)."""
    import base64
    span = rep.last - rep.first
    # Every string from the recording goes through html.escape (in _html_table
    # and below).  A file of 1024 nodes x 8 zones x 64 orders would make half a
    # million rows here: with more zones than the charts show, the charted ones.
    shown = [rep.zones[k] for k in rep.charted if k in rep.zones] or list(rep.zones.values())
    parts = [
        _head(html.escape(os.path.basename(rep.path))),
        f"<h1>mfd report: {html.escape(rep.path)}</h1>",
        f"<p>{html.escape(_runs_line(rep))}<br>{_stamp(rep.first)} .. {_stamp(rep.last)} "
        f"({format_duration(span)}), {rep.samples} samples, mfd schema {rep.version}</p>",
        f"<h2>Zones, worst first</h2><p>Time with unusable_index &gt; "
        f"{format_index(rep.threshold)} at order {rep.order} (and so at every order above)."
        "</p>",
        _html_table(*zone_rows(rep)),
        "<h2>Charts</h2>",
        "<img alt='unusable index heatmap, free blocks per order and event rates over time' "
        "src='data:image/png;base64," + base64.b64encode(png).decode("ascii") + "'>",
        "<h2>Every order</h2><p>NO_BLOCK: time with no free block of that order or larger "
        "(an allocation of that order would have needed reclaim or compaction)."
        + (f" The {len(shown)} zones charted; the others' orders are in "
           "<code>mfd report --csv</code>." if len(shown) < len(rep.zones) else "") + "</p>",
        _html_table(*order_rows(rep, [(s, o) for s in shown for o in range(s.nr_orders)])),
    ]
    if rep.events:
        parts += ["<h2>Events</h2>", _html_table(["EVENT", "TOTAL", "RATE"],
                                                 event_rows(rep, zeros=True))]
    else:
        parts.append("<h2>Events</h2><p>None recorded (record with mfd -s/--events).</p>")
    parts.append(maps)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def comparison_page(cmp, png: bytes, huge: str) -> str:
    """Two recordings side by side in one self-contained page."""
    import base64
    from .summary import comparison_side_lines, index_rows, no_block_rows, rate_rows
    a, b = (html.escape(s.label) for s in cmp.sides)
    parts = [
        _head(f"{a} vs {b}"),
        f"<h1>mfd report: {a} vs {b}</h1>",
        "<p>" + "<br>".join(html.escape(line) for line in comparison_side_lines(cmp)) + "</p>",
        f"<h2>Time with no free order-{cmp.hpage_order} ({html.escape(huge)}) block</h2>"
        "<p>THP and huge-page allocations had to compact or fail.</p>",
        _html_table(*no_block_rows(cmp)),
        "<h2>Charts</h2>",
        "<img alt='unusable index median and p90 per order, time with no THP-order block "
        "and event rates, both recordings' src='data:image/png;base64,"
        + base64.b64encode(png).decode("ascii") + "'>",
    ]
    from .build import MAX_CHART_ZONES
    from .compare import shown_zones
    zones = shown_zones(cmp, MAX_CHART_ZONES)
    if len(zones) < len(cmp.common_zones()):
        parts.append(f"<p>The {len(zones)} zones charted of {len(cmp.common_zones())}; "
                     "<code>-i</code>/<code>-c</code> pick others.</p>")
    for name in ("unusable", "extfrag"):
        parts += [f"<h2>{name}_index per order: median/p90/max over the samples</h2>",
                  _html_table(*index_rows(cmp, name, zones))]
    if cmp.event_names():
        parts += ["<h2>Event rates</h2>", _html_table(*rate_rows(cmp))]
    else:
        parts.append("<h2>Event rates</h2><p>None recorded in either.</p>")
    parts.append("<p>Percentiles are nearest-rank over each recording's samples.</p>"
                 "</body></html>\n")
    return "\n".join(parts)
