"""``mfd map`` on a terminal: one cell per N pageblocks, showing the worst
class among them, each zone starting its own row with its GiB offset on the
left; then the counts per zone and what pins the pinned blocks.

It fits the terminal it is given (80x24 at least) and uses a larger one to
show fewer blocks per cell.  Colours are background colours behind a space,
so the map needs no Unicode; without colour (not a terminal, NO_COLOR,
TERM=dumb, --color never) each class has its own character.
"""
from __future__ import annotations

import textwrap
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .. import pageblocks as pb
from ..model.physmap import PhysMap, ZoneMap
from ..term import one_line
from .table import table

# class -> (ANSI background, character without colour, legend name)
STYLE = {
    pb.HOLE: ("100", " ", "hole"),
    pb.FREE: ("42", ".", "free"),
    pb.HUGE: ("45", "H", "huge"),
    pb.COMPACTABLE: ("46", "o", "compactable"),
    pb.UNCERTAIN: ("43", "?", "uncertain"),
    pb.PINNED: ("41", "#", "pinned"),
}
POLLUTED_CHAR = "!"
LABEL = 24          # "node 0 Normal    12.00G " : the left axis
PFN_LABEL = 11      # "0x00300000 ": the row's first pfn too, on a terminal this wide:
PFN_COLS = 110
MIN_COLS, MIN_ROWS = 80, 24


def gib(pfn: int, page_size: int) -> str:
    return f"{pfn * page_size / (1 << 30):.2f}G"


