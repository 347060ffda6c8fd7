"""Crafted recordings (issue 9, item 5): one clear line and exit 1, never a hang.

Every case starts from a real recording written by mfd's own Recorder
(tests/synth.py), tampers with it through sqlite3 the way anyone able to write
the file could, and runs the real ``mfd report`` as a process under a timeout.
A timeout is a failure: the report hung.
"""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import sqlite3
import subprocess
from contextlib import closing

import pytest

import synth
from conftest import mfd_argv

TIMEOUT = 60        # the bound for any input under 100 MB, in any mode
T1 = 1_700_000_001  # the time of sample 2 (synth.record starts at 1_700_000_000, 1 s apart)
ZONE2 = "sample_id = 2 AND zone_idx = 2"     # zone Normal of sample 2


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A real recording: 6 samples of 1 node, 5 zones (3 populated), with events."""
    db = str(tmp_path_factory.mktemp("crafted") / "real.db")
    synth.record(db, 6, events=synth.event_counts)
    return db


def _copy(real, tmp_path, name="crafted.db") -> str:
    db = str(tmp_path / name)
    shutil.copy(real, db)
    return db


def _tamper(db: str, *statements, params=()) -> str:
    with closing(sqlite3.connect(db)) as c:
        for sql in statements:
            c.execute(sql, params) if params else c.execute(sql)
        c.commit()
    return db


def report(db: str, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(mfd_argv("report", db, *args), capture_output=True, text=True,
                              timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"mfd report {' '.join(args)} still running after {TIMEOUT} s (hung)")


def assert_one_line(r: subprocess.CompletedProcess, *wanted: str) -> str:
    """Exit 1 and one line on stderr, ``mfd: ...``, saying each of ``wanted``."""
    err = r.stderr.strip()
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "\n" not in err and err.startswith("mfd: "), r.stderr[-2000:]
    assert "internal error" not in err and "Traceback" not in r.stderr, err
    for w in wanted:
        assert w in err, (w, err)
    return err


# -- the schema: tables that are mfd's, no code from the file --------------------

RECURSIVE = ("WITH RECURSIVE r(id, run_id, seq, time, interval, events) AS "
             "(SELECT 1, 1, 0, 1700000000.0, 1.0, NULL UNION ALL "
             "SELECT id + 1, 1, seq + 1, time + 1, 1.0, NULL FROM r) SELECT * FROM r")

SCHEMA_CASES = {
    # The case: the summary's first query never ends.
    "sample is a recursive view": (["DROP TABLE sample", f"CREATE VIEW sample AS {RECURSIVE}"],
                                   ["sample is a view", "mfd creates a table"]),
    "zone_order is not mfd's view": (["DROP VIEW zone_order",
                                      f"CREATE VIEW zone_order AS {RECURSIVE}"],
                                     ["view zone_order is not the one mfd creates"]),
    "a trigger": (["CREATE TRIGGER t AFTER INSERT ON sample BEGIN "
                   "DELETE FROM sample; END"], ["trigger 't'"]),
    "another view": (["CREATE VIEW v AS SELECT 1"], ["view 'v'"]),
    # A generated column is computed from the file's SQL on every read.
    "a generated column": (["ALTER TABLE sample ADD COLUMN t2 REAL "
                            "GENERATED ALWAYS AS (time * 2) VIRTUAL"],
                           ["table sample is not the one mfd creates"]),
}


@pytest.mark.parametrize("case", SCHEMA_CASES)
def test_schema_objects_must_be_mfds(real, tmp_path, case):
    statements, wanted = SCHEMA_CASES[case]
    db = _tamper(_copy(real, tmp_path), *statements)
    assert_one_line(report(db), db, *wanted)


# -- rows: types, ranges, finite times, lists of counts ------------------------------

def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


ROW_CASES = {
    # (statement, parameters, report arguments, what the line says)
    "nr_free not JSON": (f"UPDATE zone SET nr_free = '[1,2' WHERE {ZONE2}", (), [],
                         "nr_free is not a list of 11 non-negative integers"),
    "nr_free an object": (f"UPDATE zone SET nr_free = '{{}}' WHERE {ZONE2}", (), [],
                          "nr_free is not a list"),
    "nr_free negative": (f"UPDATE zone SET nr_free = '[-5,0,0,0,0,0,0,0,0,0,0]' WHERE {ZONE2}",
                         (), [], "nr_free is not a list"),
    "nr_free NaN": (f"UPDATE zone SET nr_free = '[NaN,0,0,0,0,0,0,0,0,0,0]' WHERE {ZONE2}",
                    (), ["--json", "-"], "nr_free is not a list"),
    "nr_free nested deeply": ("UPDATE zone SET nr_free = ? WHERE " + ZONE2, (_deep(100000),),
                              [], "nr_free is not a list"),
    # The case: 10^6 orders made the JSON export's index math O(n^2).
    "nr_free with 10^6 entries": ("UPDATE zone SET nr_free = ? WHERE " + ZONE2,
                                  ("[" + ",".join(["1"] * 10 ** 6) + "]",), ["--json", "-"],
                                  "nr_free is not a list of 11"),
    "free_pages text": (f"UPDATE zone SET free_pages = 'lots' WHERE {ZONE2}", (), [],
                        "free_pages is not a page count"),
    "zone_idx out of range": (f"UPDATE zone SET zone_idx = 9 WHERE {ZONE2}", (), [],
                              "zone_idx 9 is not a zone index below 8"),
    "events not JSON": ("UPDATE sample SET events = '{oops' WHERE id = 2", (), [],
                        "events are not what mfd writes"),
    "events nested deeply": ("UPDATE sample SET events = ? WHERE id = 2", (_deep(100000),), [],
                             "events are not what mfd writes"),
    "events count negative": ("UPDATE sample SET events = ? WHERE id = 2",
                              (json.dumps({"interval": 1, "extfrag": {
                                  "events": -5, "change_ownership": 0, "cumulative": 0,
                                  "rate": 0, "dropped": 0, "by_process": []}}),), [],
                              "extfrag.events is -5, not a count"),
    "events count NaN": ("UPDATE sample SET events = ? WHERE id = 2",
                         ('{"interval": 1, "extfrag": {"events": NaN, "change_ownership": 0, '
                          '"cumulative": 0, "rate": 0, "dropped": 0}}',), [],
                         "NaN is not a number"),
    "events of empty rows": ("UPDATE sample SET events = ? WHERE id = 2",
                             (json.dumps({"interval": 1, "extfrag": {
                                 "events": 0, "change_ownership": 0, "cumulative": 0,
                                 "rate": 0, "dropped": 0, "by_process": [{}] * 1000}}),), [],
                             "names 0 of the 11 fields of a ExtfragRow"),
    "dangling run_id": ("UPDATE sample SET run_id = 99 WHERE id = 2", (), [],
                        "run_id 99 names no run"),
    "interval negative": ("UPDATE sample SET interval = -1 WHERE id = 2", (), [],
                          "interval is not a number of seconds"),
}


@pytest.mark.parametrize("case", ROW_CASES)
def test_bad_rows_are_one_line_naming_the_row(real, tmp_path, case):
    sql, params, args, wanted = ROW_CASES[case]
    db = _tamper(_copy(real, tmp_path), sql, params=params)
    assert_one_line(report(db, *args), f"{db}: sample 2 (time {T1}): ", wanted)


@pytest.mark.parametrize("value", ["9e999", "1e20", "'abc'", "-1", "x'00'"])
def test_times_that_are_not_times(real, tmp_path, value):
    """inf, 1e20 and text gave "internal error" (OverflowError, TypeError)."""
    db = _tamper(_copy(real, tmp_path), f"UPDATE sample SET time = {value} WHERE id = 2")
    assert_one_line(report(db), f"{db}: sample 2: time is not a unix time")


def test_runs_are_checked(real, tmp_path):
    db = _tamper(_copy(real, tmp_path), "UPDATE run SET nr_orders = 100000")
    assert_one_line(report(db), f"{db}: run 1: nr_orders is not a number of orders from 1 to 64")
    db = _tamper(_copy(real, tmp_path, "host.db"), "UPDATE run SET host = ?",
                 params=("h" * 10000,))
    assert_one_line(report(db), "run 1: host is not a text of at most 64 characters")


# -- bounded work: nodes, zones, charts that scale -----------------------------------

@pytest.fixture(scope="module")
def nodes_2000(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("crafted") / "n2000.db")
    synth.record(db, 2, nodes=2000)
    return db


def test_more_nodes_than_the_kernel_allows(nodes_2000, tmp_path):
    """2000 nodes: --html ran past 60 s.  MAX_NUMNODES is at most 1 << 10."""
    r = report(nodes_2000, "--html", str(tmp_path / "r.html"))
    assert_one_line(r, "node 1024 is not a node id below 1024")
    assert not (tmp_path / "r.html").exists()


try:
    import matplotlib
except ImportError:
    matplotlib = None


def _zone_rows(out: str) -> list:
    """Rows (split) of the summary's zone table."""
    lines = out.splitlines()
    i = next(k for k, line in enumerate(lines) if line.split()[:3] == ["NODE", "ZONE", "MANAGED"])
    rows = []
    for line in lines[i + 1:]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


