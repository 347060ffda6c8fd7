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
"""
from __future__ import annotations

import collections
import locale
import os
import socket
import sys
import time
from typing import Deque, Dict, List, Optional, Sequence, Tuple

from ..derive import Frame, ZoneFigures
from ..errors import MfdError, UsageError
from ..fragindex import format_index
from ..model import Sample
from ..term import StderrCapture
from .text import View

Segment = Tuple[str, str]          # (text, style)
Line = List[Segment]

HEAT_LEVELS = 10
KEEP = 600                         # samples kept for the sparklines
SPARK_UTF8 = "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"
SPARK_ASCII = "_.-~=+*#"
MIN_W, MIN_H = 40, 8
HELP = "q quit  i index  [ ] order  \u2191\u2193 scroll"
HELP_ASCII = "q quit  i index  [ ] order  up/down scroll"


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
    return "+" * width


def format_value(v: int, width: int) -> str:
    """An index (x1000) in ``width`` characters: 0.376, .376, .38; extfrag's -1 as a dot."""
    if v == -1000:
        return "\u00b7"
    if 0 <= v <= 1000:
        text = format_index(v)                  # "0.376", "1.000"
        if len(text) <= width:
            return text
        if v == 1000:
            return "1." + "0" * max(0, width - 2) if width >= 3 else "1"
        return ("." + text[2:])[:max(1, width)]
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
        self.view, self.host, self.kernel = view, host, kernel
        self.index = index                    # "unusable" or "extfrag"
        self.order = order                    # sparkline order; None: 9 or the highest
        self.utf8 = utf8
        self.scroll = 0
        self.frame: Optional[Frame] = None    # the newest sample
        # per zone (node, zone_idx): (unusable, extfrag) of each kept sample
        self.indices: Dict[Tuple[int, int], Deque[Tuple[List[int], List[int]]]] = {}
        self.status = ""                      # last message (stderr), shown in the footer
        self.page_size = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

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
                text, style = ("\u00b7" if self.utf8 else "."), "dim"
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
        ``width`` characters."""
        if width < MIN_W or height < MIN_H:
            return [[(f"too small: {width}x{height} (min {MIN_W}x{MIN_H})"[:width], "warn")]]
        if self.frame is None:
            return [[("mfd: waiting for the first sample...", "dim")]]
        sample = self.frame.sample
        snap = sample.snapshot
        zones = self.frame.zones(empty=self.view.detail)
        nr = snap.nr_orders
        order = self.order if self.order is not None else nr - 1
        label_w = max([10] + [len(f"{f.zone.node} {f.zone.zone}") + 1 for f in zones])
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
            body.extend(self._zone(f, per_zone, label_w, cell, panel, width, order))
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
        return [self._clip(line, width) for line in lines + body + footer]

    @staticmethod
    def _clip(line: Line, width: int) -> Line:
        out, used = [], 0
        for text, style in line:
            if used >= width:
                break
            text = text[:width - used]
            out.append((text, style))
            used += len(text)
        return out

    def _title(self, sample: Sample, width: int) -> Line:
        snap = sample.snapshot
        how = snap.source + (f"/{snap.pgdat_path}" if snap.pgdat_path else "")
        stamp = time.strftime("%H:%M:%S", time.localtime(snap.time))
        left = (f" mfd  {self.host}  {self.kernel}  {how}  {stamp}  "
                f"every {sample.interval:.1f}s  #{sample.seq}")
        help_text = HELP if self.utf8 else HELP_ASCII
        if len(left) + len(help_text) + 2 <= width:
            left += " " * (width - len(left) - len(help_text) - 1) + help_text + " "
        return [(left.ljust(width), "title")]

    def _header(self, nr: int, label_w: int, cell: int, panel: int, order: int) -> Line:
        line: Line = [("ORDER".ljust(label_w), "head")]
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

    def _zone(self, f: ZoneFigures, per_zone: int, label_w: int, cell: int, panel: int,
              width: int, order: int) -> List[Line]:
        z = f.zone
        key = (z.node, z.zone_idx)
        name = f"{z.node} {z.zone}"
        unusable = f.unusable
        values = self._values(f)
        w = cell - 1
        blocks = self._cells(z.nr_free, unusable, cell, lambda n: abbrev(n, w))
        if not z.populated:
            return [[(name.ljust(label_w)[:label_w], "bold"), ("empty", "dim")]]
        side: Line = [("  ", "")] + self.spark(key, panel) if panel else []
        if per_zone == 1:
            return [[(name.ljust(label_w)[:label_w], "bold")] + blocks + side]
        size = human_bytes(z.free_pages * self.page_size)
        at = f"{self.index}@{order} {format_value(values[order], 5)}"
        for title in (f"{name}  free {abbrev(z.free_pages, 9)} pages ({size})  managed "
                      f"{abbrev(z.managed, 9)}  {at}",
                      f"{name}  free {abbrev(z.free_pages, 9)} pages ({size})  {at}",
                      f"{name}  free {size}  {at}", f"{name}  {at}"):
            if len(title) <= width:
                break
        head: Line = [(title[:width], "bold")]
        if not panel:                          # the sparkline goes on the title line
            room = width - len(title) - 2
            if room >= 8:
                head += [("  ", "")] + self.spark(key, room)
        out = [head, [(" blocks".ljust(label_w), "dim")] + blocks + side]
        if per_zone >= 3:
            idx_colours = unusable if self.index == "unusable" else values
            out.append([(" " + self.index.ljust(label_w - 1), "dim")]
                       + self._cells(values, [max(0, c) for c in idx_colours], cell,
                                     lambda v: format_value(v, w)))
        if per_zone >= 4:
            pages = [n << o for o, n in enumerate(z.nr_free)]
            out.append([(" pages".ljust(label_w), "dim")]
                       + self._cells(pages, unusable, cell, lambda n: abbrev(n, w)))
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
            text = f"  {event_label(n, names)} {flat[n] / per:.3g}"
            if used + len(text) > width:
                break
            line.append((text, "warn" if n.startswith("extfrag") and flat[n] else ""))
            used += len(text)
        return line

    def _footer(self, width: int) -> Line:
        if self.status:
            return [(" " + self.status, "warn")]
        line: Line = [(" cell colour: unusable index ", "dim")]
        for level in range(HEAT_LEVELS):
            line.append((f"{level / HEAT_LEVELS:.1f}".rjust(4), f"heat{level}"))
        line.append(("-1.0", "heat9"))
        return line


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


class LiveView:
    """The ``-v`` sink: draws each sample full screen and polls the keyboard between them.

    While it runs, whatever mfd writes to stderr (fd 2) is kept off the
    screen: the newest line shows in the footer and everything is written out
    after the terminal is restored.
    """

    def __init__(self, view: View, index: str = "unusable"):
        """``index``: the one shown at first ("extfrag" for -e, else "unusable")."""
        import curses
        if not (sys.stdout.isatty() and sys.stdin.isatty()):
            raise UsageError("-v needs a terminal (stdin and stdout are not both a tty)")
        locale.setlocale(locale.LC_ALL, "")
        utf8 = "utf" in (locale.getpreferredencoding(False) or "").lower()
        self.board = Dashboard(view, socket.gethostname(), os.uname().release, index=index,
                               utf8=utf8)
        self.curses = curses
        self.scr = None
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
        attrs = {"": curses.A_NORMAL, "title": curses.A_REVERSE | curses.A_BOLD,
                 "head": curses.A_BOLD, "bold": curses.A_BOLD, "dim": curses.A_DIM,
                 "warn": curses.A_BOLD}
        if not curses.has_colors():
            for level in range(HEAT_LEVELS):
                hot = level >= HEAT_LEVELS // 2
                attrs[f"heat{level}"] = curses.A_REVERSE if hot else curses.A_NORMAL
                attrs[f"fgheat{level}"] = curses.A_BOLD if hot else curses.A_NORMAL
            return attrs
        curses.start_color()
        try:
            curses.use_default_colors()
            default = -1
        except curses.error:
            default = curses.COLOR_BLACK
        ramp = _heat_colours(curses.COLORS)
        for level, colour in enumerate(ramp):
            curses.init_pair(1 + level, curses.COLOR_BLACK, colour)
            curses.init_pair(1 + HEAT_LEVELS + level, colour, default)
            attrs[f"heat{level}"] = curses.color_pair(1 + level)
            attrs[f"fgheat{level}"] = curses.color_pair(1 + HEAT_LEVELS + level)
        curses.init_pair(2 * HEAT_LEVELS + 1, curses.COLOR_RED, default)
        attrs["warn"] = curses.color_pair(2 * HEAT_LEVELS + 1) | curses.A_BOLD
        return attrs

    # -- sink interface -------------------------------------------------------

    def emit(self, frame: Frame) -> None:
        self.board.add(frame)
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
        if ch in (ord("q"), ord("Q")):
            raise Quit()
        if ch == curses.KEY_RESIZE:
            curses.update_lines_cols()
            self.scr.clear()
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

    def close(self) -> None:
        """Restore the terminal, then stderr; print what was captured.  Idempotent."""
        curses = self.curses
        if self.scr is not None:
            scr, self.scr = self.scr, None
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
        if data:
            try:
                os.write(2, data)
            except OSError:
                pass        # the terminal went away (SIGHUP): nowhere to say it
