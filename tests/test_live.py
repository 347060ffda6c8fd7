"""The -v live view: the layout rendered to text at several sizes, and the real thing in a
real terminal (tmux), resized, quit with q and Ctrl-C, ended by an error."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid

import pytest

import synth
from conftest import ROOT, mfd_argv, run_mfd
from mfd.sinks.live import Dashboard, abbrev, format_value, render_text
from mfd.sources.procfs import ProcfsSource
from mfd.derive import Frame
from mfd.model import Sample
from mfd.sinks.text import View

MACHINE = dict(zones=synth.THIS_MACHINE, populated=synth.POPULATED)
BIG = dict(nodes=8, zones=("DMA", "DMA32", "Normal", "Movable"), populated=4)


def _board(n=20, layout=MACHINE, counts=None, **kw):
    board = Dashboard(host="host", kernel="6.18", **kw)
    walk = synth.random_walk()
    for i in range(n):
        snap = synth.snapshot(1e9 + i, counts or walk, **layout)
        board.add(Frame(Sample(snap, 1.0, i, events=synth.event_counts(i) if kw.get("utf8", True)
                         else None)))
    return board


def _fragmented_normal(node, zone):
    return synth.FRAGMENTED if zone == 2 else [50 * (11 - o) for o in range(11)]


@pytest.mark.parametrize("width,height", [(80, 24), (200, 60), (100, 30), (120, 20)])
def test_fits_the_terminal(width, height):
    for layout in (MACHINE, BIG):
        lines = _board(layout=layout).lines(width, height)
        assert len(lines) <= height
        assert all(sum(len(t) for t, _ in line) <= width for line in lines)
        text = render_text(lines)
        assert text.splitlines()[0].startswith(" mfd  host  6.18")
        assert text.splitlines()[1].split()[:12] == ["ORDER"] + [str(o) for o in range(11)]


def test_80x24_shows_every_zone_of_this_machine_in_full():
    text = render_text(_board().lines(80, 24))
    for zone in ("DMA", "DMA32", "Normal"):
        assert f"0 {zone}  free " in text
    assert "Movable" not in text and "Device" not in text       # empty zones left out
    labels = [line.split()[0] for line in text.splitlines() if line.startswith(" ")]
    assert labels.count("blocks") == labels.count("unusable") == labels.count("pages") == 3
    assert "events/s  extfrag 2  change_ownership 1" in text
    assert "\u2581" in text or any(c in text for c in "\u2582\u2583\u2584\u2585\u2586\u2587")


def test_cells_are_coloured_by_unusable_index():
    board = _board(counts=_fragmented_normal)
    lines = board.lines(80, 24)
    blocks = [line for line in lines if line and line[0][0].strip() == "blocks"]
    normal = blocks[2]
    cells = [(text.strip(), style) for text, style in normal[1:] if style]
    assert cells[0] == ("4000", "heat0")                        # order 0: all usable
    assert all(style == "heat9" for _, style in cells[1:])      # above: all unusable
    assert [style for _, style in [c for c in blocks[1][1:] if c[1]]][-1] == "heat7"


def test_sparkline_follows_the_index_and_order():
    n = 12
    board = Dashboard(host="h", kernel="k", order=5)
    for i in range(n):       # Normal flips from fragmented to whole halfway
        board.add(Frame(Sample(synth.snapshot(i, lambda node, zone, i=i: synth.halves(n)(i, 0, node,
                                                                                      zone)),
                         1.0, i)))
    spark = "".join(t for t, _ in board.spark((0, 2), 40))
    assert spark == "\u2588" * 6 + "\u2581" * 6
    board.toggle_index()                                        # extfrag: -1 once a block exists
    spark = "".join(t for t, _ in board.spark((0, 2), 40))
    assert spark[:6] == "\u2588" * 6 and spark[6:] == "\u00b7" * 6
    board.move_order(+100)
    assert board.order == 10


def test_big_machine_degrades_to_one_line_per_zone_and_scrolls():
    board = _board(layout=BIG)
    text = render_text(board.lines(80, 24))
    assert "0 DMA  free" not in text                            # no title lines: no room
    assert text.count("\n0 ") == 4 and "below" in text
    board.scroll = 5
    text = render_text(board.lines(80, 24))
    assert "5 above" in text and "\n1 Movable" in text
    wide = render_text(_board(layout=BIG).lines(200, 60))
    assert "unusable_index at order 9, newest right" in wide   # the sparkline panel
    assert all(f"\n{n} Movable" in wide for n in range(8))


def test_too_small_says_so():
    assert "too small" in render_text(_board().lines(30, 6))


@pytest.mark.parametrize("n,width,text", [(1234, 5, "1234"), (123456, 5, "123k"),
                                          (1234567, 5, "1235k"), (1234567, 4, "1.2M"), (1234567, 3, "1M"),
                                          (123456, 3, ".1M"), (99, 2, "99"), (0, 3, "0")])
def test_abbrev(n, width, text):
    assert abbrev(n, width) == text and len(text) <= width


def test_format_value():
    assert [format_value(v, 5) for v in (376, 1000, -1000, 0)] == \
        ["0.376", "1.000", "\u00b7", "0.000"]
    assert [format_value(v, 3) for v in (376, 1000)] == [".38", "1.0"]


def test_needs_a_terminal_and_no_json():
    src = [] if ROOT else ["--source", "procfs"]
    r = run_mfd("-v", "--count", "1", *src)
    assert r.returncode == 2 and "-v needs a terminal" in r.stderr
    r = run_mfd("-v", "--json", "--count", "1", *src)
    assert r.returncode == 2 and "-v and --json" in r.stderr


# -- a real terminal: tmux ----------------------------------------------------------------

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="needs tmux (scripts/setup.sh --test installs it)")


class Tmux:
    """One tmux server of our own (its own socket) running one command in a pane."""

    def __init__(self, command, width, height):
        self.sock = f"mfd-test-{uuid.uuid4().hex[:8]}"
        env = "env LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=tmux-256color"
        script = (f"{env} {command}; echo EXIT=$?; stty -a; sleep 60")
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(width),
                  "-y", str(height), "bash --norc -c " + shlex.quote(script))

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True,
                              text=True, timeout=20, check=True).stdout

    def screen(self):
        return self.tmux("capture-pane", "-p", "-t", "t")

    def history(self):
        return self.tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", "t")

    def wait_for(self, predicate, what, timeout=60, scrollback=False):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.history() if scrollback else self.screen()
            if predicate(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; screen:\n{self.screen()}")

    def close(self):
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True,
                       timeout=20)


# mfd reading a fixture tree instead of /proc: the same CLI and the same curses,
# with numbers known in advance (the procfs source's root is its one default).
PROC_LAUNCHER = ("import sys, mfd.sources.procfs as p; "
                 "p.ProcfsSource.__init__.__defaults__ = (sys.argv.pop(1),); "
                 "from mfd.cli import main; sys.exit(main())")
ONE_NODE = os.path.join(os.path.dirname(__file__), "fixtures", "proc", "one_node")


@pytest.fixture
def term():
    started = []

    def start(args, width=80, height=24, env="", redirect="", proc=None):
        """``env``: shell words before the command (``TERM=dumb``); ``redirect``: shell
        text after it (``>/dev/null``); ``proc``: a fixture tree read as /proc."""
        argv = ([sys.executable, "-c", PROC_LAUNCHER, proc, "--source", "procfs", *args]
                if proc else mfd_argv(*args))
        command = " ".join(shlex.quote(a) for a in argv)
        if env:
            command = f"env {env} {command}"
        t = Tmux(f"{command} {redirect}".rstrip(), width, height)
        started.append(t)
        return t
    yield start
    for t in started:
        t.close()


def _buddy_zones():
    with open("/proc/buddyinfo") as f:
        return [line.split()[3] for line in f]


def _restored(t, code, kept=False):
    """mfd ended with ``code`` and the terminal is back in its normal modes; the
    view's frame is gone from the normal screen, or with ``kept`` printed there."""
    text = t.wait_for(lambda s: "EXIT=" in s and "min = " in s, "mfd to end", scrollback=True)
    assert f"EXIT={code}" in text
    assert ("ORDER" in text.split("EXIT=")[0]) == kept   # it left the alternate screen
    modes = text.split("EXIT=")[1]
    assert " icanon" in modes and " echo " in modes and "-icanon" not in modes
    return text


