"""``mfd -v``: the full-screen live view (a heatmap of every zone, refreshed each interval).

Drawn with :mod:`curses` from the standard library: nothing to install on a
server where mfd runs as root next to BCC, it follows resizes (KEY_RESIZE),
works over ssh and in tmux, and ``endwin()`` restores the terminal.  A
richer toolkit (rich, textual) would be an extra dependency for a screen of
coloured cells.

Two layers:

* :class:`Dashboard` is pure: it keeps the last samples and lays them out for a
  given width and height as lines of ``(text, style)`` segments.  Tests
  render it to strings.
* :class:`LiveView` is the sink the sampling loop feeds (``emit``), waits on
  (``wait`` polls the keyboard until the next sample is due) and closes; it
  maps styles to curses attributes.

Per zone, the richest layout that fits the terminal is chosen: a title line
(free and managed pages, the chosen index at the chosen order with a
sparkline), then rows of per-order cells -- free blocks, the index, free
pages -- each cell's background coloured by the unusable index (green 0, red
1).  Narrower or shorter terminals get fewer rows per zone, narrower cells
with abbreviated numbers (12k, 3.4M), and finally one row per zone with
scrolling.  80x24 shows this machine's three zones in full.

Numbers that do not fit a cell are rounded to fewer digits, never cut; a
label is cut with a marker and always keeps a space before the first cell.
The markers (``++``, ``\u00b7``, ``\u2026``) are explained on a legend line when
there is a line to spare, and ``h``/``?`` opens a help box over the view.
"""
from __future__ import annotations

import collections
import locale
import os
import socket
import time
from typing import Deque, Dict, List, Optional, Sequence, Tuple

from ..derive import Frame, ZoneFigures
from ..errors import MfdError, UsageError
from ..fragindex import format_index
from ..model import Sample
from ..term import StderrCapture, one_line
from .text import View

Segment = Tuple[str, str]          # (text, style)
Line = List[Segment]

HEAT_LEVELS = 10
KEEP = 600                         # samples kept for the sparklines
SPARK_UTF8 = "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"
SPARK_ASCII = "_.-~=+*#"
MIN_W, MIN_H = 40, 8
HELP = "q quit  i index  [ ] order  \u2191\u2193 scroll  ? help"
HELP_ASCII = "q quit  i index  [ ] order  up/down scroll  ? help"
HELP_SHORT = "? help"
TOO_WIDE = "+"                     # abbrev()'s filler: a number that fits in no form
# extfrag's -1 (a free block of that order exists) and the mark of a cut label;
# the ASCII forms are for terminals whose locale is not UTF-8.
DOT, DOT_ASCII = "\u00b7", "."
CUT, CUT_ASCII = "\u2026", "~"


class Quit(KeyboardInterrupt):
    """``q`` pressed: ends mfd like Ctrl-C (exit 0, sinks closed, terminal restored)."""