@pytest.mark.skipif(matplotlib is None, reason="charts need matplotlib (mfd[plot])")
def test_charts_scale_to_many_zones(tmp_path):
    """300 nodes (900 populated zones): "Image size too large" before.  Now the
    charts show the worst zones and the tables every zone."""
    import matplotlib.image as mpimg
    db = str(tmp_path / "n300.db")
    synth.record(db, 3, nodes=300)
    out = tmp_path / "r.html"
    r = report(db, "--html", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    page = out.read_text()
    png = base64.b64decode(re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page).group(1))
    height, width = mpimg.imread(io.BytesIO(png), format="png").shape[:2]
    assert width <= 2000 and height <= 4000, (width, height)
    assert len(_zone_rows(r.stdout)) == 900                 # every zone in the tables
    assert "the 12 worst of 900 zones" not in r.stdout      # (that is the picture's title)


# -- strings from the file reach the terminal escaped, HTML escaped ---------------------

def test_strings_from_the_file_are_escaped(real, tmp_path):
    db = _tamper(_copy(real, tmp_path),
                 "UPDATE run SET host = ?, kernel = ?",
                 params=("\x1b]0;pwn\x07evil<script>",
                         "6.1\nzones, worst first: forged\u202e"))
    _tamper(db, "UPDATE zone SET zone = 'Nor\x1b[31mmal' WHERE zone = 'Normal'")
    r = report(db, "--html", str(tmp_path / "r.html"))
    assert r.returncode in (0, 1), r.stderr          # 1: no matplotlib here (charts)
    out = r.stdout
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert not any(line.startswith("zones, worst first: forged") for line in out.splitlines())
    assert "\\x1b]0;pwn\\x07evil" in out and "6.1\\nzones, worst first: forged" in out
    assert "Nor\\x1b[31mmal" in out
    if r.returncode == 0:
        page = (tmp_path / "r.html").read_text()
        assert "<script>" not in page and "evil&lt;script&gt;" in page
        assert "\x1b" not in page and "\x07" not in page


# -- SQLite's work is bounded too -------------------------------------------------------

def test_sqlite_steps_are_bounded(tmp_path, monkeypatch):
    """The progress handler: a step that takes longer than STEP_SECONDS is one
    line, not a hang (no step of a real file is that slow, so the bound is set
    below nothing here)."""
    from mfd import recording
    from mfd.recording import History, HistoryError
    db = str(tmp_path / "r.db")
    synth.record(db, 300)           # enough rows for SQLite to call the handler
    with History(db) as h:
        monkeypatch.setattr(recording, "STEP_SECONDS", -1.0)
        with pytest.raises(HistoryError, match="SQLite worked more than"):
            list(h.samples())