def _source():
    return [] if ROOT else ["--source", "procfs"]


@needs_tmux
def test_tmux_80x24_resize_to_200x60_and_quit(term):
    t = term(["-v", "-d", "0.3", *_source()], 80, 24)
    screen = t.wait_for(lambda s: "ORDER" in s and "#2" in s, "two samples drawn")
    lines = screen.splitlines()
    assert lines[0].startswith(" mfd  ") and lines[1].split()[0] == "ORDER"
    assert all(len(line) <= 80 for line in lines)
    for zone in _buddy_zones():
        assert f"0 {zone}  free " in screen
    styled = t.tmux("capture-pane", "-e", "-p", "-t", "t")
    assert "\x1b[48;5;" in styled or "\x1b[4" in styled              # coloured cells
    t.tmux("resize-window", "-t", "t", "-x", "200", "-y", "60")
    screen = t.wait_for(lambda s: "newest right" in s, "the wide layout")
    assert max(len(line) for line in screen.splitlines()) > 120
    assert "q quit" in screen.splitlines()[0]
    t.tmux("send-keys", "-t", "t", "i")
    t.wait_for(lambda s: "extfrag_index at order 9" in s, "the index toggle")
    t.tmux("send-keys", "-t", "t", "q")
    _restored(t, 0)
    # what mfd said on stderr while the view was up comes out afterwards
    if ROOT:
        assert "mfd:" in t.history().split("EXIT=")[0]


