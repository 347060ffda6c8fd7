"""Pageblock maps in recordings: written by the real Recorder (schema 3),
read back bounded, upgraded from schema 2, dropped by --retain, refused
when crafted, and shown by mfd report; one live recording with
--map-interval on this kernel."""
from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing

import numpy as np
import pytest

import synth
from conftest import needs_root, run_mfd
from mfd import pageblocks as pb
from mfd.derive import Frame
from mfd.model import Sample
from mfd.model.physmap import PhysMap, ZoneMap
from mfd.recording import History, HistoryError
from mfd.sinks.recorder import Recorder

P = 512


def a_map(t: float, pinned: int) -> PhysMap:
    normal = np.full(2048, pb.FREE, np.uint8)
    normal[:pinned] = pb.PINNED
    normal[-100:] = pb.HOLE
    dma32 = np.full(1024, pb.COMPACTABLE, np.uint8)
    zones = [ZoneMap(0, "DMA32", 8 * P, 1032 * P, 8, dma32, np.zeros(1024, np.uint32)),
             ZoneMap(0, "Normal", 2048 * P, 4096 * P, 2048, normal, np.zeros(2048, np.uint32))]
    return PhysMap("fixture", "6.18.0-test", t, 4096, 9, P, zones, 0.1, None)


def record_with_maps(path: str, maps=((1, 10), (9, 300)), n: int = 10, retain=None,
                     start: float = 1_700_000_000.0):
    rec = Recorder(path, interval=1.0, retain=retain, host="fixture", kernel="6.18.0-test")
    try:
        for i in range(n):
            t = start + i
            rec.emit(Frame(Sample(snapshot=synth.snapshot(t, lambda n_, z: synth.WHOLE),
                                  interval=1.0, seq=i)))
            for at, pinned in maps:
                if at == i:
                    rec.emit_map(a_map(t, pinned))
    finally:
        rec.close()


def test_maps_round_trip_through_the_recording(tmp_path):
    db = str(tmp_path / "m.db")
    record_with_maps(db)
    with History(db) as h:
        assert h.version == 3
        count, times = h.map_times()
        assert (count, times) == (2, [1_700_000_001.0, 1_700_000_009.0])
        first, last = (h.pagemap(t) for t in times)
    assert [(r.zone, r.first_block, r.blocks, r.page_size) for r in first] == \
        [("DMA32", 8, 1024, 4096), ("Normal", 2048, 2048, 4096)]
    assert last[1].counts()[pb.PINNED] == 300 and last[1].counts()[pb.HOLE] == 100
    assert list(pb.from_runs(last[1].runs)) == list(a_map(0, 300).zones[1].classes)


def test_report_draws_the_first_and_last_maps_and_the_change(tmp_path):
    db = str(tmp_path / "m.db")
    record_with_maps(db)
    r = run_mfd("report", db)
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert "pageblock maps: 2" in text and "the first map" in text and "the last map" in text
    change = [l for l in text.split("\n") if "Normal" in l and "change" in l][0].split()
    # FREE COMPACT HUGE UNCERT PINNED HOLE: 290 more pinned, 290 fewer free
    assert change[-6:] == ["-290", "+0", "+0", "+0", "+290", "+0"], change
    r = run_mfd("report", db, "-c", "DMA32")
    assert "Normal" not in r.stdout.split("pageblock maps")[1]


def test_report_html_has_the_maps(tmp_path):
    pytest.importorskip("matplotlib")
    db = str(tmp_path / "m.db")
    record_with_maps(db)
    out = tmp_path / "r.html"
    r = run_mfd("report", db, "--html", str(out))
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    assert page.count("data:image/png;base64,") == 4      # the charts, two maps, the counts
    assert "Pageblock maps" in page


def test_retain_drops_old_maps(tmp_path):
    db = str(tmp_path / "m.db")
    record_with_maps(db, maps=((0, 1), (2, 2), (19, 3)), n=20, retain=5)
    with History(db) as h:
        assert h.map_times() == (1, [1_700_000_019.0])


def test_schema_2_files_are_read_and_upgraded(tmp_path):
    db = str(tmp_path / "old.db")
    synth.record(db, 3)
    with closing(sqlite3.connect(db)) as c:
        c.executescript("DROP TABLE pagemap; UPDATE meta SET value = '2' WHERE key = 'schema';"
                        "PRAGMA user_version = 2;")
    with History(db) as h:
        assert h.version == 2 and h.map_times() == (0, [])
    r = run_mfd("report", db)
    assert r.returncode == 0 and "(mfd schema 2)" in r.stdout and "pageblock maps" not in r.stdout
    record_with_maps(db, start=1_800_000_000.0)
    with History(db) as h:
        assert h.version == 3 and h.map_times()[0] == 2


