"""``mfd doctor FILE.db``: findings from a recording.

A recording with a known story, written by the real Recorder: one cgroup
takes over pageblocks, the zone Normal loses its last THP-order block, then
direct compaction stalls and fails.  The findings name each part, its numbers
and its times, in severity order.  And a recording made live on this machine,
with the page-table workload in a cgroup of its own, names that cgroup."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

import synth
from conftest import mfd_argv, needs_root, remove_cgroup, run_mfd
from mfd.diagnose.findings import Thresholds, story_findings
from mfd.diagnose.story import MAX_KEYS, Stretch, _merge, tell
from mfd.model import CompactionResult, Events, ExtfragResult, ExtfragRow
from mfd.model.events import DirectCompaction
from mfd.recording import History

START = 1_700_000_000.0
N = 20
# Normal (zone 2) keeps order-9 blocks until sample 7; from sample 8 to the end it has none.
LOST_AT = 8
HAS_BLOCKS = [50 * (synth.NR_ORDERS - o) for o in range(synth.NR_ORDERS)]


def _nr_free(i, t, node, zone):
    if zone == 2 and i >= LOST_AT:
        return synth.FRAGMENTED
    return HAS_BLOCKS


def _story_events(i):
    """Samples 0-9: /batch's stealer takes over pageblocks (3 of 5 fallbacks
    each sample, below pageblock order: the other 2 pollute), /web's nginx
    steals once without taking over.  Samples 10-19: java in /web stalls in
    direct compaction 4 times a sample, 3 of them failing."""
    if i < 10:
        ext = ExtfragResult(events=6, change_ownership=3, by_process=(
            ExtfragRow(pid=100, comm="stealer", cgroup="/batch", alloc_order=0,
                       fallback_order=3, alloc_migratetype="Unmovable",
                       fallback_migratetype="Movable", events=5, change_ownership=3),
            ExtfragRow(pid=200, comm="nginx", cgroup="/web", alloc_order=0, fallback_order=9,
                       alloc_migratetype="Unmovable", fallback_migratetype="Movable",
                       events=1, change_ownership=0)))
        comp = CompactionResult(vmstat={"compact_stall": 0, "compact_fail": 0})
    else:
        ext = ExtfragResult()
        comp = CompactionResult(direct=(DirectCompaction(pid=300, comm="java", cgroup="/web",
                                                         order=9, count=4,
                                                         stall_ns=2_000_000),),
                                direct_stalls=4,
                                vmstat={"compact_stall": 4, "compact_fail": 3})
    return Events(1.0, results=(ext, comp))


@pytest.fixture(scope="module")
def story_db(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("story") / "story.db")
    synth.record(path, N, start=START, nr_free=_nr_free, events=_story_events)
    return path


def _tell(path, high=90, **kw):
    with History(path) as h:
        return tell(h.samples(), 9, high, **kw)


def test_stretch_keeps_the_total_and_the_longest_run():
    s = Stretch()
    for t, held in ((1, True), (2, False), (3, True), (4, True), (5, True), (6, False)):
        s.add(held, t, 1.0)
    assert (s.total, s.longest, s.longest_from, s.longest_to, s.now) == (4.0, 3.0, 2, 5, False)
    s.add(True, 7, 1.0)
    assert s.now and s.total == 5.0 and s.longest == 3.0


def test_merged_rows_are_bounded():
    table = {}
    for pid in range(MAX_KEYS + 50):
        _merge(table, (pid, "x", "/", 0), (1, 2))
    assert len(table) == MAX_KEYS + 1
    assert table[(-1, "(others)", "", 0)] == [50, 100]


def test_the_story_of_a_recording(story_db):
    st = _tell(story_db)
    assert st.samples == N and st.event_samples == N
    normal = st.zones[(0, "Normal")]
    # the interval ending at sample LOST_AT is the first without a block
    assert normal.no_block.total == N - LOST_AT and normal.no_block.now
    assert normal.no_block.longest_from == START + LOST_AT - 1
    assert normal.no_block.longest_to == START + N - 1
    assert st.zones[(0, "DMA32")].no_block.total == 0
    assert st.vmstat == {"compact_stall": 40, "compact_fail": 30}
    assert st.takeover_span == (START, START + 9)
    assert st.fail_span == (START + 10, START + N - 1)


def test_the_findings_of_a_known_story_in_order(story_db):
    found = story_findings(_tell(story_db), 9, 4096, 20, 90)
    assert [(f.severity, f.code, f.node, f.zone) for f in found] == [
        ("critical", "compaction_failing", None, None),
        ("warning", "no_hpage_block", 0, "Normal"),
        ("warning", "direct_compaction", None, None),
        ("info", "pageblock_takeover", None, None),
        ("info", "pageblock_pollution", None, None)]
    text = {f.code: f.text for f in found}
    assert "30 of 40 stalls failed" in text["compaction_failing"]
    assert "0.75 >= 0.50" in text["compaction_failing"]
    # the failures happened in the second half, the takeovers in the first
    t = time.strftime("%H:%M:%S", time.localtime(START + 10))
    assert t in text["compaction_failing"]
    assert f"for {N - LOST_AT}.0s of {N}.0s" in text["no_hpage_block"]
    assert "none at the end" in text["no_hpage_block"]
    assert "java (pid 300) 40" in text["direct_compaction"]
    assert "by cgroup: /web 40" in text["direct_compaction"]
    assert "30 fallbacks" in text["pageblock_takeover"]
    assert "stealer (pid 100) 30" in text["pageblock_takeover"]
    assert "by cgroup: /batch 30" in text["pageblock_takeover"]
    assert "takeovers from" in text["pageblock_takeover"]
    assert time.strftime("%H:%M:%S", time.localtime(START + 9)) in text["pageblock_takeover"]
    # pollution: stealer's 2 a sample that kept the block's type; nginx's
    # fallback was of pageblock order, which cannot pollute
    assert "20 fallbacks" in text["pageblock_pollution"]
    assert "nginx" not in text["pageblock_pollution"]


def test_thresholds_move_the_findings(story_db):
    st = _tell(story_db)
    codes = [f.code for f in story_findings(st, 9, 4096, 20, 90, Thresholds(fail_ratio=0.8))]
    assert "compaction_failing" not in codes
    # a zone under --min-zone-mib is not expected to hold a huge block
    codes = [f.code for f in story_findings(st, 9, 4096, 20, 90,
                                            Thresholds(min_zone_mib=8192))]
    assert "no_hpage_block" not in codes


def test_score_above_the_watermark_for_how_long(tmp_path):
    path = str(tmp_path / "high.db")
    # every zone without a THP-order block from sample 5: the node scores 99
    synth.record(path, 10, start=START,
                 nr_free=lambda i, t, node, zone: synth.FRAGMENTED if i >= 5 else HAS_BLOCKS)
    st = _tell(path, high=90)
    assert st.nodes[0].max == 99 and st.nodes[0].above.total == 5.0
    found = story_findings(st, 9, 4096, 20, 90)
    high = [f for f in found if f.code == "score_above_high"]
    assert len(high) == 1 and high[0].severity == "warning"
    assert "99 -> 99" in high[0].text and "not falling" in high[0].text
    assert "vm.compaction_proactiveness 20" in high[0].text


def _high_story(tmp_path, name, nr_free, n=20, **kw):
    path = str(tmp_path / name)
    synth.record(path, n, start=START, nr_free=nr_free, **kw)
    st = _tell(path, high=90)
    return [f for f in story_findings(st, 9, 4096, 20, 90) if f.code == "score_above_high"]


def test_score_that_fell_below_the_watermark_is_not_stuck(tmp_path):
    # 99 for 10 samples, then every zone whole again: score 0
    (f,) = _high_story(tmp_path, "fell.db", lambda i, t, node, zone:
                       synth.FRAGMENTED if i < 10 else synth.WHOLE)
    assert f.severity == "info" and "below it at the end (score 0)" in f.text
    assert "not falling" not in f.text


def test_score_above_to_the_end_but_falling(tmp_path):
    # Normal stays fragmented; DMA32 has fewer order-9 blocks over time, so
    # the node's score rises, then falls, staying above 90
    def counts(i, t, node, zone):
        if zone in (0, 2):
            return synth.FRAGMENTED
        return synth.FRAGMENTED if i < 5 else [4000] + [0] * 8 + [1, 0]
    found = _high_story(tmp_path, "falling.db", counts)
    assert found and found[0].text.count("->") == 1
    first, last = (int(x) for x in re.search(r"score (\d+) -> (\d+)", found[0].text).groups())
    assert last < first and found[0].severity == "info" and "falling" in found[0].text


def test_no_stretch_spans_the_gap_between_runs(tmp_path):
    path = str(tmp_path / "gap.db")
    synth.record(path, 5, start=START, nr_free=lambda i, t, node, zone: synth.FRAGMENTED)
    synth.record(path, 5, start=START + 3600, nr_free=lambda i, t, node, zone: synth.FRAGMENTED)
    st = _tell(path)
    nb = st.zones[(0, "Normal")].no_block
    assert nb.total == 10.0 and nb.longest == 5.0
    assert nb.longest_to - nb.longest_from == 5.0
    # proactiveness 0: kcompactd does no proactive work, nothing to say about it
    assert not [f for f in story_findings(st, 9, 4096, 0, 100) if f.code == "score_above_high"]


def test_cli_doctor_of_a_recording(story_db):
    r = run_mfd("doctor", story_db)
    assert r.returncode == 1, r.stderr          # a critical finding, --fail-on critical
    lines = r.stdout.splitlines()
    assert lines[0].startswith("CRITICAL direct compaction failing")
    assert lines[1].startswith("WARNING  no free order-9")
    r = run_mfd("doctor", story_db, "--json", "--fail-on", "never")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert [f["code"] for f in obj["findings"]][:2] == ["compaction_failing", "no_hpage_block"]
    assert obj["samples"] == N and obj["proactiveness"] == 20 and obj["high_wmark"] == 90
    # -c: findings about other zones go; machine-wide ones stay
    r = run_mfd("doctor", story_db, "-c", "dma32", "--json")
    codes = [f["code"] for f in json.loads(r.stdout)["findings"]]
    assert "no_hpage_block" not in codes and "compaction_failing" in codes
    # --since: only the second half, where the zone has no block all along
    r = run_mfd("doctor", story_db, "--since", "-5s", "--json")
    nb = [f for f in json.loads(r.stdout)["findings"] if f["code"] == "no_hpage_block"]
    assert "for 6.0s of 6.0s" in nb[0]["text"], nb
    # the THP order of another machine
    r = run_mfd("doctor", story_db, "--thp-order", "10", "--json")
    assert any("order-10" in f["text"] for f in json.loads(r.stdout)["findings"])


@pytest.mark.parametrize("args, message", [
    (["--window", "3"], "--window does nothing with a recording"),
    (["-z"], "-z does nothing with a recording"),
    (["--no-events"], "--no-events does nothing with a recording"),
    (["-c", "Bogus"], "no zone 'Bogus'"),
    (["-i", "7"], "no node 7"),
    (["--since", "soon"], "soon"),
])
def test_cli_doctor_recording_usage_errors(story_db, args, message):
    r = run_mfd("doctor", story_db, *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1


def test_cli_doctor_live_rejects_recording_options():
    for args in (["--since", "-1h"], ["--thp-order", "9"], ["--proactiveness", "20"]):
        r = run_mfd("doctor", *args)
        assert r.returncode == 2 and "needs a recording" in r.stderr, r.stderr


def test_cli_doctor_of_what_is_not_a_recording(tmp_path):
    bad = tmp_path / "not.db"
    bad.write_text("hello")
    r = run_mfd("doctor", str(bad))
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    r = run_mfd("doctor", str(tmp_path / "missing.db"))
    assert r.returncode == 1 and "no such recording" in r.stderr


@needs_root
def test_live_recording_names_the_cgroup_that_took_over_pageblocks(tmp_path):
    """mfd --events extfrag --record, the page-table workload in a child cgroup
    of the cgroup2 hierarchy: doctor FILE attributes the fallbacks to it."""
    from mfd.kernel.cgroups import cgroup2_mount
    from workloads import Child
    root = cgroup2_mount()
    if root is None:
        pytest.skip("no cgroup2 hierarchy mounted")
    name = f"mfd-doctor-{os.getpid()}"
    os.mkdir(os.path.join(root, name))
    db = str(tmp_path / "live.db")
    p = subprocess.Popen(mfd_argv("--events", "extfrag", "--record", db, "-d", "0.5", "-q"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(db) and time.monotonic() < deadline:
            time.sleep(0.1)

        def join():
            with open(os.path.join(root, name, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        for gib in (None, 800, 1600):
            Child("page-tables", *(["--gib", str(gib)] if gib else []), preexec=join).run()
            time.sleep(1.2)                     # two samples after the workload
            r = run_mfd("doctor", db, "--json", "--fail-on", "never")
            assert r.returncode == 0, r.stderr
            texts = [f["text"] for f in json.loads(r.stdout)["findings"]
                     if f["code"] in ("pageblock_takeover", "pageblock_pollution")]
            if texts:
                break
        else:
            pytest.skip("the page-table workload made no extfrag event")
    finally:
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
        remove_cgroup(os.path.join(root, name))
    assert p.returncode == 0, err
    assert any(f"by cgroup: /{name} " in t for t in texts), texts


def test_node_filter_keeps_machine_wide_findings(story_db):
    r = run_mfd("doctor", story_db, "-i", "0", "--json")
    assert r.returncode == 1, r.stderr          # compaction failing is machine-wide: it stays
    assert "compaction_failing" in [f["code"] for f in json.loads(r.stdout)["findings"]]


@pytest.mark.parametrize("args, message", [
    (["--thp-order", "15"], "has orders 0-10"),
    (["-c", "movable"], "no populated zone matches -c"),
    (["--since", ""], "not a time"),
    (["--window", "5"], "--window does nothing"),
])
def test_cli_doctor_recording_more_usage_errors(story_db, args, message):
    r = run_mfd("doctor", story_db, *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_others_row_keeps_the_fallback_order():
    table = {}
    for pid in range(MAX_KEYS + 10):
        _merge(table, (pid, "x", "/", 0, 10, "Unmovable", "Movable"), (1, 1))
    assert table[(-1, "(others)", "", 0, 10, "", "")] == [10, 10]


def test_crafted_negative_rows_are_one_error(tmp_path):
    path = str(tmp_path / "neg.db")
    bad = Events(1.0, results=(CompactionResult(direct=(DirectCompaction(
        pid=1, comm="x", count=-7, stall_ns=5),)),))
    synth.record(path, 2, events=lambda i: bad)
    r = run_mfd("doctor", path)
    assert r.returncode == 1 and "-7" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
