"""``mfd report A.db --compare B.db``: two recordings side by side.

The percentiles are checked against plain SQL over the recordings' own
zone_order view (an independent path to the same stored values), for known
synthetic recordings and for two real ones made on this machine; the time
with no THP-order block and the event rates against what was written."""
from __future__ import annotations

import base64
import io
import math
import re
import sqlite3
from collections import Counter

import pytest

import synth
from conftest import run_mfd
from mfd.model import Events
from mfd.recording import History
from mfd.report.build import build
from mfd.report.compare import Comparison, Distributions, Side, default_labels, nearest_rank

try:
    import matplotlib  # noqa: F401
    HAVE_MPL = True
except ImportError:
    HAVE_MPL = False
needs_matplotlib = pytest.mark.skipif(not HAVE_MPL, reason="matplotlib not installed")

NA, NB = 60, 40


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("compare")
    a, b = str(d / "before.db"), str(d / "after.db")
    # A: zone Normal fragmented in the first half, with events; B: a random walk, none
    synth.record(a, NA, nr_free=synth.halves(NA), events=synth.event_counts)
    synth.record(b, NB, start=1_700_100_000.0)
    return a, b


def _side(path, label="x"):
    dist = Distributions()
    with History(path) as h:
        rep = build(h, sink=dist)
    return Side(label, rep, dist)


def _sql_stats(path, zone, order, column):
    """median, p90 and max by nearest rank, from the recording's own view."""
    conn = sqlite3.connect(path)
    try:
        vals = sorted(round(v * 1000) for (v,) in conn.execute(
            f'SELECT {column} FROM zone_order WHERE zone = ? AND "order" = ? AND populated',
            (zone, order)))
    finally:
        conn.close()
    n = len(vals)
    return tuple(vals[max(1, math.ceil(q * n)) - 1] for q in (0.5, 0.9)) + (vals[-1],)


def test_nearest_rank_by_hand():
    c = Counter({0: 30, 1000: 30})
    assert nearest_rank(c, 0.5) == 0 and nearest_rank(c, 0.9) == 1000
    c = Counter([5, 1, 3, 2, 4])
    assert [nearest_rank(c, q) for q in (0.2, 0.5, 0.9, 1.0)] == [1, 3, 5, 5]
    assert nearest_rank(Counter(), 0.5) is None
    assert nearest_rank(Counter({-1000: 1}), 0.5) == -1000


def test_distributions_match_sql_over_the_view(pair):
    for path in pair:
        side = _side(path)
        for zone in ("DMA", "DMA32", "Normal"):
            for order in range(1, synth.NR_ORDERS):
                key = (0, zone, order)
                assert side.dist.stats("unusable", key) == \
                    _sql_stats(path, zone, order, "unusable_index"), (path, key)
                assert side.dist.stats("extfrag", key) == \
                    _sql_stats(path, zone, order, "extfrag_index"), (path, key)
    a = _side(pair[0])
    # Normal: unusable 1.000 in the first half, 0 in the second
    assert a.dist.stats("unusable", (0, "Normal", 5)) == (0, 1000, 1000)


def test_comparison_figures(pair):
    cmp = Comparison(_side(pair[0], "A"), _side(pair[1], "B"), 9)
    assert cmp.common_zones() == [(0, "DMA"), (0, "DMA32"), (0, "Normal")]
    assert cmp.no_block(cmp.a, (0, "Normal")) == (NA / 2, 0.5)
    assert cmp.no_block(cmp.b, (0, "Normal"))[0] == 0.0
    assert cmp.a.rate("extfrag.events") == 2.0 and cmp.b.rate("extfrag.events") is None
    assert list(cmp.orders((0, "Normal"))) == list(range(1, synth.NR_ORDERS))


def test_default_labels():
    assert default_labels(("/a/x.db", "/b/y.db")) == ("x.db", "y.db")
    assert default_labels(("/a/x.db", "/b/x.db")) == ("A", "B")


def _section(text, title):
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    out = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        out.append(line.split())
    return out


def test_cli_text(pair):
    a, b = pair
    r = run_mfd("report", a, "--compare", b, "--labels", "6.1,6.18")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("compare    A 6.1: ")
    nb = {row[1]: row[2:] for row in _section(r.stdout, "time with no free order-")}
    assert nb["Normal"] == ["30.0s", "50.0%", "0.0s", "0.0%"]
    rows = _section(r.stdout, "unusable_index per order")
    normal5 = next(row for row in rows if row[1] == "Normal" and row[2] == "5")
    assert normal5[3] == "0.000/1.000/1.000"
    want = "/".join("%d.%03d" % divmod(v, 1000) for v in _sql_stats(b, "Normal", 5,
                                                                      "unusable_index"))
    assert normal5[4] == want
    rates = {row[0]: row[1:] for row in _section(r.stdout, "event rates")}
    assert rates["extfrag.events"] == ["2/s", "-", "-"]


