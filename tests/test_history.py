"""Recording (--record, --retain): real SQLite files, real kill -9, real read-only and full
file systems."""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import struct
import subprocess
import time
from contextlib import closing

import pytest

import synth
from conftest import ROOT, mfd_argv, needs_root, run_mfd
from mfd.errors import MfdError
from mfd.derive import Frame
from mfd.durations import format_duration, parse_duration, parse_time
from mfd.model import Events, ExtfragResult, Filter, Sample
from mfd.recording import APPLICATION_ID, SCHEMA_VERSION, History, HistoryError
from mfd.sinks.recorder import Recorder

PGDAT = 0xFFFF8881_2345_6000


def _events(i):
    return Events(1.0, results=(ExtfragResult(events=i),))


def _check(path):
    with closing(sqlite3.connect(path)) as c:
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def _zones(obj):
    """{(node, zone): zone dict} of one mfd --json object."""
    return {(n["node"], z["zone"]): z for n in obj["nodes"] for z in n["zones"]}


def _one_line(stderr):
    return stderr.strip() and "\n" not in stderr.strip() and "Traceback" not in stderr


# -- units ---------------------------------------------------------------------


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200),
                                          ("7d", 604800), ("1w", 604800), ("1h30m", 5400),
                                          ("0.5s", 0.5), ("1.5H", 5400)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-5m", "5x", "m", "1h 30m", "abc"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_parse_time_forms():
    end = 1_700_000_000.0
    assert parse_time("-15m", end) == end - 900
    assert parse_time("@1700000000") == end
    t = time.mktime((2024, 5, 1, 12, 30, 0, 0, 0, -1))
    assert parse_time("2024-05-01 12:30") == t == parse_time("2024-05-01T12:30:00")
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday")


def test_format_duration():
    assert [format_duration(s) for s in (4.5, 100, 3725, 90000)] == \
        ["4.5s", "1m40s", "1h02m05s", "1d01h00m"]


# -- what a recording holds ----------------------------------------------------


def test_schema_is_versioned_and_queryable(tmp_path):
    db = str(tmp_path / "r.db")
    synth.record(db, 3, nr_free=synth.halves(3), events=synth.event_counts)
    with closing(sqlite3.connect(db)) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert c.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert dict(c.execute("SELECT key, value FROM meta"))["schema"] == str(SCHEMA_VERSION)
        # the per-order view: sample 0 of zone Normal is FRAGMENTED
        rows = c.execute("SELECT \"order\", nr_free, extfrag_index, unusable_index FROM "
                         "zone_order WHERE zone = 'Normal' AND sample_id = 1 ORDER BY 1").fetchall()
        assert rows[0] == (0, 4000, -1.0, 0.0) and rows[5] == (5, 0, 0.969, 1.0)
        events = json.loads(c.execute("SELECT events FROM sample WHERE seq = 0").fetchone()[0])
        assert events == synth.event_counts(0).to_json()


# The zone_order view of schema 1, as mfd 0.1.0 created it.
V1_VIEW = """CREATE VIEW zone_order AS
    SELECT s.time AS time, z.sample_id AS sample_id, z.node AS node, z.zone AS zone,
           CAST(o.key AS INTEGER) AS "order", o.value AS nr_free,
           json_extract(z.extfrag, '$[' || o.key || ']') / 1000.0 AS extfrag_index,
           json_extract(z.unusable, '$[' || o.key || ']') / 1000.0 AS unusable_index
    FROM zone AS z JOIN sample AS s ON s.id = z.sample_id, json_each(z.nr_free) AS o"""


def _as_schema_1(db):
    with closing(sqlite3.connect(db)) as c:
        c.executescript("DROP VIEW zone_order; DROP TABLE pagemap;" + V1_VIEW + ";"
                        "UPDATE meta SET value = '1' WHERE key = 'schema';"
                        "PRAGMA user_version = 1;")


def test_empty_zones_have_no_index_in_the_view(tmp_path):
    db = str(tmp_path / "r.db")
    synth.record(db, 2)
    with closing(sqlite3.connect(db)) as c:
        empty = c.execute("SELECT DISTINCT populated, extfrag_index, unusable_index FROM "
                          "zone_order WHERE zone IN ('Movable', 'Device')").fetchall()
        worst = c.execute("SELECT zone FROM zone_order WHERE \"order\" = 9 "
                          "ORDER BY unusable_index DESC LIMIT 1").fetchone()[0]
    assert empty == [(0, None, None)]
    assert worst not in ("Movable", "Device")


