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


def html_page(rep: Report, png: bytes) -> str:
    """A self-contained page: summary tables and the charts as an inline PNG."""
    import base64
    span = rep.last - rep.first
    # Every string from the recording goes through html.escape (in _html_table
    # and below).  A file of 1024 nodes x 8 zones x 64 orders would make half a
    # million rows here: with more zones than the charts show, the charted ones.
    shown = [rep.zones[k] for k in rep.charted if k in rep.zones] or list(rep.zones.values())
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>mfd report: {html.escape(os.path.basename(rep.path))}</title><style>",
        "body{font-family:sans-serif;margin:1.5em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right;font-size:90%}"
        "th{background:#eee}img{max-width:100%}",
        "</style></head><body>",
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
    parts.append("</body></html>\n")
    return "\n".join(parts)
