"""Charts of a recording (``mfd report --png/--html``), drawn with matplotlib.

Imported only when charts are asked for: matplotlib is the optional extra
``mfd[plot]``.  Uses :class:`matplotlib.figure.Figure` with the Agg canvas
directly (no pyplot, no global state, no display needed).

One row per zone: a heatmap of the unusable index (time x order; green 0,
red 1) and its free blocks per order over time; a last row with the event
rates (extfrag steals, compaction events, pages compaction scanned) when the
recording has events.
"""
from __future__ import annotations

import io
import statistics
from datetime import datetime
from typing import Callable, List, Optional, Sequence, Tuple

import matplotlib.dates as mdates
import numpy as np  # a dependency of matplotlib
# Figure with the Agg canvas directly: no pyplot, so no backend to choose.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..model import GROUPS
from ..term import one_line

CMAP = "RdYlGn_r"          # the live view's ramp: green usable, red unusable
ROW_HEIGHT = 2.9           # inches per zone row
EVENTS_HEIGHT = 2.8        # inches for the events row
WIDTH = 15.0
DPI = 100
# At most build.MAX_CHART_ZONES zone rows: 15 x 37.6 inches, 1500 x 3760
# pixels at the most, whatever the recording holds.
MAX_SERIES = 10            # lines in one events panel: the busiest, the rest are in the tables
MAX_TICKS = 16             # order labels on a heatmap's axis


def _text(s: str) -> str:
    """A string from the recording (or the command line) as plain text for
    matplotlib: one line, and no mathtext ("$...$" would be parsed as TeX,
    and a malformed formula fails the whole drawing)."""
    return one_line(s).replace("$", r"\$")


def _columns_layout(columns) -> Tuple[List[float], List[Optional[int]]]:
    """Time edges (unix seconds) and, per drawn cell, the column index or None (a gap).

    A column spans from its first sample to the next column's first sample;
    where the next column starts much later than the typical step (mfd was
    not running), a blank cell fills the gap.
    """
    starts = [c.start for c in columns]
    steps = [b - a for a, b in zip(starts, starts[1:]) if b > a]
    step = statistics.median(steps) if steps else max(columns[0].seconds, 1.0)
    edges, cells = [starts[0]], []
    for i, c in enumerate(columns):
        nxt = starts[i + 1] if i + 1 < len(columns) else None
        right = c.end + step if nxt is None or nxt - c.end > 3 * step else nxt
        right = max(right, c.start + step / 2)
        edges.append(right)
        cells.append(i)
        if nxt is not None and nxt > right:
            edges.append(nxt)
            cells.append(None)
    return edges, cells


def order_colour(order: int):
    """Distinct colours per order: tab10 for 0-9, black for 10 (MAX_PAGE_ORDER on most
    machines, the order everyone watches), tab10's again, lighter, above."""
    from matplotlib import cm
    if order == 10:
        return (0.0, 0.0, 0.0)
    r, g, b = cm.tab10.colors[order % 10]
    fade = 0.5 if order > 10 else 0.0
    return (r + (1 - r) * fade, g + (1 - g) * fade, b + (1 - b) * fade)


def _dates(seconds: Sequence[float]):
    return mdates.date2num([datetime.fromtimestamp(t) for t in seconds])


def _time_axis(ax) -> None:
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def zone_matrices(rep, key, cells) -> Tuple[np.ndarray, np.ndarray]:
    """(unusable index, mean free blocks), each orders x cells, NaN where no sample."""
    orders = rep.zones[key].nr_orders
    unusable = np.full((orders, len(cells)), np.nan)
    blocks = np.full((orders, len(cells)), np.nan)
    for j, i in enumerate(cells):
        acc = None if i is None else rep.columns[i].zones.get(key)
        if acc is None:
            continue
        n, u_sum, b_sum = acc
        k = min(orders, len(u_sum))     # a run on a kernel with fewer orders: NaN above
        unusable[:k, j] = np.asarray(u_sum[:k], dtype=float) / (1000.0 * n)
        blocks[:k, j] = np.asarray(b_sum[:k], dtype=float) / n
    return unusable, blocks