def heat(value_x1000: int) -> str:
    """Style name of the heat colour for an unusable index (0 .. 1000)."""
    level = min(HEAT_LEVELS - 1, max(0, value_x1000) * HEAT_LEVELS // 1000)
    return f"heat{level}"


def abbrev(n: int, width: int) -> str:
    """``n`` in at most ``width`` characters: 1234 -> "1234" or "1.2k" or "1k"."""
    s = str(n)
    if len(s) <= width:
        return s
    for div, suffix in ((1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T"), (1e15, "P")):
        v = n / div
        for text in (f"{v:.1f}{suffix}", f"{v:.0f}{suffix}",
                     f"{v:.1f}".lstrip("0") + suffix):
            if len(text) <= width and text[0] != "0" and not text.startswith(".0"):
                return text
    return TOO_WIDE * width


def format_value(v: int, width: int, dot: str = DOT) -> str:
    """An index (x1000) in ``width`` characters, rounded (half up) to the digits that
    fit: 0.376, .376, .38, .4; 0 and 1 when only one character fits; 0 as "0";
    extfrag's -1 as ``dot``.  Cutting instead would show 0.158 as .15."""
    if v == -1000:
        return dot
    if 0 <= v <= 1000:
        text = format_index(v)                  # "0.376", "1.000"
        if len(text) <= width:
            return text
        if v == 0:
            return "0"
        digits = max(0, min(3, width - 1))      # after the point: ".38" is 2 digits
        step = 10 ** (3 - digits)
        q = (v + step // 2) // step             # integers: no float rounding surprises
        if q >= 10 ** digits:                   # rounds up to 1 (0.996 in 3 columns)
            return "1." + "0" * (width - 2) if width >= 3 else "1"
        return "." + str(q).zfill(digits) if digits else "0"
    return format_index(v)[:width]


def human_bytes(n: int) -> str:
    for unit in ("B", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" or n >= 10 else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n}B"


def event_label(name: str, names: Sequence[str]) -> str:
    """Short name for the event line: the last part, unless two events share it."""
    last = name.rsplit(".", 1)[-1]
    if name == "extfrag.events":
        return "extfrag"
    if name == "compaction.begin":
        return "compact"
    if sum(1 for n in names if n.rsplit(".", 1)[-1] == last) > 1:
        return name
    return last


class Dashboard:
    """What the live view shows, as text: no curses here."""

    def __init__(self, view: View = View(), host: str = "", kernel: str = "",
                 index: str = "unusable", order: Optional[int] = None, utf8: bool = True):
        # host and kernel come from uname, zone names from the kernel, event
        # names and the status from other code: all are escaped before they are
        # laid out, so a control character can neither drive the terminal nor
        # shift the columns.
        self.view, self.host, self.kernel = view, one_line(host), one_line(kernel)
        self.index = index                    # "unusable" or "extfrag"
        self.order = order                    # sparkline order; None: 9 or the highest
        self.utf8 = utf8
        self.dot = DOT if utf8 else DOT_ASCII
        self.cut = CUT if utf8 else CUT_ASCII
        self.scroll = 0
        self.help = False                     # the help box is open
        self.final = False                    # the last sample of --count: no keys any more
        self.frame: Optional[Frame] = None    # the newest sample
        # per zone (node, zone_idx): (unusable, extfrag) of each kept sample
        self.indices: Dict[Tuple[int, int], Deque[Tuple[List[int], List[int]]]] = {}
        self.status = ""                      # last message (stderr), shown in the footer
        self.page_size = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._marks: set = set()              # markers used by the screen being laid out

    # -- input ----------------------------------------------------------------

    def add(self, frame: Frame) -> None:
        self.frame = frame
        for f in frame.zones():
            z = f.zone
            self.indices.setdefault((z.node, z.zone_idx), collections.deque(maxlen=KEEP)).append(
                (f.unusable, f.extfrag))
        if self.order is None:
            self.order = min(9, frame.snapshot.nr_orders - 1)

    def toggle_index(self) -> None:
        self.index = "extfrag" if self.index == "unusable" else "unusable"

    def move_order(self, step: int) -> None:
        if self.frame is not None and self.order is not None:
            top = self.frame.snapshot.nr_orders - 1
            self.order = max(0, min(top, self.order + step))

    # -- what goes in a cell ----------------------------------------------------

    def _num(self, n: int, width: int) -> str:
        text = abbrev(n, width)
        if text.startswith(TOO_WIDE):
            self._marks.add("wide")
        return text

    def _idx(self, v: int, width: int) -> str:
        if v == -1000:
            self._marks.add("dot")
        return format_value(v, width, self.dot)

    def _label(self, text: str, width: int, short: str = "") -> str:
        """``text`` (or ``short``) in ``width - 1`` columns plus a space, so that a
        label never runs into the first cell; cut with the marker if neither fits."""
        room = width - 1
        for t in (text, short):
            if t and len(t) <= room:
                return t.ljust(width)
        self._marks.add("cut")
        return (text[:max(0, room - 1)] + self.cut)[:max(0, room)].ljust(width)

    # -- layout ---------------------------------------------------------------

    def _values(self, f: ZoneFigures) -> Sequence[int]:
        return f.extfrag if self.index == "extfrag" else f.unusable

    def _history(self, key: Tuple[int, int], width: int) -> List[int]:
        kept = self.indices.get(key, ())
        which = 0 if self.index == "unusable" else 1
        return [v[which][self.order] for v in list(kept)[-width:]]

    def spark(self, key: Tuple[int, int], width: int) -> Line:
        """The sparkline of the chosen index at the chosen order, newest on the right."""
        if width <= 0:
            return []
        chars = SPARK_UTF8 if self.utf8 else SPARK_ASCII
        out: Line = []
        for v in self._history(key, width):
            if v < 0:                          # extfrag -1: a suitable block exists
                text, style = self.dot, "dim"
                self._marks.add("dot")
            else:
                text = chars[min(len(chars) - 1, v * len(chars) // 1001)]
                style = "fg" + heat(v if self.index == "unusable" else v)
            if out and out[-1][1] == style:
                out[-1] = (out[-1][0] + text, style)
            else:
                out.append((text, style))
        return out

    def lines(self, width: int, height: int) -> List[Line]:
        """The screen for ``width`` x ``height``: at most ``height`` lines, each at most
        ``width`` characters; the help box on top when it is open."""
        screen = self._screen(width, height)
        if self.help and not self.final:
            screen = self._with_help(screen, width, height)
        return screen

    def _screen(self, width: int, height: int) -> List[Line]:
        self._marks = set()
        if width < MIN_W or height < MIN_H:
            return [[(f"too small: {width}x{height} (min {MIN_W}x{MIN_H})"[:width], "warn")]]
        if self.frame is None:
            return [[("mfd: waiting for the first sample...  (? help)", "dim")]]
        sample = self.frame.sample
        snap = sample.snapshot
        zones = self.frame.zones(empty=self.view.detail)
        names = {id(f): one_line(f"{f.zone.node} {f.zone.zone}") for f in zones}
        nr = snap.nr_orders
        order = self.order if self.order is not None else nr - 1
        label_w = max([10] + [len(n) + 1 for n in names.values()])
        cell = max(3, min(9, (width - label_w) // nr))
        if label_w + cell * nr > width:        # very narrow: shorten the labels
            label_w = max(4, width - cell * nr)
        spare = width - label_w - cell * nr
        panel = spare - 2 if spare >= 14 else 0   # sparkline beside the cells

        lines: List[Line] = [self._title(sample, width), self._header(nr, label_w, cell, panel,
                                                                      order)]
        events = self._events(sample, width)
        footer = [events] if events else []
        footer.append(self._footer(width))
        room = height - len(lines) - len(footer)
        per_zone = 4
        while per_zone > 1 and per_zone * len(zones) > room:
            per_zone -= 1
        gap = per_zone > 1 and (per_zone + 1) * len(zones) <= room   # a blank line between
        body: List[Line] = []
        for f in zones:
            body.extend(self._zone(f, names[id(f)], per_zone, label_w, cell, panel, width,
                                   order))
            if gap:
                body.append([])
        if len(body) > room:                   # one line per zone and still too many
            self.scroll = max(0, min(self.scroll, len(body) - (room - 1)))
            hidden = len(body) - (room - 1)
            more = (f" {self.scroll} above, {hidden - self.scroll} below "
                    f"({'arrows' if not self.utf8 else chr(0x2191) + chr(0x2193)} scroll; "
                    "-i/-c choose zones)")
            body = body[self.scroll:self.scroll + room - 1] + [[(more[:width], "dim")]]
        else:
            self.scroll = 0
            legend = self._legend(width)
            if legend and len(body) < room:    # the data first, the legend if a line is left
                if body and body[-1] == []:    # in place of the blank after the last zone
                    body.pop()
                footer.insert(len(footer) - 1, legend)
        return [self._clip(line, width) for line in lines + body + footer]

    @staticmethod
    def _clip(line: Line, width: int) -> Line:
        """``line`` cut at ``width``; a cell (a heat style) goes whole or not at all, so
        the right edge never shows half a number."""
        out, used = [], 0
        for text, style in line:
            if used >= width:
                break
            if len(text) > width - used and style.startswith("heat"):
                break
            text = text[:width - used]
            out.append((text, style))
            used += len(text)
        return out

    def _title(self, sample: Sample, width: int) -> Line:
        snap = sample.snapshot
        how = one_line(snap.source + (f"/{snap.pgdat_path}" if snap.pgdat_path else ""))
        stamp = time.strftime("%H:%M:%S", time.localtime(snap.time))
        # #1 is the first sample: seq counts from 0 within the run.
        parts = {"host": self.host, "kernel": self.kernel, "how": how,
                 "every": f"every {sample.interval:.1f}s"}
        counter = f"#{sample.seq + 1}"
        if self.final:
            right = ["last sample (--count reached)", "last sample"]
        else:
            right = [HELP if self.utf8 else HELP_ASCII, HELP_SHORT]
        # On a narrow terminal the least useful parts go first, so the line is
        # never cut in the middle of a word.
        for drop in ((), ("kernel",), ("kernel", "host"), ("kernel", "host", "how"),
                     ("kernel", "host", "how", "every")):
            keep = [parts[k] for k in ("host", "kernel", "how") if k not in drop and parts[k]]
            keep.append(stamp)
            if "every" not in drop:
                keep.append(parts["every"])
            left = "  ".join([" mfd"] + keep + [counter])
            for r in right:
                if len(left) + len(r) + 2 <= width:
                    left += " " * (width - len(left) - len(r) - 1) + r + " "
                    return [(left, "title")]
        return [(left.ljust(width), "title")]

    def _header(self, nr: int, label_w: int, cell: int, panel: int, order: int) -> Line:
        line: Line = [(self._label("ORDER", label_w, "ORD"), "head")]
        line.append(("".join(str(o).rjust(cell - 1) + " " for o in range(nr)), "head"))
        if panel:
            what = f"  {self.index}_index at order {order}, newest right"
            line.append((what[:panel + 2], "head"))
        return line

    def _cells(self, values: Sequence, colours: Sequence[int], cell: int,
               text_of) -> Line:
        out: Line = []
        for v, c in zip(values, colours):
            out.append((text_of(v).rjust(cell - 1), heat(c)))
            out.append((" ", ""))
        return out

    def _zone(self, f: ZoneFigures, name: str, per_zone: int, label_w: int, cell: int,
              panel: int, width: int, order: int) -> List[Line]:
        z = f.zone
        key = (z.node, z.zone_idx)
        unusable = f.unusable
        values = self._values(f)
        w = cell - 1
        if not z.populated:
            return [[(self._label(name, label_w), "bold"), ("empty", "dim")]]
        blocks = self._cells(z.nr_free, unusable, cell, lambda n: self._num(n, w))
        side: Line = [("  ", "")] + self.spark(key, panel) if panel else []
        if per_zone == 1:
            return [[(self._label(name, label_w), "bold")] + blocks + side]
        size = human_bytes(z.free_pages * self.page_size)
        at = f"{self.index}@{order} {self._idx(values[order], 5)}"
        for title in (f"{name}  free {abbrev(z.free_pages, 9)} pages ({size})  managed "
                      f"{abbrev(z.managed, 9)}  {at}",
                      f"{name}  free {abbrev(z.free_pages, 9)} pages ({size})  {at}",
                      f"{name}  free {size}  {at}", f"{name}  {at}"):
            if len(title) <= width:
                break
        else:                                  # a very long zone name: cut it, marked
            title = self._label(name, width + 1).rstrip()
        head: Line = [(title, "bold")]
        if not panel:                          # the sparkline goes on the title line
            room = width - len(title) - 2
            if room >= 8:
                head += [("  ", "")] + self.spark(key, room)
        out = [head, [(" " + self._label("blocks", label_w - 1, "blk"), "dim")] + blocks + side]
        if per_zone >= 3:
            idx_colours = unusable if self.index == "unusable" else values
            short = "unus" if self.index == "unusable" else "extf"
            out.append([(" " + self._label(self.index, label_w - 1, short), "dim")]
                       + self._cells(values, [max(0, c) for c in idx_colours], cell,
                                     lambda v: self._idx(v, w)))
        if per_zone >= 4:
            pages = [n << o for o, n in enumerate(z.nr_free)]
            out.append([(" " + self._label("pages", label_w - 1, "pgs"), "dim")]
                       + self._cells(pages, unusable, cell, lambda n: self._num(n, w)))
        return out

    def _events(self, sample: Sample, width: int) -> Optional[Line]:
        if sample.events is None:
            return None
        flat = sample.events.counts()
        first = [n for n in sample.events.headline() if n in flat]
        names = first + sorted(n for n in flat if n not in first and flat[n])
        line: Line = [(" events/s", "head")]
        used = len(line[0][0])
        per = max(sample.interval, 1e-9)
        for n in names:
            text = f"  {one_line(event_label(n, names))} {flat[n] / per:.3g}"
            if used + len(text) > width:
                break
            line.append((text, "warn" if n.startswith("extfrag") and flat[n] else ""))
            used += len(text)
        return line

    def _legend(self, width: int) -> Optional[Line]:
        """One line saying what the markers on this screen mean (None: no markers, or
        no form fits)."""
        entries = [(long, short) for mark, long, short in (
            ("wide", "++ number too wide for its cell", "++ too wide"),
            ("dot", f"{self.dot} extfrag -1: a free block of that order exists",
             f"{self.dot} extfrag -1"),
            ("cut", f"{self.cut} name cut to fit", f"{self.cut} cut"),
        ) if mark in self._marks]
        if not entries:
            return None
        for texts in ([long for long, _ in entries], [short for _, short in entries]):
            text = " " + "   ".join(texts) + "   ? help"
            if len(text) <= width:
                return [(text, "dim")]
            text = " " + "  ".join(texts)
            if len(text) <= width:
                return [(text, "dim")]
        return None

    def _footer(self, width: int) -> Line:
        if self.status:
            return [(" " + one_line(self.status), "warn")]
        wide = 29 + 4 * (HEAT_LEVELS + 1)
        if width >= wide:
            line: Line = [(" cell colour: unusable index ", "dim")]
            for level in range(HEAT_LEVELS):
                line.append((f"{level / HEAT_LEVELS:.1f}".rjust(4), f"heat{level}"))
            line.append((" 1.0", f"heat{HEAT_LEVELS - 1}"))
            return line
        # narrow: the ramp as blank coloured cells between its two ends
        line = [(" colour=unusable 0", "dim")]
        line += [("  ", f"heat{level}") for level in range(HEAT_LEVELS)]
        return line + [(" 1", "dim")]

    # -- the help box -----------------------------------------------------------

    def help_text(self) -> List[str]:
        """What the help box says: the keys, the rows, the markers.  Lines of at most
        36 characters, so that the box fits the narrowest screen (40 columns)."""
        arrows = "\u2190 \u2192" if self.utf8 else "left right"
        updown = "\u2191 \u2193" if self.utf8 else "up down"
        order_keys = f" [ ] {arrows}"
        return [
            "keys",
            " q        quit (Ctrl-C too)",
            " i        unusable <-> extfrag index",
            (order_keys.ljust(10) if len(order_keys) < 10 else order_keys + " ")
            + "the sparkline's order",
            f" {updown} PgUp PgDn  scroll",
            " h ?      this help",
            "rows (one cell per order)",
            " blocks   free blocks of that order",
            " unusable unusable index, 0 to 1",
            " extfrag  extfrag index: why an",
            "          allocation fails, 0 low",
            "          memory to 1 fragmentation",
            " pages    free pages in those blocks",
            " colour   unusable, green 0 to red 1",
            "markers",
            " ++       number too wide for a cell",
            f" {self.dot}        extfrag -1: a free block",
            "          of that order exists",
            f" {self.cut}        name cut to fit",
            " 12k 3.4M thousands, millions",
        ]

    def _with_help(self, screen: List[Line], width: int, height: int) -> List[Line]:
        """``screen`` with the help box drawn over it, centred, under the title."""
        close = "any key closes this help"
        text = self.help_text()
        inner = min(width - 4, max(len(t) for t in text + [close]))
        rows = max(1, min(len(text), height - 3))   # the border and the closing line
        if rows < len(text):
            text = text[:rows - 1] + [f"... {len(text) - rows + 1} more lines: enlarge"]
        if inner < 1:
            return screen
        h, v, corners = ("\u2500", "\u2502", "\u250c\u2510\u2514\u2518") if self.utf8 \
            else ("-", "|", "++++")

        def fit(t: str) -> str:
            return (t if len(t) <= inner else t[:inner - 1] + self.cut).ljust(inner)
        box: List[Line] = [[(corners[0] + h * (inner + 2) + corners[1], "head")]]
        box += [[(v + " ", "head"), (fit(t), "head" if not t.startswith(" ") else ""),
                 (" " + v, "head")] for t in text]
        box.append([(v + " ", "head"), (fit(close), "dim"), (" " + v, "head")])
        box.append([(corners[2] + h * (inner + 2) + corners[3], "head")])
        box = box[:height]
        x = max(0, (width - inner - 4) // 2)
        y = max(0, min(1, height - len(box)))   # under the title when it fits
        out = list(screen) + [[] for _ in range(max(0, y + len(box) - len(screen)))]
        for i, row in enumerate(box):
            out[y + i] = _splice(out[y + i], x, row)
        return [self._clip(line, width) for line in out[:height]]


def _cut_line(line: Line, start: int, end: int) -> Line:
    """The part of ``line`` between columns ``start`` and ``end``."""
    out, pos = [], 0
    for text, style in line:
        a, b = max(start, pos), min(end, pos + len(text))
        if a < b:
            out.append((text[a - pos:b - pos], style))
        pos += len(text)
    return out


def _splice(line: Line, x: int, insert: Line) -> Line:
    """``line`` with ``insert`` written over it from column ``x``."""
    head = _cut_line(line, 0, x)
    pad = x - sum(len(t) for t, _ in head)
    end = x + sum(len(t) for t, _ in insert)
    return head + ([(" " * pad, "")] if pad else []) + insert + _cut_line(line, end, 1 << 30)


def render_text(lines: List[Line]) -> str:
    """The dashboard as plain text (tests, and for a quick look without curses)."""
    return "\n".join("".join(text for text, _ in line) for line in lines)


# -- curses ---------------------------------------------------------------------------


def _heat_colours(colours: int) -> List[int]:
    if colours >= 256:   # xterm 6x6x6 cube: green -> yellow -> red, light enough for black text
        cube = [(1, 5, 1), (2, 5, 1), (3, 5, 1), (4, 5, 1), (5, 5, 1), (5, 4, 1), (5, 3, 1),
                (5, 2, 1), (5, 1, 1), (5, 0, 0)]
        return [16 + 36 * r + 6 * g + b for r, g, b in cube]
    import curses
    return ([curses.COLOR_GREEN] * 3 + [curses.COLOR_YELLOW] * 3
            + [curses.COLOR_MAGENTA] * 2 + [curses.COLOR_RED] * 2)


Spec = Tuple[Optional[int], Optional[int], Tuple[str, ...]]


def style_specs(colours: int) -> Dict[str, Spec]:
    """Each style as (foreground, background, attributes), a colour None being the
    terminal's default; ``colours`` < 8: no colour, hot cells in reverse video.
    One table for both the curses screen and the frame printed after --count, so
    the two look the same."""
    import curses
    specs: Dict[str, Spec] = {
        "": (None, None, ()), "title": (None, None, ("reverse", "bold")),
        "head": (None, None, ("bold",)), "bold": (None, None, ("bold",)),
        "dim": (None, None, ("dim",)), "warn": (None, None, ("bold",))}
    if colours < 8:
        for level in range(HEAT_LEVELS):
            hot = level >= HEAT_LEVELS // 2
            specs[f"heat{level}"] = (None, None, ("reverse",) if hot else ())
            specs[f"fgheat{level}"] = (None, None, ("bold",) if hot else ())
        return specs
    for level, colour in enumerate(_heat_colours(colours)):
        specs[f"heat{level}"] = (curses.COLOR_BLACK, colour, ())
        specs[f"fgheat{level}"] = (colour, None, ())
    specs["warn"] = (curses.COLOR_RED, None, ("bold",))
    return specs


def check_terminal() -> None:
    """Refuse, before anything is drawn, what the live view cannot draw on.

    stdin and stdout must be terminals (keys are read from one, the screen
    drawn on the other), and the terminal must move the cursor (terminfo
    ``cup``): without it curses writes its frames one after another, which is
    what ``TERM=dumb`` showed.  File descriptors are asked, not ``sys.stdout``,
    which is None when fd 1 is closed.
    """
    if not os.isatty(1):
        raise UsageError("-v needs a terminal: stdout is not one (drop -v to print "
                         "tables into a file or a pipe)")
    if not os.isatty(0):
        raise UsageError("-v needs a terminal: stdin is not one (the view reads its keys "
                         "there; run it from a terminal, or drop -v)")
    import curses
    term = os.environ.get("TERM", "")
    what = f"TERM={term}" if term else "TERM is not set and"
    advice = "use a terminal such as xterm or tmux, or drop -v"
    try:
        curses.setupterm(None, 1)
    except curses.error:
        raise MfdError(f"-v needs a terminal with cursor addressing; this environment's "
                       f"{what} is not a terminal type known here: {advice}") from None
    if not curses.tigetstr("cup"):
        raise MfdError(f"-v needs a terminal with cursor addressing; this environment's "
                       f"{what} has none: {advice}")


class LiveView:
    """The ``-v`` sink: draws each sample full screen and polls the keyboard between them.

    While it runs, whatever mfd writes to stderr (fd 2) is kept off the
    screen: the newest line shows in the footer and everything is written out
    after the terminal is restored.

    With ``count`` (``--count N``), the last frame is printed again on the
    normal screen once curses has given the terminal back, as ``top -n N``
    leaves its last frame: the run ends on its own and the frame stays
    readable, in the scrollback too, without waiting for a key.  Quitting
    with ``q`` or Ctrl-C restores the screen as it was, like ``htop``.
    """

    def __init__(self, view: View, index: str = "unusable", count: Optional[int] = None):
        """``index``: the one shown at first ("extfrag" for -e, else "unusable");
        ``count``: how many samples the run takes (None: until stopped)."""
        import curses
        check_terminal()
        locale.setlocale(locale.LC_ALL, "")
        utf8 = "utf" in (locale.getpreferredencoding(False) or "").lower()
        self.board = Dashboard(view, socket.gethostname(), os.uname().release, index=index,
                               utf8=utf8)
        self.curses = curses
        self.count = count
        self.scr = None
        self._size = (80, 24)                 # the screen's, for the frame printed at the end
        self._capture = StderrCapture()
        try:
            self._capture.start()
            self.scr = curses.initscr()
            curses.noecho()
            curses.cbreak()
            self.scr.keypad(True)
            try:
                curses.curs_set(0)
            except curses.error:
                pass
            self.attrs = self._init_colours()
            self.draw()        # "waiting for the first sample" while BPF programs load
        except curses.error as e:
            self.close()
            raise MfdError(f"cannot start the live view: {e} (check TERM={os.environ.get('TERM')})"
                           ) from None
        except BaseException:
            self.close()
            raise

    def _check_capture(self) -> bool:
        """New stderr text since last time: its last line becomes the footer status."""
        text = [ln for ln in self._capture.new_text().splitlines() if ln.strip()]
        if text:
            self.board.status = text[-1].strip()
        return bool(text)

    def _init_colours(self) -> Dict[str, int]:
        curses = self.curses
        colours, default = 0, -1
        if curses.has_colors():
            curses.start_color()
            try:
                curses.use_default_colors()
            except curses.error:
                default = curses.COLOR_BLACK
            colours = curses.COLORS
        flags = {"bold": curses.A_BOLD, "reverse": curses.A_REVERSE, "dim": curses.A_DIM}
        pairs: Dict[Tuple[int, int], int] = {}
        attrs: Dict[str, int] = {}
        for name, (fg, bg, names) in style_specs(colours).items():
            attr = curses.A_NORMAL
            for flag in names:
                attr |= flags[flag]
            if fg is not None or bg is not None:
                key = (default if fg is None else fg, default if bg is None else bg)
                if key not in pairs:
                    pairs[key] = len(pairs) + 1
                    curses.init_pair(pairs[key], *key)
                attr |= curses.color_pair(pairs[key])
            attrs[name] = attr
        return attrs

    # -- sink interface -------------------------------------------------------

    def emit(self, frame: Frame) -> None:
        self.board.add(frame)
        # The loop stops after this one: say so, and keep the frame (close()).
        self.board.final = self.count is not None and frame.sample.seq + 1 >= self.count
        self._check_capture()
        self.draw()

    def wait(self, seconds: float) -> None:
        """Until ``seconds`` have passed: keys, resizes, and stderr lines redraw at once."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            self.scr.timeout(max(0, min(250, int(left * 1000))))
            ch = self.scr.getch()
            if self._key(ch) or self._check_capture():
                self.draw()
            if time.monotonic() >= deadline:
                return

    def _key(self, ch: int) -> bool:
        curses, board = self.curses, self.board
        if ch == -1:
            return False
        if ch == curses.KEY_RESIZE:
            curses.update_lines_cols()
            self.scr.clear()
            return True
        if board.help:                         # any key closes the help, q included
            board.help = False
            return True
        if ch in (ord("q"), ord("Q")):
            raise Quit()
        if ch in (ord("h"), ord("?"), curses.KEY_F1):
            board.help = True
        elif ch == ord("i"):
            board.toggle_index()
        elif ch in (ord("["), curses.KEY_LEFT):
            board.move_order(-1)
        elif ch in (ord("]"), curses.KEY_RIGHT):
            board.move_order(1)
        elif ch == curses.KEY_UP:
            board.scroll = max(0, board.scroll - 1)
        elif ch == curses.KEY_DOWN:
            board.scroll += 1
        elif ch == curses.KEY_PPAGE:
            board.scroll = max(0, board.scroll - 10)
        elif ch == curses.KEY_NPAGE:
            board.scroll += 10
        else:
            return False
        return True

    def draw(self) -> None:
        scr, curses = self.scr, self.curses
        height, width = scr.getmaxyx()
        self._size = (width, height)
        scr.erase()
        for y, line in enumerate(self.board.lines(width, height)[:height]):
            x = 0
            for text, style in line:
                if not text or x >= width:
                    continue
                try:
                    scr.addstr(y, x, text[:width - x], self.attrs.get(style, 0))
                except curses.error:
                    pass  # writing the bottom-right cell moves the cursor off screen
                x += len(text)
        scr.noutrefresh()
        curses.doupdate()

    def _last_frame(self) -> bytes:
        """The final frame for the normal screen, in the view's colours (terminfo), one
        line shorter than the screen so the shell's prompt leaves it all in sight."""
        curses = self.curses
        width, height = self._size
        lines = self.board.lines(width, max(MIN_H, height - 1))

        def cap(name: str, *args: int) -> bytes:
            s = curses.tigetstr(name)
            if not s:
                return b""
            try:
                return curses.tparm(s, *args) if args else s
            except curses.error:
                return b""
        colours = curses.tigetnum("colors") if cap("setab") else 0
        reset = cap("sgr0")
        flags = {"bold": "bold", "reverse": "rev", "dim": "dim"}
        sgr = {}
        for name, (fg, bg, names) in style_specs(colours).items():
            seq = b"".join(cap(flags[f]) for f in names)
            if fg is not None:
                seq += cap("setaf", fg)
            if bg is not None:
                seq += cap("setab", bg)
            sgr[name] = seq
        enc = locale.getpreferredencoding(False) or "utf-8"
        out = []
        for line in lines:
            row = b""
            for text, style in line:
                data = text.encode(enc, "replace")
                row += sgr[style] + data + reset if sgr.get(style) and reset else data
            out.append(row.rstrip(b" ") + b"\n")
        return b"".join(out)

    def close(self) -> None:
        """Restore the terminal, then stderr; print what was captured, then the last
        frame of a --count run.  Idempotent."""
        curses = self.curses
        keep = None
        if self.scr is not None:
            scr, self.scr = self.scr, None
            if self.board.final and self.board.frame is not None:
                try:
                    keep = self._last_frame()
                except curses.error:
                    keep = None        # no terminfo any more: nothing worth printing
            try:
                scr.keypad(False)
                curses.nocbreak()
                curses.echo()
            except curses.error:
                pass
            try:
                curses.endwin()
            except curses.error:
                pass
        data = self._capture.stop()
        for fd, text in ((2, data), (1, keep)):
            try:
                while text:     # a terminal may take a long write in parts
                    text = text[os.write(fd, text):]
            except OSError:
                pass            # the terminal went away (SIGHUP): nowhere to say it
