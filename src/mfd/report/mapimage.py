"""``mfd map --png``: the pageblock map as a picture, drawn with matplotlib
(the optional extra ``mfd[plot]``, imported only when asked for).

One band of rows per zone, ROW_BLOCKS pageblocks a row (1 GiB with 2 MiB
blocks), each pixel the worst class of the blocks it stands for; the GiB of
each band's rows on the left, a legend, and a title naming host, kernel and
time.  A machine too large for MAX_ROWS rows at one block a pixel gets
several blocks a pixel, as the terminal map does.
"""
from __future__ import annotations

import io
import time
from typing import List, Tuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .. import pageblocks as pb
from ..model.physmap import PhysMap
from ..term import one_line

# class -> colour (#rrggbb); the same order as the terminal's legend
COLORS = {pb.HOLE: "#c8c8c8", pb.FREE: "#2ca02c", pb.HUGE: "#9467bd",
          pb.COMPACTABLE: "#17becf", pb.UNCERTAIN: "#ffbf00", pb.PINNED: "#d62728"}
POLLUTED = "#e377c2"      # not black: the text is
GAP = "#ffffff"
ROW_BLOCKS = 512
MAX_ROWS = 800
WIDTH, DPI = 12.0, 100


def rgb(color: str) -> Tuple[int, int, int]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def _text(s: str) -> str:
    return one_line(s).replace("$", r"\$")      # no mathtext from kernel strings


def per_pixel(pm: PhysMap) -> int:
    rows = sum(-(-z.blocks // ROW_BLOCKS) + 1 for z in pm.zones)
    return max(1, -(-rows // MAX_ROWS))


def raster(pm: PhysMap) -> Tuple[np.ndarray, List[Tuple[int, int, str, float]], int]:
    """(rows x ROW_BLOCKS x 3 uint8 image, [(first row, rows, zone label,
    GiB at the band's first row)], pageblocks per pixel)."""
    per = per_pixel(pm)
    palette = np.array([rgb(COLORS[c]) for c in range(len(pb.CLASSES))], np.uint8)
    bands, parts, at = [], [], 0
    for z in pm.zones:
        cells = pb.worst_per_cell(z.classes, per)
        rows = max(1, -(-len(cells) // ROW_BLOCKS))
        img = np.full((rows * ROW_BLOCKS, 3), rgb(GAP), np.uint8)
        img[:len(cells)] = palette[cells]
        if z.polluted:
            marks = np.zeros(len(cells) * per, bool)
            marks[sorted(z.polluted)] = True
            img[np.flatnonzero(marks[:len(cells) * per].reshape(-1, per).any(axis=1))] = \
                rgb(POLLUTED)
        parts.append(img.reshape(rows, ROW_BLOCKS, 3))
        parts.append(np.full((1, ROW_BLOCKS, 3), rgb(GAP), np.uint8))
        gib = z.first_block * pm.block_pages * pm.page_size / (1 << 30)
        bands.append((at, rows, f"node {z.node} {z.zone}", gib))
        at += rows + 1
    image = np.concatenate(parts) if parts else np.full((1, ROW_BLOCKS, 3), 255, np.uint8)
    return image, bands, per


def map_figure(pm: PhysMap) -> Figure:
    image, bands, per = raster(pm)
    rows = image.shape[0]
    height = min(40.0, max(3.5, 1.6 + rows * 0.06))
    fig = Figure(figsize=(WIDTH, height), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0.13, 0.18 if rows < 40 else 0.08, 0.79,
                       0.68 if rows < 40 else 0.84])
    ax.imshow(image, interpolation="nearest", aspect="auto", resample=False)
    row_gib = ROW_BLOCKS * per * pm.block_pages * pm.page_size / (1 << 30)
    ticks, labels = [], []
    step = max(1, rows // 24)
    for first, n, label, gib in bands:
        ax.text(-0.01, first + n / 2 - 0.5, _text(label), transform=ax.get_yaxis_transform(),
                ha="right", va="center", fontsize=9, fontweight="bold")
        for r in range(0, n, step):
            ticks.append(first + r)
            labels.append(f"{gib + r * row_gib:.1f} GiB")
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize=7)
    ax.yaxis.tick_right()
    mib = per * pm.block_pages * pm.page_size >> 20
    xt = np.linspace(0, ROW_BLOCKS, 9)
    ax.set_xticks(xt - 0.5)
    ax.set_xticklabels([f"+{int(x * mib)} MiB" if x else "0" for x in xt], fontsize=7)
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(pm.time))
    fig.suptitle(_text(f"mfd map: {pm.host}, kernel {pm.kernel}, {when}"), fontsize=11)
    ax.set_title(f"one cell = {per} pageblock{'s' if per != 1 else ''} "
                 f"({mib} MiB), the worst class among them; one row = {row_gib:g} GiB",
                 fontsize=8)
    handles = [Patch(facecolor=COLORS[c], edgecolor="#555", label=name)
               for c, name in enumerate(pb.CLASSES)]
    if any(z.polluted for z in pm.zones):
        handles.append(Patch(facecolor=POLLUTED, label="polluted (extfrag)"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8,
               frameon=False)
    return fig


def render_map_png(pm: PhysMap) -> bytes:
    fig = map_figure(pm)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()