def event_series(rep, cells) -> dict:
    """{event name: rate per second per cell} for every event seen; NaN in gaps."""
    names = sorted({k for c in rep.columns for k, v in c.events.items() if v})
    out = {}
    for name in names:
        rates = []
        for i in cells:
            c = None if i is None else rep.columns[i]
            rates.append(np.nan if c is None or not c.seconds
                         else c.events.get(name, 0) / c.seconds)
        out[name] = np.asarray(rates)
    return out


def _draw_zone(fig, ax_heat, ax_free, rep, key, x_edges, x_mid, cells) -> None:
    s = rep.zones[key]
    unusable, blocks = zone_matrices(rep, key, cells)
    y_edges = np.arange(s.nr_orders + 1) - 0.5
    mesh = ax_heat.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(unusable), cmap=CMAP,
                              vmin=0.0, vmax=1.0, shading="flat")
    ax_heat.set_label(f"heat:{s.node}:{s.zone}")
    ax_heat.set_title(f"node {s.node} {_text(s.zone)}: unusable index per order", fontsize=10,
                      loc="left")
    ax_heat.set_ylabel("order")
    ax_heat.set_yticks(range(0, s.nr_orders, -(-s.nr_orders // MAX_TICKS)))
    ax_heat.tick_params(axis="y", labelsize=7)
    ax_heat.set_xlim(x_edges[0], x_edges[-1])
    _time_axis(ax_heat)
    cax = ax_heat.inset_axes([1.01, 0.0, 0.018, 1.0])
    fig.colorbar(mesh, cax=cax).set_label("unusable index", fontsize=8)
    cax.tick_params(labelsize=7)

    ax_free.set_label(f"free:{s.node}:{s.zone}")
    for o in range(s.nr_orders):
        ax_free.plot(x_mid, blocks[o], color=order_colour(o), linewidth=1.1, label=str(o))
    ax_free.set_yscale("symlog", linthresh=1)
    ax_free.set_title(f"node {s.node} {_text(s.zone)}: free blocks per order", fontsize=10,
                      loc="left")
    ax_free.set_ylabel("blocks")
    ax_free.set_xlim(x_edges[0], x_edges[-1])
    ax_free.grid(True, alpha=0.3)
    _time_axis(ax_free)
    ax_free.legend(title="order", fontsize=6, title_fontsize=7,
                   ncol=max(2, -(-s.nr_orders // 8)), loc="upper left",
                   bbox_to_anchor=(1.0, 1.0), frameon=False)


def _draw_events(ax, title, series, x_mid, prefix: str) -> bool:
    ax.set_title(title, fontsize=10, loc="left")
    if not series:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.5, 0.5, "none in this span (all counts 0)", ha="center", va="center",
                color="#555", transform=ax.transAxes)
        return False
    if len(series) > MAX_SERIES:    # the busiest lines; every counter is in the tables
        busiest = sorted(series, key=lambda k: -float(np.nansum(series[k])))[:MAX_SERIES]
        series = {k: series[k] for k in sorted(busiest)}
    peaks = []
    for i, (name, rates) in enumerate(series.items()):
        # equal series (every steal changing ownership) stay visible: dashes over solid
        ax.plot(x_mid, rates, linewidth=1.3, linestyle=("-", "--", ":", "-.")[i % 4],
                color=f"C{i % 10}", label=_text(name[len(prefix):] if name.startswith(prefix)
                                                else name))
        if np.isfinite(rates).any() and np.nanmax(rates) > 0:
            peaks.append(float(np.nanmax(rates)))
    if peaks and max(peaks) > 20 * min(peaks):
        ax.set_yscale("symlog", linthresh=1)   # a few stalls beside many: show both
    else:
        ax.set_ylim(bottom=0)
    ax.set_ylabel("per second")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", frameon=False)
    _time_axis(ax)
    return True


def _pages(name: str) -> bool:
    """Counters of pages (compact_migrate_scanned, ...), not of events: a panel of their own."""
    return name.endswith(("_scanned", "_isolated"))


TITLES = {"extfrag": "extfrag events (fallback steals) per second"}


def event_panels(names) -> List[Tuple[str, str, Callable[[str], bool], str]]:
    """(label, title, which event names, prefix left off the legend) for the
    events row: one panel per recorded event group, in GROUPS order, and one
    for a group's page counters beside it."""
    panels = []
    for g in GROUPS:
        mine = [n for n in names if n.startswith(g + ".")]
        if not mine:
            continue
        panels.append((g, TITLES.get(g, f"{g} events per second"),
                       lambda k, g=g: k.startswith(g + ".") and not _pages(k), g + "."))
        if any(_pages(n) for n in mine):
            panels.append((f"{g}-pages", f"pages {g} scanned/isolated per second (/proc/vmstat)",
                           lambda k, g=g: k.startswith(g + ".") and _pages(k), f"{g}.vmstat."))
    return panels


def figure(rep) -> Figure:
    """The whole chart page for a :class:`mfd.report.Report` built with ``charts=True``."""
    keys = list(rep.charted or rep.zones)
    x_edges_s, cells = _columns_layout(rep.columns)
    x_edges = _dates(x_edges_s)
    x_mid = (x_edges[:-1] + x_edges[1:]) / 2
    events = event_series(rep, cells)
    rows = len(keys) + 1
    fig = Figure(figsize=(WIDTH, ROW_HEIGHT * len(keys) + EVENTS_HEIGHT), dpi=DPI,
                 constrained_layout=True)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows, 2, width_ratios=[1.1, 1],
                            height_ratios=[ROW_HEIGHT] * len(keys) + [EVENTS_HEIGHT])
    for r, key in enumerate(keys):
        _draw_zone(fig, fig.add_subplot(grid[r, 0]), fig.add_subplot(grid[r, 1]), rep, key,
                   x_edges, x_mid, cells)
    if rep.event_samples:
        panels = event_panels(rep.events)
        row = grid[rows - 1, :].subgridspec(1, max(1, len(panels)))
        for col, (label, title, wanted, prefix) in enumerate(panels):
            ax = fig.add_subplot(row[0, col])
            ax.set_label("events:" + label)
            if _draw_events(ax, title, {k: v for k, v in events.items() if wanted(k)},
                            x_mid, prefix):
                ax.set_xlim(x_edges[0], x_edges[-1])
    else:
        ax = fig.add_subplot(grid[rows - 1, :])
        ax.set_label("events:none")
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no events in this recording "
                "(record with mfd -s/--events to add them)", ha="center", va="center",
                fontsize=11, color="#555")
    left_out = len(rep.zones) - len(keys)
    fig.suptitle(f"mfd report: {_text(rep.path)}  ({rep.samples} samples"
                 + (f"; the {len(keys)} worst of {len(rep.zones)} zones, all of them in the "
                    "tables" if left_out > 0 else "") + ")", fontsize=12)
    return fig


def render_png(rep, fig: Optional[Figure] = None) -> bytes:
    """The chart page as PNG bytes (at the figure's own dpi, so pixel = display coords)."""
    fig = fig or figure(rep)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()


# -- two recordings side by side (mfd report A.db --compare B.db) ----------------------

SIDE_COLOURS = ("#1f77b4", "#ff7f0e")      # A blue, B orange, in every panel


def comparison_zones(cmp) -> List[Tuple[int, str]]:
    from .build import MAX_CHART_ZONES
    from .compare import shown_zones
    return shown_zones(cmp, MAX_CHART_ZONES)


def _draw_quantiles(ax, cmp, key, name: str) -> None:
    orders = list(cmp.orders(key))
    for side, colour in zip(cmp.sides, SIDE_COLOURS):
        stats = [side.dist.stats(name, key + (o,)) for o in orders]
        for q, style in ((0, "-"), (1, "--")):
            ys = [np.nan if s is None else s[q] / 1000.0 for s in stats]
            ax.plot(orders, ys, style, color=colour, marker="o" if q == 0 else None,
                    markersize=3, label=f"{_text(side.label)} {('median', 'p90')[q]}")
    ax.set_xticks(orders[::max(1, -(-len(orders) // MAX_TICKS))])
    ax.set_xlabel("order")
    ax.set_ylim((-1.05, 1.05) if name == "extfrag" else (-0.02, 1.02))
    ax.set_title(f"node {key[0]} {_text(key[1])}: {name}_index", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def _draw_no_block(ax, cmp, zones) -> None:
    x = np.arange(len(zones))
    for i, (side, colour) in enumerate(zip(cmp.sides, SIDE_COLOURS)):
        blocks = [cmp.no_block(side, k) for k in zones]
        shares = [np.nan if nb is None else 100 * nb[1] for nb in blocks]
        ax.bar(x + (i - 0.5) * 0.4, shares, 0.4, color=colour, label=_text(side.label))
    ax.set_xticks(x)
    ax.set_xticklabels([f"{n} {_text(z)}" for n, z in zones], fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of the time")
    ax.set_title(f"time with no free order-{cmp.hpage_order} block", fontsize=10)
    ax.legend(fontsize=8)


def _draw_rates(ax, cmp) -> None:
    names = cmp.event_names()
    if not names:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no event counted in either recording", ha="center", va="center",
                fontsize=11, color="#555")
        return
    busiest = sorted(names, key=lambda n: -max(s.rate(n) or 0 for s in cmp.sides))
    names = sorted(busiest[:MAX_SERIES])
    y = np.arange(len(names))
    for i, (side, colour) in enumerate(zip(cmp.sides, SIDE_COLOURS)):
        ax.barh(y + (i - 0.5) * 0.4, [side.rate(n) or 0 for n in names], 0.4, color=colour,
                label=_text(side.label))
    ax.set_yticks(y)
    ax.set_yticklabels([_text(n) for n in names], fontsize=7)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("per second")
    ax.set_title("event rates" + (f" (the {MAX_SERIES} busiest)" if len(busiest) > MAX_SERIES
                                  else ""), fontsize=10)
    ax.legend(fontsize=8)


def comparison_figure(cmp) -> Figure:
    zones = comparison_zones(cmp)
    rows = len(zones) + 1
    fig = Figure(figsize=(WIDTH, ROW_HEIGHT * rows), dpi=DPI, constrained_layout=True)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows, 2)
    for r, key in enumerate(zones):
        for c, name in enumerate(("unusable", "extfrag")):
            ax = fig.add_subplot(grid[r, c])
            ax.set_label(f"zone:{key[0]}:{key[1]}:{name}")
            _draw_quantiles(ax, cmp, key, name)
    ax = fig.add_subplot(grid[rows - 1, 0])
    ax.set_label("no_block")
    _draw_no_block(ax, cmp, zones)
    ax = fig.add_subplot(grid[rows - 1, 1])
    ax.set_label("rates")
    _draw_rates(ax, cmp)
    left_out = len(cmp.common_zones()) - len(zones)
    fig.suptitle(f"mfd report: {_text(cmp.a.label)} vs {_text(cmp.b.label)}"
                 + (f"  (the {len(zones)} worst of {len(cmp.common_zones())} zones; all in "
                    "the tables)" if left_out > 0 else ""), fontsize=12)
    return fig


def render_comparison_png(cmp) -> bytes:
    return render_png(None, comparison_figure(cmp))