def test_schema_1_recordings_are_read_and_upgraded(tmp_path):
    db = str(tmp_path / "old.db")
    synth.record(db, 3, nr_free=synth.halves(3), events=synth.event_counts)
    _as_schema_1(db)
    with History(db) as h:
        assert h.version == 1 and len(list(h.samples())) == 3
    r = run_mfd("report", db)
    assert r.returncode == 0 and "3 samples" in r.stdout and "(mfd schema 1)" in r.stdout
    synth.record(db, 2, start=1_800_000_000.0)          # recording to it upgrades it
    with closing(sqlite3.connect(db)) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert dict(c.execute("SELECT key, value FROM meta"))["schema"] == "3"
        assert c.execute("SELECT count(*) FROM pagemap").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM zone_order WHERE populated = 0 "
                         "AND unusable_index IS NOT NULL").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM sample").fetchone()[0] == 5
    with History(db) as h:
        assert [r.run.id for r in h.samples()] == [1, 1, 1, 2, 2]


def test_reader_gives_back_the_samples_written(tmp_path):
    db = str(tmp_path / "r.db")
    walk = synth.random_walk(7)
    written = [Sample(synth.snapshot(1e9 + i, walk, nodes=2), 1.0, i, events=_events(i))
               for i in range(20)]
    rec = Recorder(db, interval=1.0, host="h", kernel="k")
    for s in written:
        rec.emit(Frame(s))
    rec.close()
    with History(db) as h:
        back = [r.sample() for r in h.samples()]
        assert h.runs[1].host == "h" and h.runs[1].kernel == "k"
    assert back == written          # Sample equality ignores pgdat, which is never stored
    with History(db) as h:          # filters keep the samples, narrow the zones
        recs = list(h.samples(since=1e9 + 5, until=1e9 + 9, flt=Filter(1, "dma32")))
    assert [r.seq for r in recs] == [5, 6, 7, 8, 9]
    assert {(z.node, z.zone) for r in recs for z in r.zones} == {(1, "DMA32")}
    assert all(r.events == _events(r.seq) for r in recs)


def test_second_run_appends(tmp_path):
    db = str(tmp_path / "r.db")
    synth.record(db, 5)
    synth.record(db, 4, start=1_800_000_000.0)
    with History(db) as h:
        assert sorted(h.runs) == [1, 2]
        assert [r.run.id for r in h.samples()] == [1] * 5 + [2] * 4


def test_kernel_address_is_never_written(tmp_path):
    db = str(tmp_path / "r.db")
    rec = Recorder(db, interval=1.0)
    for i in range(3):
        rec.emit(Frame(Sample(synth.snapshot(i, synth.random_walk(), source="bpf", pgdat=PGDAT), 1, i)))
    rec.close()
    _assert_no_address(db, [PGDAT])


def _assert_no_address(db, addresses):
    with closing(sqlite3.connect(db)) as c:
        dump = "\n".join(c.iterdump())
    raw = b"".join(open(p, "rb").read() for p in (db, db + "-wal") if os.path.exists(p))
    for a in addresses:
        for text in ("%d" % a, "%x" % a, "%#x" % a):
            assert text not in dump and text.encode() not in raw
        assert struct.pack("<Q", a) not in raw and struct.pack(">Q", a) not in raw
    assert "pgdat\"" not in dump and "pgdat," not in dump.split("pgdat_path")[0]


@needs_root
def test_kernel_address_from_bpf_is_never_written(tmp_path, bpf_collector):
    snap = bpf_collector.snapshot()
    addresses = [n.pgdat for n in snap.nodes if n.pgdat]
    assert addresses, "the eBPF walker reported no pgdat address"
    db = str(tmp_path / "r.db")
    rec = Recorder(db, interval=1.0)
    rec.emit(Frame(Sample(snap, 1.0, 0)))
    rec.close()
    _assert_no_address(db, addresses)
    out = run_mfd("report", db, "--json", "-").stdout + run_mfd("report", db, "--csv", "-").stdout
    for a in addresses:
        assert "%x" % a not in out and str(a) not in out


