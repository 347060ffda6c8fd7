"""The -v live view: the layout rendered to text at several sizes, and the real thing in a
real terminal (tmux), resized, quit with q and Ctrl-C, ended by an error."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
import uuid

import pytest

import synth
from conftest import ROOT, mfd_argv, run_mfd
from mfd.sinks.live import Dashboard, abbrev, format_value, render_text
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
    assert [format_value(v, 3) for v in (376, 1000)] == [".37", "1.0"]


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


@pytest.fixture
def term():
    started = []

    def start(args, width=80, height=24):
        t = Tmux(" ".join(shlex.quote(a) for a in mfd_argv(*args)), width, height)
        started.append(t)
        return t
    yield start
    for t in started:
        t.close()


def _buddy_zones():
    with open("/proc/buddyinfo") as f:
        return [line.split()[3] for line in f]


def _restored(t, code):
    text = t.wait_for(lambda s: "EXIT=" in s and "min = " in s, "mfd to end", scrollback=True)
    assert f"EXIT={code}" in text
    assert "ORDER" not in text.split("EXIT=")[0]        # it left the alternate screen
    modes = text.split("EXIT=")[1]
    assert " icanon" in modes and " echo " in modes and "-icanon" not in modes


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
    t.wait_for(lambda s: "#3" in s, "four samples")
    t.tmux("send-keys", "-t", "t", "q")
    _restored(t, 0)
    r = run_mfd("report", db)
    assert r.returncode == 0 and "1 run:" in r.stdout
    assert int(r.stdout.split(" samples")[0].rsplit(None, 1)[-1]) >= 4