def test_cli_real_recordings_of_this_machine(tmp_path):
    """Two short real recordings (procfs: no compile): the comparison's
    medians are the stored values' medians, for every zone and order."""
    paths = [str(tmp_path / f"{x}.db") for x in "ab"]
    for p in paths:
        r = run_mfd("--source", "procfs", "--record", p, "-d", "0.1", "--count", "7", "-q")
        assert r.returncode == 0, r.stderr
    r = run_mfd("report", *paths[:1], "--compare", paths[1])
    assert r.returncode == 0, r.stderr
    rows = _section(r.stdout, "unusable_index per order")
    assert rows
    for node, zone, order, sa, sb, _ in rows:
        for path, cell in zip(paths, (sa, sb)):
            want = _sql_stats(path, zone, int(order), "unusable_index")
            assert cell == "/".join("%d.%03d" % divmod(v, 1000) for v in want), (zone, order)


@needs_matplotlib
def test_cli_png_and_html(pair, tmp_path):
    a, b = pair
    png, page = tmp_path / "ab.png", tmp_path / "ab.html"
    r = run_mfd("report", a, "--compare", b, "--labels", "<b>old</b>,new",
                "--png", str(png), "--html", str(page))
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = page.read_text()
    assert "<b>old</b>" not in html and "&lt;b&gt;old&lt;/b&gt;" in html
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html)
    m = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    import matplotlib.image as mpimg
    img = mpimg.imread(io.BytesIO(base64.b64decode(m.group(1))), format="png")
    assert img.shape[0] > 800 and img.shape[1] > 1000
    assert "MED/P90/MAX" in html and "extfrag.events" in html


@needs_matplotlib
def test_comparison_figure_draws_both_sides(pair):
    from mfd.report import plots
    cmp = Comparison(_side(pair[0], "A"), _side(pair[1], "B"), 9)
    fig = plots.comparison_figure(cmp)
    labels = {ax.get_label() for ax in fig.axes}
    assert {"zone:0:Normal:unusable", "zone:0:Normal:extfrag", "no_block", "rates"} <= labels
    ax = next(x for x in fig.axes if x.get_label() == "zone:0:Normal:unusable")
    lines = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
    assert lines["A median"] == [0.0] * (synth.NR_ORDERS - 1)
    assert lines["A p90"] == [1.0] * (synth.NR_ORDERS - 1)
    bars = next(x for x in fig.axes if x.get_label() == "no_block").patches
    assert [round(p.get_height()) for p in bars] == [0, 0, 50, 0, 0, 0]


@pytest.mark.parametrize("args, message", [
    (["--labels", "a,b"], "--labels needs --compare"),
    (["--thp-order", "9"], "--thp-order needs --compare"),
    (["--compare", "{b}", "--csv", "-"], "--csv does nothing with --compare"),
    (["--compare", "{b}", "--order", "3"], "--order does nothing with --compare"),
    (["--compare", "{a}"], "same file"),
    (["--compare", "{b}", "--labels", "only-one"], "two labels"),
    (["--compare", "{b}", "-c", "Bogus"], "no zone 'Bogus'"),
])
def test_cli_compare_usage_errors(pair, args, message):
    a, b = pair
    args = [x.format(a=a, b=b) for x in args]
    r = run_mfd("report", a, *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1


def test_cli_compare_runtime_errors(pair, tmp_path):
    a, _ = pair
    r = run_mfd("report", a, "--compare", str(tmp_path / "missing.db"))
    assert r.returncode == 1 and "no such recording" in r.stderr
    other = str(tmp_path / "other.db")
    synth.record(other, 3, zones=("A1", "B1"), populated=2)
    r = run_mfd("report", a, "--compare", other)
    assert r.returncode == 1 and "no populated zone in common" in r.stderr, r.stderr


def test_cli_events_recorded_but_all_zero(tmp_path):
    from mfd.model import ExtfragResult
    paths = [str(tmp_path / f"{x}.db") for x in "ab"]
    for p in paths:
        synth.record(p, 3, events=lambda i: Events(1.0, results=(ExtfragResult(),)))
    r = run_mfd("report", paths[0], "--compare", paths[1])
    assert r.returncode == 0, r.stderr
    assert "every counter stayed 0 in both" in r.stdout and "EVENT" not in r.stdout


def test_a_group_one_side_never_recorded_has_no_rate(pair, tmp_path):
    cmp = Comparison(_side(pair[0], "A"), _side(pair[1], "B"), 9)
    assert cmp.b.rate("alloc.allocs") is None and cmp.a.rate("alloc.allocs") == 100.0


def test_cli_compare_more_usage_errors(pair, tmp_path):
    a, b = pair
    link = tmp_path / "same.db"
    link.symlink_to(a)
    for args, message in ((["--compare", str(link)], "same file"),
                          (["--compare", b, "--labels", "x,x"], "two different labels"),
                          (["--compare", b, "--thp-order", "12"], "orders 0-10")):
        r = run_mfd("report", a, *args)
        assert r.returncode == 2 and message in r.stderr, r.stderr