def test_retain_drops_old_samples_and_bounds_the_file(tmp_path):
    db = str(tmp_path / "r.db")
    rec = Recorder(db, interval=1.0, retain=100)
    walk = synth.random_walk()
    sizes = {}
    for i in range(3000):
        rec.emit(Frame(Sample(synth.snapshot(float(i), walk), 1.0, i)))
        if i in (999, 2999):
            rec.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            sizes[i] = os.path.getsize(db)
    rec.close()
    with History(db) as h:
        first, last, count = h.bounds()
    assert (first, last, count) == (2899.0, 2999.0, 101)
    assert sizes[2999] <= sizes[999] * 1.1, sizes      # freed pages are reused
    _check(db)


# -- the command line --------------------------------------------------------------


def _source():
    return [] if ROOT else ["--source", "procfs"]


def test_retain_needs_record():
    r = run_mfd("--retain", "1h", "--count", "1", *_source())
    assert r.returncode == 2 and "--retain needs --record" in r.stderr
    r = run_mfd("--record", "x.db", "--retain", "soon")
    assert r.returncode == 2 and "not a duration" in r.stderr


@needs_root
def test_bpf_recording_equals_what_was_printed(tmp_path):
    db = str(tmp_path / "bpf.db")
    r = run_mfd("--json", "--count", "3", "-d", "0.2", "--record", db)
    assert r.returncode == 0, r.stderr
    printed = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(printed) == 3 and printed[0]["source"] == "bpf"
    with History(db) as h:
        recs = list(h.samples())
    assert len(recs) == 3
    for obj, rec in zip(printed, recs):
        assert round(rec.time, 6) == obj["time"]
        assert (rec.run.host, rec.run.kernel, rec.run.source, rec.run.pgdat_path) == \
            (obj["host"], obj["kernel"], obj["source"], obj["pgdat_path"])
        zones = _zones(obj)
        assert {(z.node, z.zone) for z in rec.zones} == set(zones)
        for z in rec.zones:
            p = zones[(z.node, z.zone)]
            assert list(z.nr_free) == p["nr_free"]
            assert [u / 1000 for u in z.unusable] == p["unusable_index"]
            assert [e / 1000 for e in z.extfrag] == p["extfrag_index"]
            assert (z.managed, z.present, z.spanned, z.start_pfn, z.free_pages) == \
                (p["managed"], p["present"], p["spanned"], p["start_pfn"], p["free_pages"])
        assert [n[0] for n in rec.nodes] == [n["node"] for n in obj["nodes"]]
    # the JSON export is the printed object plus seq, interval, run, events
    # (less notes: what the recording run said on stderr is not in the file)
    exported = [json.loads(line) for line in
                run_mfd("report", db, "--json", "-").stdout.splitlines()]
    for obj, exp in zip(printed, exported):
        assert "notes" not in exp
        assert {k: exp[k] for k in obj if k != "notes"} == {k: v for k, v in obj.items()
                                                            if k != "notes"}
    _check(db)


@needs_root
def test_bpf_recording_equals_the_printed_table(tmp_path):
    db = str(tmp_path / "bpf.db")
    r = run_mfd("--count", "1", "--record", db, "-c", "Normal")
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()[2:]]
    printed = [int(row[-6]) for row in rows if len(row) >= 7]  # NR_FREE column
    with History(db) as h:
        (rec,) = list(h.samples(flt=Filter(zone="Normal")))
    assert list(rec.zones[0].nr_free) == printed


def test_kill_9_keeps_every_committed_sample(tmp_path):
    """A sample is printed only after it is committed (the recorder is the first sink):
    whatever was printed before kill -9 must be in the file, intact."""
    db = str(tmp_path / "k.db")
    rng = random.Random(4)
    total = 0
    for attempt in range(8):
        p = subprocess.Popen(mfd_argv("--source", "procfs", "-d", "0.002", "--json",
                                      "--record", db), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        want = rng.randrange(5, 60)
        printed = [json.loads(p.stdout.readline()) for _ in range(want)]
        time.sleep(rng.random() * 0.05)         # land anywhere in the loop
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=20)
        p.stdout.close()
        p.stderr.close()
        _check(db)
        with History(db) as h:
            recs = [r for r in h.samples() if r.run.id == attempt + 1]
        assert len(recs) >= want, f"attempt {attempt}: printed {want}, file has {len(recs)}"
        for obj, rec in zip(printed, recs):
            assert round(rec.time, 6) == obj["time"]
            zones = _zones(obj)
            assert all(list(z.nr_free) == zones[(z.node, z.zone)]["nr_free"]
                       for z in rec.zones)
        total += len(recs)
    with History(db) as h:
        assert h.bounds()[2] == total