@needs_tmux
def test_tmux_ctrl_c_restores_the_terminal(term):
    t = term(["-v", "-d", "0.3", *_source()], 100, 30)
    t.wait_for(lambda s: "ORDER" in s, "the view")
    t.tmux("send-keys", "-t", "t", "C-c")
    _restored(t, 0)


@needs_tmux
def test_tmux_error_after_start_restores_the_terminal(term):
    """An unknown zone is found at the first sample, once the screen is set up."""
    t = term(["-v", "-c", "Bogus", "--source", "procfs"], 80, 24)
    _restored(t, 2)
    assert "no zone 'Bogus'" in t.history()


@needs_tmux
def test_tmux_record_while_viewing(term, tmp_path):
    db = str(tmp_path / "v.db")
    t = term(["-v", "-d", "0.2", "--record", db, "--source", "procfs"], 80, 24)
    t.wait_for(lambda s: "#4" in s, "four samples")
    t.tmux("send-keys", "-t", "t", "q")
    _restored(t, 0)
    r = run_mfd("report", db)
    assert r.returncode == 0 and "1 run:" in r.stdout
    assert int(r.stdout.split(" samples")[0].rsplit(None, 1)[-1]) >= 4


# -- issue 9, section 7: narrow screens, markers, help, the counter, escaping ---------------

CELL = re.compile(r"^(\d+(\.\d)?[kMGTP]?|\.\d+[kMGTP]?|\d\.\d+|\.\d+|\++|\u00b7|\.)$")


@pytest.mark.parametrize("v,width,text", [(158, 3, ".16"), (158, 2, ".2"), (154, 3, ".15"),
                                          (155, 3, ".16"), (996, 3, "1.0"), (996, 4, ".996"),
                                          (40, 2, ".0"), (960, 2, "1"), (0, 3, "0"),
                                          (1000, 2, "1"), (1000, 1, "1"), (400, 1, "0")])
def test_narrow_index_cells_are_rounded_not_cut(v, width, text):
    assert format_value(v, width) == text and len(text) <= width


def _first_cell_column(line):
    """Where the first cell of a row starts (None: the line has no cells)."""
    pos = 0
    for text, style in line:
        if style.startswith("heat"):
            return pos
        pos += len(text)
    return None