CRAFTED = {
    "a class beyond hole..pinned": "[9,10]",
    "an odd number of values": "[1,10,2]",
    "a run of length 0": "[1,0]",
    "more pageblocks than any zone": json.dumps([1, 1 << 25]),
    "a float": "[1,1.5]",
    "nested": "[[1,2]]",
    "not JSON": "nope",
}


@pytest.mark.parametrize("what", list(CRAFTED))
def test_crafted_runs_are_refused_in_one_line(tmp_path, what):
    db = str(tmp_path / "c.db")
    record_with_maps(db, maps=((1, 10),))
    with closing(sqlite3.connect(db)) as c:
        c.execute("UPDATE pagemap SET runs = ? WHERE zone = 'Normal'", (CRAFTED[what],))
        c.commit()
    r = run_mfd("report", db)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r
    assert "pagemap" in r.stderr and "runs" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("column,value", [("page_size", 1234), ("node", -1), ("zone", ""),
                                          ("pageblock_order", 99), ("first_block", -5),
                                          ("run_id", 77)])
def test_crafted_columns_are_refused(tmp_path, column, value):
    db = str(tmp_path / "c.db")
    record_with_maps(db, maps=((1, 10),))
    with closing(sqlite3.connect(db)) as c:
        c.execute(f"UPDATE pagemap SET {column} = ?", (value,))
        c.commit()
    r = run_mfd("report", db)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and column in r.stderr, r


def test_map_interval_needs_record_and_a_sane_interval():
    assert run_mfd("--map-interval", "60").returncode == 2
    r = run_mfd("--record", "/tmp/x.db", "--map-interval", "1")
    assert r.returncode == 2 and "10" in r.stderr
    assert run_mfd("--prometheus", "19999", "--map-interval", "60").returncode == 2


@needs_root
def test_a_live_recording_with_maps(tmp_path):
    """Two maps in 20 s (the first after the first sample, read at 4 GiB/s),
    each zone's pageblocks those of /proc/zoneinfo's span."""
    db = str(tmp_path / "live.db")
    r = run_mfd("--source", "procfs", "--record", db, "--map-interval", "10", "-d", "1",
                "--count", "20", "-q", timeout=120)
    assert r.returncode == 0, r.stderr
    from mfd.sources.procfs import parse_zoneinfo
    with open("/proc/zoneinfo") as f:
        spans = {(z["node"], z["zone"]): (z["start_pfn"], z["start_pfn"] + z["spanned"])
                 for z in parse_zoneinfo(f.read()) if z["present"]}
    with History(db) as h:
        count, times = h.map_times()
        assert count == 2 and len(times) == 2, times
        for t in times:
            recs = h.pagemap(t)
            assert {(x.node, x.zone) for x in recs} == set(spans)
            for x in recs:
                lo, hi = spans[(x.node, x.zone)]
                assert x.first_block == lo >> 9 and x.blocks == -(-hi // P) - lo // P
                assert x.counts()[pb.FREE] > 0 or x.zone != "Normal"
    r = run_mfd("report", db)
    assert r.returncode == 0 and "pageblock maps: 2" in r.stdout, r.stderr


def test_a_long_recording_reads_evenly_spaced_maps(tmp_path):
    db = str(tmp_path / "long.db")
    record_with_maps(db, maps=[(i, i + 1) for i in range(200)], n=200)
    with History(db) as h:
        count, times = h.map_times(limit=5)
        assert count == 200 and len(times) == 5
        assert times[0] == 1_700_000_000.0 and times[-1] == 1_700_000_199.0
    r = run_mfd("report", db)
    assert r.returncode == 0 and "pageblock maps: 200" in r.stdout, r.stderr


def test_a_crafted_map_cannot_make_the_report_allocate_without_bound(tmp_path):
    """300 rows of 16 Mi pageblocks each in one map: refused as a second
    node 0 Normal (and, were they different zones, by the pageblocks cap)."""
    db = str(tmp_path / "evil.db")
    record_with_maps(db, maps=((1, 10),))
    with closing(sqlite3.connect(db)) as c:
        t, rid = c.execute("SELECT time, run_id FROM pagemap LIMIT 1").fetchone()
        c.executemany("INSERT INTO pagemap (run_id, time, node, zone, page_size, "
                      "pageblock_order, first_block, runs) VALUES (?, ?, ?, ?, 4096, 9, 0, ?)",
                      [(rid, t, 0, "Normal", json.dumps([1, 1 << 24]))] * 300)
        c.commit()
    r = run_mfd("report", db)
    assert r.returncode == 1 and "a second node 0 zone Normal" in r.stderr, r
    with closing(sqlite3.connect(db)) as c:
        c.execute("UPDATE pagemap SET zone = 'Z' || id WHERE id > 2")
        c.commit()
    r = run_mfd("report", db)
    assert r.returncode == 1 and "more than 16777216 pageblocks" in r.stderr, r