def _mount_tmpfs(path, options):
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path], check=True)


@pytest.fixture
def tmpfs(tmp_path):
    if not ROOT:
        pytest.skip("needs root to mount a tmpfs")
    mounted = []

    def mount(name, options):
        path = str(tmp_path / name)
        _mount_tmpfs(path, options)
        mounted.append(path)
        return path
    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", path], check=False)


def test_read_only_file_system_exits_1_before_monitoring(tmpfs):
    ro = tmpfs("ro", "size=1m,ro")
    db = os.path.join(ro, "x.db")
    r = run_mfd("--source", "procfs", "--count", "1", "--record", db)
    assert r.returncode == 1
    assert _one_line(r.stderr) and "read-only" in r.stderr and db in r.stderr
    assert r.stdout == "" and os.listdir(ro) == []


def test_recording_on_a_read_only_mount_can_be_reported(tmp_path, tmpfs):
    src = str(tmp_path / "r.db")
    synth.record(src, 10)
    ro = tmpfs("ro2", "size=4m")
    with open(src, "rb") as f, open(os.path.join(ro, "r.db"), "wb") as g:
        g.write(f.read())
    subprocess.run(["mount", "-o", "remount,ro", ro], check=True)
    r = run_mfd("report", os.path.join(ro, "r.db"))
    assert r.returncode == 0, r.stderr
    assert "10 samples" in r.stdout
    r = run_mfd("--source", "procfs", "--count", "1", "--record", os.path.join(ro, "r.db"))
    assert r.returncode == 1 and "read-only" in r.stderr


@needs_root
def test_directory_without_write_permission():
    import pathlib
    import shutil
    import tempfile
    top = pathlib.Path(tempfile.mkdtemp(prefix="mfd-ro-", dir="/tmp"))   # others may enter
    folder = top / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    top.chmod(0o755)
    try:
        _record_as_nobody(folder)
    finally:
        shutil.rmtree(top)


def _record_as_nobody(folder):
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
                       + mfd_argv("--source", "procfs", "--count", "1", "--record",
                                  str(folder / "x.db")),
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 1 and _one_line(r.stderr) and "permission denied" in r.stderr
    assert os.listdir(folder) == []


def test_full_disk_stops_recording_keeps_monitoring(tmpfs):
    full = tmpfs("full", "size=192k")
    db = os.path.join(full, "x.db")
    r = run_mfd("--source", "procfs", "--count", "300", "-d", "0.001", "--json",
                "--record", db, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 300                 # monitoring went on
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "stopped: no space left on the device" in lines[0]
    kept = int(lines[0].split("; ")[1].split()[0])
    assert 0 < kept < 300
    _check(db)
    with History(db) as h:
        recs = list(h.samples())
    assert len(recs) == kept
    printed = [json.loads(line) for line in r.stdout.splitlines()[:kept]]
    assert [round(x.time, 6) for x in recs] == [p["time"] for p in printed]
    assert run_mfd("report", db).returncode == 0


def test_newer_schema_and_foreign_files_are_refused(tmp_path):
    newer = str(tmp_path / "newer.db")
    synth.record(newer, 2)
    with closing(sqlite3.connect(newer)) as c:
        c.execute("PRAGMA user_version = 99")
    other = str(tmp_path / "other.db")
    with closing(sqlite3.connect(other)) as c:
        c.execute("CREATE TABLE t (x)")
    text = tmp_path / "text.db"
    text.write_text("hello, not a database\n" * 100)
    for path, msg in ((newer, "newer mfd (schema 99"), (other, "another program"),
                      (str(text), "not an SQLite file")):
        for args in (["--source", "procfs", "--count", "1", "--record", path],
                     ["report", path]):
            r = run_mfd(*args)
            assert r.returncode == 1, (args, r.stderr)
            assert _one_line(r.stderr) and msg in r.stderr, (args, r.stderr)
    with pytest.raises(HistoryError, match="upgrade mfd"):
        Recorder(newer, interval=1)
    assert issubclass(HistoryError, MfdError)