@pytest.mark.parametrize("width,height", [(40, 8), (40, 12), (56, 20), (80, 24)])
@pytest.mark.parametrize("layout", [MACHINE, BIG], ids=["machine", "big"])
def test_no_label_runs_into_a_value(width, height, layout):
    lines = _board(layout=layout).lines(width, height)
    rows = 0
    for line in lines:
        at = _first_cell_column(line)
        if at is None or "colour" in line[0][0]:    # no cells, or the colour key
            continue
        rows += 1
        text = "".join(t for t, _ in line)
        label, first = text[:at], [t for t, s in line if s.startswith("heat")][0]
        assert label.strip() and (label.endswith(" ") or first.startswith(" ")), text
        # whole cells only, and each one a number, a marker, never part of one
        cells = text[at:].split()
        assert all(CELL.match(c) for c in cells), text
    assert rows


def test_the_legend_explains_the_markers_on_screen():
    narrow = render_text(_board().lines(40, 12))
    assert " ++ " in narrow and re.search(r"\+\+ (number )?too wide", narrow)
    assert "\u2026" not in narrow                  # no name cut here: not explained either
    tiny = render_text(_board().lines(40, 8))
    assert "0 Nor\u2026 " in tiny and "\u2026 cut" in tiny
    extfrag = render_text(_board(index="extfrag").lines(80, 24))
    assert "\u00b7 extfrag -1: a free block of that order exists" in extfrag
    assert "++" not in extfrag                     # nothing too wide at 80 columns
    ascii_ = _board(index="extfrag", utf8=False)   # a locale without UTF-8: ASCII markers
    assert "~ cut" in render_text(ascii_.lines(40, 8))
    text = render_text(ascii_.lines(60, 24))
    assert "\u00b7" not in text and " extfrag    .   . " in text and ". extfrag -1" in text


def test_counter_starts_at_one():
    assert " #1 " in render_text(_board(n=1).lines(80, 24)).splitlines()[0] + " "
    assert " #20 " in render_text(_board(n=20).lines(80, 24)).splitlines()[0] + " "


@pytest.mark.parametrize("width,height", [(40, 12), (80, 24), (200, 60)])
def test_help_box_lists_keys_and_markers(width, height):
    board = _board()
    board.help = True
    lines = board.lines(width, height)
    assert len(lines) <= height and all(sum(len(t) for t, _ in ln) <= width for ln in lines)
    text = render_text(lines)
    assert "any key closes this help" in text and "quit (Ctrl-C too)" in text
    if height >= 24:
        for what in ("++       number too wide", "\u00b7        extfrag -1", "blocks   free blocks",
                     "h ?      this help"):
            assert what in text
    board.help = False
    assert "any key closes" not in render_text(board.lines(width, height))


def test_strings_from_the_kernel_are_escaped():
    board = Dashboard(host="h\x1b]0;pwn\x07", kernel="6.18\n")
    zones = ("DMA", "No\x1b[2Jr\u202emal", "Movable")
    board.add(Frame(Sample(synth.snapshot(1.0, synth.random_walk(), zones=zones, populated=2),
                           1.0, 0)))
    board.status = "clang: \x1b[31merror\x1b[0m"
    for width, height in ((80, 24), (40, 8)):
        text = render_text(board.lines(width, height))
        assert not any(c in text for c in "\x1b\x07\u202e"), text
        assert "\n" not in "".join(t for line in board.lines(width, height) for t, _ in line)
    text = render_text(board.lines(80, 24))
    assert "0 No\\x1b[2Jr\\u202emal" in text and "h\\x1b]0;pwn\\x07" in text
    assert "\\x1b[31merror" in text


@needs_tmux
@pytest.mark.parametrize("term_name,why", [("dumb", "TERM=dumb has none"),
                                           ("mfd-no-such-term", "not a terminal type known")])
