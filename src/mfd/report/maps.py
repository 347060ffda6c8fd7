"""The pageblock maps of a recording (``mfd --record --map-interval``): the
map at the start and at the end, and how each zone's class counts evolved.

Imported only for a recording that holds maps (numpy).  Every map read is
bounded by the recording's own checks (mfd.recording: MAX_MAP_BLOCKS per
zone); the evolution reads at most SERIES_POINTS maps, evenly spaced.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from .. import pageblocks as pb
from ..durations import format_time
from ..model import Filter
from ..model.physmap import PhysMap, ZoneMap
from ..recording import History, MapRecord
from ..sinks import maptext
from ..sinks.table import table
from ..term import one_line

SERIES_POINTS = 64          # maps read for the evolution
TEXT_POINTS = 6             # of which the text shows this many
DRAWN_ROWS = 8              # rows of each drawn map in the text


@dataclass
class MapHistory:
    count: int                  # maps in the selection
    times: List[float]          # of which these were read (evenly spaced)
    first: PhysMap
    last: PhysMap
    # (node, zone) -> [(time, counts per class)], SERIES_POINTS at most
    series: Dict[Tuple[int, str], List[Tuple[float, Tuple[int, ...]]]]


def physmap(records: List[MapRecord], host: str, kernel: str) -> PhysMap:
    """A recorded map as the PhysMap mfd map draws."""
    first = records[0]
    P = 1 << first.pageblock_order
    zones = []
    for r in records:
        classes = pb.from_runs(r.runs)
        zones.append(ZoneMap(r.node, r.zone, r.first_block * P, (r.first_block + r.blocks) * P,
                             r.first_block, classes, None))     # drawn only: no movable counts
    return PhysMap(host, kernel, first.time, first.page_size, first.pageblock_order, P, zones,
                   0.0, None)


def _spaced(times: List[float], n: int) -> List[float]:
    if len(times) <= n:
        return list(times)
    idx = sorted({round(i * (len(times) - 1) / (n - 1)) for i in range(n)})
    return [times[i] for i in idx]


def map_history(hist: History, since: Optional[float], until: Optional[float],
                flt: Filter) -> Optional[MapHistory]:
    count, times = hist.map_times(since, until, SERIES_POINTS)
    if not times:
        return None
    series: Dict[Tuple[int, str], List[Tuple[float, Tuple[int, ...]]]] = {}
    maps: Dict[float, List[MapRecord]] = {}
    for t in times:
        recs = hist.pagemap(t, flt)
        if t in (times[0], times[-1]):
            maps[t] = recs
        for r in recs:
            series.setdefault((r.node, r.zone), []).append((t, r.counts()))
    if not maps.get(times[0]) or not maps.get(times[-1]):
        return None                 # -i/-c match no zone of the maps

    def drawn(t: float) -> PhysMap:
        run = hist.runs[maps[t][0].run_id]
        return physmap(maps[t], run.host, run.kernel)
    return MapHistory(count, times, drawn(times[0]), drawn(times[-1]), series)


COLUMNS = (pb.FREE, pb.COMPACTABLE, pb.HUGE, pb.UNCERTAIN, pb.PINNED, pb.HOLE)


def evolution_rows(mh: MapHistory) -> Tuple[List[str], List[list]]:
    headers = ["NODE", "ZONE", "TIME", "FREE", "COMPACT", "HUGE", "UNCERT", "PINNED", "HOLE"]
    rows = []
    for (node, zone), points in sorted(mh.series.items()):
        shown = [p for p in points if p[0] in set(_spaced([q[0] for q in points], TEXT_POINTS))]
        for t, counts in shown:
            rows.append([node, one_line(zone), format_time(t)] + [counts[c] for c in COLUMNS])
        first, last = points[0][1], points[-1][1]
        rows.append([node, one_line(zone), "change"] +
                    [f"{last[c] - first[c]:+d}" for c in COLUMNS])
    return headers, rows


def maps_text(mh: MapHistory, width: int = 80) -> str:
    span = f"{format_time(mh.times[0])} .. {format_time(mh.times[-1])}"
    out = [f"pageblock maps: {mh.count}, {span}", ""]
    for name, pm in (("first", mh.first), ("last", mh.last)):
        cells = width - maptext.LABEL
        per = maptext.fit(pm.zones, cells, max(DRAWN_ROWS, len(pm.zones)))
        out.append(f"the {name} map, {format_time(pm.time)}: {maptext.header(pm, per).split('   ')[0]}")
        out += maptext.map_lines(pm, cells, per, color=False)
        out.append("")
    out.append(maptext.legend(False, False))
    out.append("")
    out.append("pageblocks per class over the recording (evenly spaced maps)")
    headers, rows = evolution_rows(mh)
    out.append("\n".join("  " + line for line in table(rows, headers).split("\n")))
    return "\n".join(out) + "\n"


def counts_figure(mh: MapHistory):
    """Pageblocks per class over time, one panel per zone (matplotlib)."""
    from datetime import datetime
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from .mapimage import COLORS
    keys = sorted(mh.series)[:8]            # the charts' zone cap (report.build)
    fig = Figure(figsize=(12, 2.4 * len(keys) + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(len(keys), 1, i + 1)
        points = mh.series[key]
        when = [datetime.fromtimestamp(t) for t, _c in points]
        for c in COLUMNS:
            ax.plot(when, [counts[c] for _t, counts in points], color=COLORS[c],
                    label=pb.CLASSES[c], marker="." if len(points) < 30 else None)
        ax.set_title(one_line(f"node {key[0]} {key[1]}").replace("$", r"\$"), fontsize=9)
        ax.set_ylabel("pageblocks", fontsize=8)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.legend(fontsize=7, ncol=len(COLUMNS), loc="upper left")
    fig.tight_layout()
    return fig


def maps_section(mh: MapHistory) -> str:
    """The HTML report's maps: the first and the last as pictures, the class
    counts over time, and the table of the text summary."""
    import base64
    import html
    import io
    from .html import _html_table
    from .mapimage import map_figure

    def img(fig, alt: str) -> str:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=fig.dpi)
        return (f"<img alt='{html.escape(alt)}' src='data:image/png;base64,"
                + base64.b64encode(buf.getvalue()).decode("ascii") + "'>")
    return "\n".join([
        f"<h2>Pageblock maps</h2><p>{mh.count} maps, {format_time(mh.times[0])} .. "
        f"{format_time(mh.times[-1])}.</p>",
        "<h3>The first</h3>", img(map_figure(mh.first), "the first pageblock map"),
        "<h3>The last</h3>", img(map_figure(mh.last), "the last pageblock map"),
        "<h3>Pageblocks per class</h3>", img(counts_figure(mh), "pageblocks per class over time"),
        _html_table(*evolution_rows(mh))])
