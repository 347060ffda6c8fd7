"""mfd report: the summary, filters, exports, and charts checked by their content."""
from __future__ import annotations

import base64
import csv
import io
import json
import os
import re

import pytest

import synth
from conftest import run_mfd
from mfd.recording import History
from mfd.report.build import build

N = 200            # fixture samples, 1 s apart; zone Normal is fragmented in the first half


@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("report") / "fixture.db")
    synth.record(db, N, nr_free=synth.halves(N), events=synth.event_counts)
    return db


@pytest.fixture(scope="module")
def plain_db(tmp_path_factory):
    """No events, two runs with a gap between them."""
    db = str(tmp_path_factory.mktemp("report") / "plain.db")
    synth.record(db, 30, nr_free=synth.halves(30))
    synth.record(db, 30, start=1_700_000_000.0 + 600, nr_free=synth.halves(30))
    return db


def _rows(text, header_start):
    """Rows (split) of the table whose header line starts with header_start."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.split()[:2] == header_start)
    out = []
    for line in lines[i + 1:]:
        if not line.strip():
            break
        out.append(line.split())
    return out


def test_summary(fixture_db):
    r = run_mfd("report", fixture_db)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"{N} samples" in out and "(3m19s)" in out
    assert "1 run: fixture, kernel 6.18.0-test; procfs; every 1 s" in out
    zones = _rows(out, ["NODE", "ZONE"])
    assert zones[0][:2] == ["0", "Normal"]                       # the worst zone first
    assert zones[0][-2:] == ["1m40s", "50.0%"]                   # half of the 200 s above 0.5
    assert {z[1] for z in zones} == {"DMA", "DMA32", "Normal"}   # empty zones left out
    events = dict((line.split()[0], line.split()[1]) for line in out.splitlines()
                  if line.startswith("  extfrag.") or line.startswith("  compaction."))
    assert events == {"extfrag.events": "400", "extfrag.change_ownership": "200",
                      "compaction.begin": "20", "compaction.vmstat.compact_stall": "20",
                      "compaction.vmstat.compact_migrate_scanned": "10000"}
    assert "  alloc.allocs " in out and "interval" not in out and ".rate" not in out
    assert "cumulative" not in out
    assert max(len(line) for line in out.splitlines()) <= 100


def test_filters(fixture_db, plain_db):
    r = run_mfd("report", fixture_db, "--since", "-49s", "-c", "normal", "-i", "0")
    assert r.returncode == 0, r.stderr
    assert "50 samples" in r.stdout
    zones = _rows(r.stdout, ["NODE", "ZONE"])
    assert [z[1] for z in zones] == ["Normal"] and zones[0][-2:] == ["0.0s", "0.0%"]
    r = run_mfd("report", fixture_db, "--until", "@1700000049")
    assert "50 samples" in r.stdout and _rows(r.stdout, ["NODE", "ZONE"])[0][-1] == "100.0%"
    r = run_mfd("report", plain_db)
    assert "2 runs: fixture, kernel 6.18.0-test; procfs; every 1 s" in r.stdout
    assert "60 samples" in r.stdout and "none recorded" in r.stdout


@pytest.mark.parametrize("args,code,msg", [
    (["-c", "HighMem"], 2, "no populated zone matches"),
    (["--since", "tomorrow"], 2, "not a time"),
    (["--since", "@1800000000"], 1, "no samples in"),
    (["--since", "-1m", "--until", "-2m"], 2, "--since is after --until"),
    (["--csv", "-", "--json", "-"], 2, "only one of"),
])
def test_errors_are_one_line(fixture_db, args, code, msg):
    r = run_mfd("report", fixture_db, *args)
    assert r.returncode == code and msg in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr


def test_missing_and_empty_recordings(tmp_path):
    r = run_mfd("report", str(tmp_path / "nope.db"))
    assert r.returncode == 1 and "no such recording" in r.stderr
    from mfd.sinks.recorder import Recorder
    Recorder(str(tmp_path / "empty.db"), interval=1).close()
    r = run_mfd("report", str(tmp_path / "empty.db"))
    assert r.returncode == 1 and "holds no samples" in r.stderr


def test_csv_export(fixture_db, tmp_path):
    out = tmp_path / "x.csv"
    r = run_mfd("report", fixture_db, "--csv", str(out), "-c", "Normal")
    assert r.returncode == 0 and "zones, worst first" in r.stdout
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == N * synth.NR_ORDERS
    first = [row for row in rows if row["time"].startswith("1700000000.")]
    assert [int(row["nr_free"]) for row in first] == synth.FRAGMENTED
    assert first[5]["unusable_index"] == "1.000" and first[0]["extfrag_index"] == "-1.000"
    last = rows[-synth.NR_ORDERS:]
    assert [int(row["nr_free"]) for row in last] == synth.WHOLE
    assert {row["host"] for row in rows} == {"fixture"}
    # to stdout: only the CSV, no summary
    r = run_mfd("report", fixture_db, "--csv", "-", "-c", "DMA")
    assert r.stdout.startswith("time,timestamp,") and "zones, worst" not in r.stdout
    assert len(r.stdout.splitlines()) == 1 + N * synth.NR_ORDERS


def test_json_export(fixture_db):
    r = run_mfd("report", fixture_db, "--json", "-", "--since", "-9s")
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(objs) == 10 and [o["seq"] for o in objs] == list(range(N - 10, N))
    o = objs[0]
    assert o["events"] == synth.event_counts(N - 10).to_json() and o["host"] == "fixture"
    normal = [z for n in o["nodes"] for z in n["zones"] if z["zone"] == "Normal"][0]
    assert normal["nr_free"] == synth.WHOLE and normal["unusable_index"] == [0.0] * 11
    assert "pgdat\"" not in r.stdout


def test_without_matplotlib_summary_and_exports_still_work(fixture_db, tmp_path):
    fake = tmp_path / "fake"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib')\n")
    env = dict(os.environ, PYTHONPATH=str(fake))
    png, out = tmp_path / "x.png", tmp_path / "x.csv"
    r = run_mfd("report", fixture_db, "--png", str(png), "--csv", str(out), env=env)
    assert r.returncode == 1
    assert "zones, worst first" in r.stdout and out.exists() and not png.exists()
    # mfd is not on PyPI: the hint is the package for the way it was installed
    assert "charts need matplotlib: apt install python3-matplotlib" in r.stderr
    assert r.stderr.count("\n") == 1
    r = run_mfd("report", fixture_db, env=env)
    assert r.returncode == 0


# -- the charts: what is drawn, and what lands in the PNG --------------------------------

try:
    import matplotlib
except ImportError:
    matplotlib = None
needs_matplotlib = pytest.mark.skipif(matplotlib is None,
                                      reason="charts need matplotlib (mfd[plot])")


def _report(db):
    with History(db) as h:
        return build(h, charts=True)


def _axes(fig, label):
    (ax,) = [a for a in fig.axes if a.get_label() == label]
    return ax


def _pixel(png_bytes, fig, ax, x, y):
    """RGB (0..1) of the PNG pixel where data point (x, y) of ``ax`` was drawn."""
    import matplotlib.image as mpimg
    img = mpimg.imread(io.BytesIO(png_bytes), format="png")
    px, py = ax.transData.transform((x, y))
    return img[int(round(img.shape[0] - py)), int(round(px))][:3]


def _colour(value):
    from mfd.report.plots import CMAP
    cmap = matplotlib.colormaps[CMAP] if hasattr(matplotlib, "colormaps") \
        else matplotlib.cm.get_cmap(CMAP)
    return cmap(value)[:3]


@needs_matplotlib
def test_figure_content(fixture_db):
    from mfd.report import plots
    rep = _report(fixture_db)
    fig = plots.figure(rep)
    labels = {a.get_label() for a in fig.axes}
    assert {"heat:0:Normal", "heat:0:DMA", "heat:0:DMA32", "free:0:Normal",
            "events:extfrag", "events:compaction", "events:compaction-pages"} <= labels
    heat = _axes(fig, "heat:0:Normal")
    (mesh,) = heat.collections
    data = mesh.get_array().reshape(synth.NR_ORDERS, -1)
    assert data.shape[1] == N                        # one column per sample here
    assert (data[1:, :N // 2] == 1.0).all() and (data[:, N // 2:] == 0.0).all()
    assert (data[0] == 0.0).all()
    free = _axes(fig, "free:0:Normal")
    lines = {line.get_label(): line.get_ydata() for line in free.get_lines()}
    assert list(lines["0"][:3]) == [4000] * 3 and list(lines["10"][-3:]) == [100] * 3
    steals = {line.get_label(): line.get_ydata() for line in
              _axes(fig, "events:extfrag").get_lines()}
    assert set(steals) == {"events", "change_ownership"}
    assert (steals["events"] == 2.0).all()           # 2 per 1 s sample
    pages = {line.get_label() for line in _axes(fig, "events:compaction-pages").get_lines()}
    assert pages == {"compact_migrate_scanned"}


@needs_matplotlib
def test_png_pixels_show_the_heatmap(fixture_db, tmp_path):
    from mfd.report import plots
    rep = _report(fixture_db)
    fig = plots.figure(rep)
    png = plots.render_png(rep, fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    heat = _axes(fig, "heat:0:Normal")
    x0, x1 = heat.get_xlim()
    early, late = x0 + (x1 - x0) * 0.25, x0 + (x1 - x0) * 0.75
    red, green = _colour(1.0), _colour(0.0)
    for order in (1, 5, 10):
        assert _pixel(png, fig, heat, early, order) == pytest.approx(red, abs=0.02)
        assert _pixel(png, fig, heat, late, order) == pytest.approx(green, abs=0.02)
    assert _pixel(png, fig, heat, early, 0) == pytest.approx(green, abs=0.02)
    # the command writes the same picture
    out = tmp_path / "r.png"
    r = run_mfd("report", fixture_db, "--png", str(out))
    assert r.returncode == 0 and f"wrote {out}" in r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image as mpimg
    assert mpimg.imread(str(out)).shape[:2] == mpimg.imread(io.BytesIO(png)).shape[:2]


@needs_matplotlib
def test_html_is_self_contained_with_tables_and_picture(fixture_db, tmp_path):
    out = tmp_path / "r.html"
    r = run_mfd("report", fixture_db, "--html", str(out))
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page)   # nothing to fetch
    m = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    png = base64.b64decode(m.group(1))
    import matplotlib.image as mpimg
    img = mpimg.imread(io.BytesIO(png), format="png")
    assert img.shape[0] > 800 and img.shape[1] > 1000
    # some heatmap red (unusable 1.0) and green (0.0) in the picture
    rgb = img[:, :, :3].reshape(-1, 3)
    for colour in (_colour(1.0), _colour(0.0)):
        assert (abs(rgb - colour).max(axis=1) < 0.02).sum() > 1000
    assert "<td>Normal</td>" in page and "extfrag.events" in page and "1m40s" in page


@needs_matplotlib
def test_gaps_between_runs_stay_blank(plain_db):
    from mfd.report import plots
    rep = _report(plain_db)
    fig = plots.figure(rep)
    data = _axes(fig, "heat:0:Normal").collections[0].get_array()
    cols = data.reshape(synth.NR_ORDERS, -1)
    assert cols.shape[1] == 61 and cols.mask[:, 30].all()        # the 10-minute gap
    assert _axes(fig, "events:none")


@needs_matplotlib
def test_a_long_recording_is_folded_into_columns(tmp_path):
    from mfd.report import plots
    from mfd.report.build import MAX_COLUMNS
    db = str(tmp_path / "long.db")
    synth.record(db, 3000, nr_free=synth.halves(3000))
    rep = _report(db)
    assert len(rep.columns) <= MAX_COLUMNS
    assert sum(c.zones[(0, 2)][0] for c in rep.columns) == 3000
    cols = _axes(plots.figure(rep), "heat:0:Normal").collections[0].get_array()
    assert cols.reshape(synth.NR_ORDERS, -1).shape[1] == len(rep.columns)


def test_csv_marks_empty_zones_and_leaves_their_indices_out(plain_db):
    r = run_mfd("report", plain_db, "--csv", "-")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    empty = [row for row in rows if row["zone"] in ("Movable", "Device")]
    assert empty and {(row["populated"], row["extfrag_index"], row["unusable_index"])
                      for row in empty} == {("0", "", "")}
    assert {row["populated"] for row in rows if row["zone"] == "Normal"} == {"1"}


def test_json_export_filter_in_the_kernels_spelling(fixture_db):
    r = run_mfd("report", fixture_db, "--json", "-", "-c", "normal", "--since", "-1s")
    (obj,) = [json.loads(line) for line in r.stdout.splitlines()][-1:]
    assert [z["zone"] for n in obj["nodes"] for z in n["zones"]] == ["Normal"]


def test_alloc_group_is_charted(fixture_db):
    pytest.importorskip("matplotlib")
    from mfd.report import plots
    fig = plots.figure(_report(fixture_db))
    (ax,) = [a for a in fig.axes if a.get_label() == "events:alloc"]
    assert {line.get_label() for line in ax.get_lines()} == {"allocs"}