def test_tmux_terminal_without_cursor_addressing_is_refused(term, term_name, why):
    t = term(["-v", "--source", "procfs"], 80, 24, env=f"TERM={term_name}")
    text = t.wait_for(lambda s: "EXIT=" in s, "mfd to end", scrollback=True)
    said = text.split("EXIT=")[0]
    assert "EXIT=1" in text
    assert "mfd: -v needs a terminal with cursor addressing" in said and why in said
    assert "use a terminal such as xterm or tmux, or drop -v" in said
    assert "waiting for the first sample" not in said and "ORDER" not in said


@needs_tmux
def test_tmux_stdout_not_a_terminal_is_refused(term):
    """stdin is the tmux terminal, stdout is not (a closed stdout is the CLI's check)."""
    t = term(["-v", "--source", "procfs"], 80, 24, redirect=">/dev/null")
    text = t.wait_for(lambda s: "EXIT=" in s, "mfd to end", scrollback=True)
    assert "EXIT=2" in text
    assert "mfd: -v needs a terminal: stdout is not one (drop -v" in text.split("EXIT=")[0]


def _fixture_indices(root=ONE_NODE):
    snap = ProcfsSource(root).snapshot()
    return {f.zone.zone: f for f in Frame(Sample(snap, 1.0, 0)).zones()}


def _cell_rows(screen):
    """(label, cells) of every row of cells on ``screen``, and the column width, read off
    the ORDER header."""
    lines = screen.splitlines()
    header = next(ln for ln in lines if ln.startswith("ORD"))
    cols = [m.end() for m in re.finditer(r"\d+", header)]   # each column's right edge
    cell = cols[1] - cols[0]
    start = cols[0] - (cell - 1)                            # where the first cell begins
    rows = []
    for ln in lines[lines.index(header) + 1:]:
        cells = ln[start:].split()
        if len(cells) == len(cols) and all(CELL.match(c) for c in cells):
            rows.append((ln[:start], cells))
    return rows, cell


def _close_to(token, value_x1000):
    """``token`` (".16", "0.158", "0", "1.0") is ``value`` rounded, not cut: within half
    a unit of its last digit."""
    digits = len(token.split(".")[1]) if "." in token else 0
    return abs(float(token) - value_x1000 / 1000) <= 0.5 * 10 ** -digits + 1e-9


@needs_tmux
@pytest.mark.parametrize("width,height,args", [(80, 24, ["-e"]), (40, 12, ["-c", "Normal"]),
                                               (40, 12, []), (40, 8, [])],
                         ids=["80x24-extfrag", "40x12-Normal", "40x12", "40x8"])
def test_tmux_small_sizes_round_values_and_explain_markers(term, width, height, args):
    t = term(["-v", "-d", "0.3", *args], width, height, proc=ONE_NODE)
    screen = t.wait_for(lambda s: "ORD" in s and "#2" in s, "two samples drawn")
    lines = screen.splitlines()
    assert len(lines) <= height and all(len(ln) <= width for ln in lines)
    rows, cell = _cell_rows(screen)
    assert rows, screen
    for label, cells in rows:                      # a space always parts label and value
        assert label.strip() and label.endswith(" "), screen
    zones = _fixture_indices()
    normal = zones["Normal"]
    index_rows = [cells for label, cells in rows if label.strip() in ("unusable", "unus",
                                                                      "extfrag", "extf")]
    if "-c" in args:                               # Normal alone: the index row shows
        assert index_rows == [index_rows[0]] and normal.unusable[9] == 158
        for token, v in zip(index_rows[0], normal.unusable):
            assert _close_to(token, v), (token, v, screen)
        assert index_rows[0][9] == ".2"            # 0.158 in two columns; cut it was ".1"
    markers = " ".join(c for _, cells in rows for c in cells)
    if "++" in markers:
        assert re.search(r"\+\+ (number )?too wide", screen), screen
    if "\u00b7" in markers:
        assert "\u00b7 extfrag -1" in screen, screen
    if "-e" in args:
        assert "\u00b7" in markers                 # every order has a free block here
    t.tmux("send-keys", "-t", "t", "q")
    _restored(t, 0)