def cells_needed(zones: Sequence[ZoneMap], per_cell: int, width: int) -> int:
    rows = 0
    for z in zones:
        cells = -(-z.blocks // per_cell)
        rows += max(1, -(-cells // width))
    return rows


def fit(zones: Sequence[ZoneMap], width: int, rows: int) -> int:
    """The fewest pageblocks per cell that lets every zone fit in ``rows``
    rows of ``width`` cells."""
    lo, hi = 1, max(1, max((z.blocks for z in zones), default=1))
    while lo < hi:
        mid = (lo + hi) // 2
        if cells_needed(zones, mid, width) <= rows:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _cell(c: int, polluted: bool, color: bool) -> str:
    bg, ch, _ = STYLE[c]
    if color:
        return f"\x1b[{bg}m{POLLUTED_CHAR if polluted else ' '}"
    return POLLUTED_CHAR if polluted else ch


def _row(classes: np.ndarray, marks: Optional[np.ndarray], color: bool) -> str:
    out = [_cell(int(c), bool(marks[i]) if marks is not None else False, color)
           for i, c in enumerate(classes)]
    return "".join(out) + ("\x1b[0m" if color else "")


def polluted_marks(z: ZoneMap) -> Optional[np.ndarray]:
    """bool per block: an extfrag event polluted it while watched."""
    if z.polluted is None:
        return None
    marks = np.zeros(z.blocks, bool)
    idx = np.asarray(sorted(z.polluted), dtype=np.int64)
    if len(idx):
        marks[idx] = True
    return marks


def label_width(cols: int) -> int:
    return LABEL + (PFN_LABEL if cols >= PFN_COLS else 0)


def map_lines(pm: PhysMap, width: int, per_cell: int, color: bool,
              pfns: bool = False) -> List[str]:
    """The map's rows: zone, the GiB (and with ``pfns`` the pfn) where each
    row starts, then ``width`` cells."""
    lines = []
    for z in pm.zones:
        cells = pb.worst_per_cell(z.classes, per_cell)
        marks = polluted_marks(z)
        if marks is not None:
            padded = np.zeros(len(cells) * per_cell, bool)
            padded[:len(marks)] = marks
            marks = padded.reshape(len(cells), per_cell).any(axis=1)
        name = one_line(f"node {z.node} {z.zone}")
        for r in range(0, max(1, len(cells)), width):
            pfn = (z.first_block + r * per_cell) * pm.block_pages
            label = (name if r == 0 else "")[:LABEL - 9]
            first = max(pfn, z.start_pfn)
            axis = f"{label:<{LABEL - 9}}{gib(first, pm.page_size):>8} "
            if pfns:
                axis += f"{first:#010x} ".rjust(PFN_LABEL)
            lines.append(axis + _row(cells[r:r + width],
                                     None if marks is None else marks[r:r + width], color))
    return lines


def legend(color: bool, with_polluted: bool) -> str:
    parts = [f"{_cell(c, False, color)}{chr(27) + '[0m' if color else ''} {name}"
             for c, (_bg, _ch, name) in sorted(STYLE.items(), key=lambda kv: kv[0])]
    if with_polluted:
        parts.append(f"{POLLUTED_CHAR} polluted")
    return "  ".join(parts)


def counts_table(pm: PhysMap) -> str:
    headers = ["NODE", "ZONE", "BLOCKS", "FREE", "COMPACT", "HUGE", "UNCERT", "PINNED",
               "HOLE", "BUDDY>=" + str(pm.pageblock_order)]
    rows = []
    for z in pm.zones:
        n = np.bincount(z.classes, minlength=len(pb.CLASSES))
        row = [z.node, z.zone, z.blocks, n[pb.FREE], n[pb.COMPACTABLE], n[pb.HUGE],
               n[pb.UNCERTAIN], n[pb.PINNED], n[pb.HOLE],
               "-" if z.buddy_blocks is None else z.buddy_blocks]
        rows.append([str(c) if not isinstance(c, str) else c for c in row])
    return table(rows, headers)


def _n(count: int, what: str) -> str:
    return f"{count} {what}{'s' if count != 1 else ''}"


def _top(items, n: int = 3) -> str:
    return ", ".join(items[:n])


def damage(pm: PhysMap, compact: bool = False) -> List[str]:
    """Per zone, what the extfrag events seen while watching did."""
    if pm.events_seconds is None:
        return []
    if compact:
        return [one_line(f"node {z.node} {z.zone}: {len(z.polluted or ())} pageblocks "
                         f"polluted, {len(z.converted or ())} converted in "
                         f"{pm.events_seconds:g} s") for z in pm.zones]
    return [one_line(f"node {z.node} {z.zone}: extfrag events in {pm.events_seconds:g} s "
                     f"polluted {_n(len(z.polluted or ()), 'pageblock')} (marked "
                     f"{POLLUTED_CHAR}) and converted {len(z.converted or ())}")
            for z in pm.zones]


def pinners(pm: PhysMap, compact: bool = False) -> List[str]:
    """Per zone with pinned blocks: the top page kinds and memory cgroups;
    with uncertain blocks, how many of their flagless pages can be free.
    ``compact``: one line per zone, the kinds by blocks and the top cgroup
    (for a short terminal: the map comes first)."""
    lines = []
    for z in pm.zones:
        if compact:
            if z.kind_blocks:
                kinds = sorted(z.kind_blocks.items(), key=lambda kv: (-kv[1], kv[0]))
                text = ", ".join(f"{k} {n}" for k, n in kinds[:3])
                top = f"; cgroup {z.cgroups[0][0]}" if z.cgroups else ""
                lines.append(one_line(f"node {z.node} {z.zone} pinned blocks by kind: "
                                      f"{text}{top}"))
            continue
        if z.unknown_pages and z.pcp_pages is not None:
            free = min(z.unknown_pages, z.pcp_pages)
            lines.append(one_line(f"node {z.node} {z.zone} uncertain: "
                                  f"{_n(z.unknown_pages, 'flagless page')}, of which at "
                                  f"most {free} free on per-CPU lists"))
        if not z.kind_blocks:
            continue
        kinds = sorted(z.kind_pages.items(), key=lambda kv: (-kv[1], kv[0]))
        text = _top([f"{k} {_n(z.kind_pages[k], 'page')} in {_n(z.kind_blocks[k], 'block')}"
                     for k, _v in kinds])
        lines.append(one_line(f"node {z.node} {z.zone} pinned by: {text}"))
        if z.cgroups:
            lines.append(one_line("  memory cgroups: " +
                                  _top([f"{p} {_n(n, 'page')}" for p, n in z.cgroups])))
    return lines


def header(pm: PhysMap, per_cell: int) -> str:
    import time as _time
    when = _time.strftime("%Y-%m-%d %H:%M:%S", _time.localtime(pm.time))
    size = per_cell * pm.block_pages * pm.page_size >> 20
    return one_line(f"1 cell = {per_cell} pageblock{'s' if per_cell != 1 else ''} "
                    f"({size} MiB)   {pm.host}  {pm.kernel}  {when}")


def _wrapped(lines: List[str], cols: int) -> List[str]:
    out = []
    for line in lines:
        indent = " " * (len(line) - len(line.lstrip()) + 2)
        out += textwrap.wrap(line, cols, subsequent_indent=indent, break_on_hyphens=False,
                             break_long_words=True) or [""]
    return out


MIN_MAP_ROWS = 10      # below this the details shrink to a line per zone


def render(pm: PhysMap, size: Tuple[int, int], color: bool) -> str:
    cols, rows = max(size[0], MIN_COLS), max(size[1], MIN_ROWS)
    counts = counts_table(pm)

    def fixed_rows(pins):
        # header, map, blank, legend, blank, table, blank, pinners, the prompt's line
        return 1 + 1 + 1 + 1 + counts.count("\n") + 1 + 1 + len(pins) + 1
    pins = _wrapped(damage(pm) + pinners(pm), cols)
    if rows - fixed_rows(pins) < max(MIN_MAP_ROWS, len(pm.zones)):
        pins = [line[:cols - 3] + "..." if len(line) > cols else line
                for line in damage(pm, True) + pinners(pm, True)]
    fixed = fixed_rows(pins)
    width = cols - label_width(cols)
    map_rows = max(rows - fixed, len(pm.zones))
    per_cell = fit(pm.zones, width, map_rows)
    out = [header(pm, per_cell)[:cols]] + map_lines(pm, width, per_cell, color,
                                                    pfns=cols >= PFN_COLS)
    out += ["", legend(color, any(z.polluted is not None for z in pm.zones)), "", counts]
    if pins:
        out += [""] + pins
    return "\n".join(out) + "\n"