@needs_tmux
def test_tmux_rounds_to_what_the_cell_holds(term):
    """56 columns, one zone: three-column index cells, the issue's 0.158 as .16."""
    t = term(["-v", "-d", "0.3", "-c", "Normal"], 56, 20, proc=ONE_NODE)
    screen = t.wait_for(lambda s: "ORDER" in s and "#2" in s, "two samples drawn")
    rows, cell = _cell_rows(screen)
    index = [cells for label, cells in rows if label.strip() == "unusable"]
    assert cell == 4 and index and index[0][9] == ".16", screen
    for token, v in zip(index[0], _fixture_indices()["Normal"].unusable):
        assert _close_to(token, v), (token, v, screen)
    t.tmux("send-keys", "-t", "t", "q")
    _restored(t, 0)


@needs_tmux
def test_tmux_count_1_leaves_its_frame_readable(term):
    t = term(["-v", "--count", "1"], 80, 24, proc=ONE_NODE)
    text = _restored(t, 0, kept=True)
    frame = text.split("EXIT=")[0]
    title = frame.splitlines()[0]
    assert re.search(r" #1\b", title) and "last sample" in title, frame
    for zone in ("DMA", "DMA32", "Normal"):
        assert f"0 {zone}  free " in frame
    assert " unusable 0.000 0.000 0.000 0.000 0.000 0.001 0.028 0.040 0.109 0.158 0.191" \
        in frame                                   # the fixture's Normal, in full
    styled = t.tmux("capture-pane", "-e", "-p", "-J", "-S", "-200", "-t", "t")
    assert "\x1b[48;5;" in styled or "\x1b[4" in styled       # still coloured


@needs_tmux
def test_tmux_help_key(term):
    t = term(["-v", "-d", "0.3"], 80, 24, proc=ONE_NODE)
    t.wait_for(lambda s: "ORDER" in s and "? help" in s, "the view, saying ? opens help")
    t.tmux("send-keys", "-t", "t", "?")
    screen = t.wait_for(lambda s: "any key closes this help" in s, "the help box")
    for what in ("quit (Ctrl-C too)", "unusable <-> extfrag index", "number too wide",
                 "extfrag -1: a free block", "free blocks of that order"):
        assert what in screen
    t.tmux("send-keys", "-t", "t", "q")           # any key closes it; q does not quit here
    t.wait_for(lambda s: "any key closes" not in s and "ORDER" in s, "the help closed")
    t.tmux("send-keys", "-t", "t", "h")
    t.wait_for(lambda s: "any key closes this help" in s, "the help box again, with h")
    t.tmux("send-keys", "-t", "t", "x")
    t.wait_for(lambda s: "any key closes" not in s, "the help closed")
    t.tmux("send-keys", "-t", "t", "q")
    _restored(t, 0)


@needs_tmux
def test_tmux_first_sample_is_number_1(term):
    t = term(["-v", "-d", "60"], 80, 24, proc=ONE_NODE)
    screen = t.wait_for(lambda s: "ORDER" in s, "the first sample")
    title = screen.splitlines()[0]
    assert re.search(r" #1\b", title) and "#0" not in title, title
    t.tmux("send-keys", "-t", "t", "q")
    _restored(t, 0)


@needs_tmux
def test_tmux_zone_names_are_escaped(term, tmp_path):
    """A zone name holding a terminal escape (as a crafted /proc would) shows as text."""
    for name in ("buddyinfo", "zoneinfo"):
        with open(os.path.join(ONE_NODE, name), encoding="utf-8") as f:
            text = f.read()
        (tmp_path / name).write_text(text.replace("zone    DMA32", "zone DM\x1b[7mA32"))
    t = term(["-v", "-d", "0.3"], 80, 24, proc=str(tmp_path))
    screen = t.wait_for(lambda s: "ORDER" in s and "#2" in s, "two samples drawn")
    assert "0 DM\\x1b[7mA32  free " in screen, screen
    rows, _ = _cell_rows(screen)
    assert len([label for label, _ in rows if label.strip() == "blocks"]) == 3
    t.tmux("send-keys", "-t", "t", "q")
    _restored(t, 0)
