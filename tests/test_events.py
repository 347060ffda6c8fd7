"""Event groups without the kernel: group names, BTF-derived names, /proc
parsing, histograms and the text tables.  (test_events_live.py loads the
programs and makes real events.)"""
from __future__ import annotations

import os

import pytest

from conftest import run_mfd
from mfd.errors import UsageError
from mfd.kernel import facts as kernel
from mfd.model import Events
from mfd.sources.events import GROUPS, parse_groups
from mfd.sources.events.maps import log2_hist
from mfd.sinks.events_text import events_text, log2_hist_text, merge_buckets
from mfd.sources.vmstat import VmstatDelta, read_vmstat


@pytest.mark.parametrize("text,groups", [
    ("extfrag", ("extfrag",)),
    ("compaction,extfrag", ("extfrag", "compaction")),
    (" Alloc , compaction ", ("alloc", "compaction")),
    ("all", GROUPS),
    ("extfrag,all", GROUPS),
])
def test_parse_groups(text, groups):
    assert parse_groups(text) == groups


@pytest.mark.parametrize("text", ["bogus", "extfrag,nope", "", ","])
def test_parse_groups_rejects_with_the_valid_list(text):
    with pytest.raises(UsageError) as e:
        parse_groups(text)
    assert "extfrag, alloc, compaction, all" in str(e.value)


@pytest.mark.parametrize("args,msg", [
    (["--events", "bogus"], "unknown event group 'bogus' (valid: extfrag, alloc, compaction, all)"),
    (["--events", ""], "no event group given"),
    (["--alloc-probe", "magic"], "invalid choice"),
    (["-s", "--prometheus", "9100"], "-s does not go with --prometheus"),
])
def test_cli_bad_event_options_exit_2_in_one_line(args, msg):
    r = run_mfd(*args)
    assert r.returncode == 2
    assert msg in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0


def test_cli_help_lists_events():
    r = run_mfd("-h")
    assert "--events GROUPS" in r.stdout and "sudo mfd -s" in r.stdout


class FakeBTF:
    def __init__(self, enums):
        self.enums = enums

    def enum_values(self, name):
        return dict(self.enums[name])


# enum migratetype as 6.18 has it without CONFIG_CMA, and as 5.x had it with CMA.
MIGRATETYPE_618 = {"MIGRATE_UNMOVABLE": 0, "MIGRATE_MOVABLE": 1, "MIGRATE_RECLAIMABLE": 2,
                   "MIGRATE_PCPTYPES": 3, "MIGRATE_HIGHATOMIC": 3, "__MIGRATE_TYPE_END": 3,
                   "MIGRATE_ISOLATE": 4, "MIGRATE_TYPES": 5}
MIGRATETYPE_CMA = {"MIGRATE_UNMOVABLE": 0, "MIGRATE_MOVABLE": 1, "MIGRATE_RECLAIMABLE": 2,
                   "MIGRATE_PCPTYPES": 3, "MIGRATE_HIGHATOMIC": 3, "MIGRATE_CMA": 4,
                   "MIGRATE_ISOLATE": 5, "MIGRATE_TYPES": 6}


def test_migratetype_names_skip_aliases():
    names = kernel.migratetype_names(FakeBTF({"migratetype": MIGRATETYPE_618}))
    assert names == {0: "Unmovable", 1: "Movable", 2: "Reclaimable", 3: "HighAtomic",
                     4: "Isolate"}
    names = kernel.migratetype_names(FakeBTF({"migratetype": MIGRATETYPE_CMA}))
    assert names[4] == "CMA" and names[5] == "Isolate"


def test_migratetype_names_from_this_kernels_btf():
    from mfd.kernel.btf import BTF
    btf = BTF.load()
    names = kernel.migratetype_names(btf)
    values = btf.enum_values("migratetype")
    assert names[values["MIGRATE_UNMOVABLE"]] == "Unmovable"
    assert names[values["MIGRATE_MOVABLE"]] == "Movable"
    assert names[values["MIGRATE_HIGHATOMIC"]] == "HighAtomic"
    assert "Pcptypes" not in names.values() and "Types" not in names.values()


def test_compact_result_names_spelled_like_the_tracepoint():
    names = kernel.compact_result_names(FakeBTF({"compact_result": {
        "COMPACT_NOT_SUITABLE_ZONE": 0, "COMPACT_SKIPPED": 1, "COMPACT_PARTIAL_SKIPPED": 6,
        "COMPACT_SUCCESS": 8}}))
    assert names == {0: "not_suitable_zone", 1: "skipped", 6: "partial_skipped", 8: "success"}


def test_tracepoint_fields(tmp_path):
    d = tmp_path / "events" / "compaction" / "mm_compaction_kcompactd_wake"
    d.mkdir(parents=True)
    (d / "format").write_text(
        "name: mm_compaction_kcompactd_wake\nformat:\n"
        "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\n"
        "\tfield:int nid;\toffset:8;\tsize:4;\tsigned:1;\n"
        "\tfield:enum zone_type classzone_idx;\toffset:16;\tsize:4;\tsigned:0;\n"
        "\tfield:char comm[16];\toffset:20;\tsize:16;\tsigned:0;\n\nprint fmt: \"\"\n")
    fields = kernel.tracepoint_fields("compaction", "mm_compaction_kcompactd_wake",
                                      tracefs=str(tmp_path))
    assert fields == {"common_type", "nid", "classzone_idx", "comm"}
    assert kernel.tracepoint_fields("nope", "nope", tracefs=str(tmp_path)) == set()


def test_alloc_entry_prefers_the_newest_name(tmp_path):
    ks = tmp_path / "kallsyms"
    ks.write_text("ffffffff81000000 T __alloc_pages\nffffffff81000100 T __alloc_pages_noprof\n"
                  "ffffffff81000200 t __alloc_pages_bulk\n")
    assert kernel.alloc_entry(str(ks)) == "__alloc_pages_noprof"
    ks.write_text("ffffffff81000000 T __alloc_pages_nodemask\n")
    assert kernel.alloc_entry(str(ks)) == "__alloc_pages_nodemask"
    ks.write_text("ffffffff81000000 T something_else\n")
    assert kernel.alloc_entry(str(ks)) is None


def test_vmstat_delta(tmp_path):
    f = tmp_path / "vmstat"
    f.write_text("nr_free_pages 10\ncompact_stall 5\ncompact_fail 1\n")
    d = VmstatDelta(("compact_",), path=str(f))
    f.write_text("nr_free_pages 99\ncompact_stall 8\ncompact_fail 1\ncompact_new 4\n")
    assert d.delta() == {"compact_stall": 3, "compact_fail": 0, "compact_new": 0}
    assert d.delta() == {"compact_stall": 0, "compact_fail": 0, "compact_new": 0}
    assert read_vmstat(("nr_",), path=str(f)) == {"nr_free_pages": 99}


def test_vmstat_of_this_kernel_has_compaction_counters():
    have = read_vmstat(("compact_",))
    if not have:
        pytest.skip("kernel without CONFIG_COMPACTION")
    assert {"compact_stall", "compact_fail", "compact_success"} <= set(have)


def test_log2_hist_buckets_like_bcc():
    counts = [0] * 40
    counts[0], counts[1], counts[4], counts[11] = 2, 3, 5, 1
    assert [b.to_json() for b in log2_hist(counts)] == [{"lo": 0, "hi": 0, "count": 2}, {"lo": 1, "hi": 1, "count": 3},
                                 {"lo": 8, "hi": 15, "count": 5},
                                 {"lo": 1024, "hi": 2047, "count": 1}]
    text = log2_hist_text(log2_hist(counts), "usecs")
    lines = text.splitlines()
    assert lines[0].split() == ["usecs", ":", "count", "distribution"]
    assert len(lines) == 1 + 12          # slots 0..11, the empty ones in between too
    assert "8 -> 15" in lines[5] and "*" * 40 in lines[5]
    assert merge_buckets([log2_hist(counts), log2_hist(counts)])[2].count == 10


SAMPLE_EVENTS = {
    "interval": 2.0,
    "filter": {"node": None, "zone": "Movable"},
    "extfrag": {"events": 3, "change_ownership": 2, "cumulative": 10, "rate": 1.5, "dropped": 0,
                "by_process": [
                    {"pid": 4242, "comm": "page-tables", "alloc_order": 0, "fallback_order": 10,
                     "alloc_migratetype": "Unmovable", "fallback_migratetype": "Movable",
                     "events": 3, "change_ownership": 2, "cumulative": 10, "rate": 1.5}]},
    "alloc": {"probe": "kprobe", "function": "__alloc_pages", "allocs": 100, "failures": 1,
              "rate": 50.0, "dropped": 0,
              "by_order": [{"order": 0, "allocs": 100, "failures": 1, "rate": 50.0,
                            "latency_ns": 30000, "avg_ns": 297,
                            "hist_ns": [{"lo": 256, "hi": 511, "count": 101}]}],
              "failures_by_process": [{"pid": 1, "comm": "init", "order": 0, "failures": 1}]},
    "compaction": {"begin": 0, "end": 0, "by_zone": [], "direct_stalls": 1, "kcompactd_wake": 0,
                   "kcompactd": [], "unmatched_end": 0, "dropped": 0,
                   "direct": [{"pid": 77, "comm": "thp", "order": 9, "count": 1,
                               "stall_ns": 2500000,
                               "hist_us": [{"lo": 2048, "hi": 4095, "count": 1}]}],
                   "vmstat": {"compact_stall": 1, "compact_fail": 0}},
}


def test_events_text_tables():
    text = events_text(Events.from_json(SAMPLE_EVENTS))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    head = next(line for line in lines if line.lstrip().startswith("PID  "))
    assert head.split() == ["PID", "COMM", "ALLOC", "FALLBACK", "EVENTS", "STEALS", "TOTAL",
                            "RATE/s"]
    row = next(line for line in lines if line.lstrip().startswith("4242"))
    assert row.split() == ["4242", "page-tables", "0", "Unmovable", "10", "Movable", "3", "2",
                           "10", "1.5"]
    assert "order 0 allocation latency" in text and "nsecs" in text
    assert "(no compaction run matches zone Movable)" in text
    assert "direct compaction runs" in text and "2048 -> 4095" in text
    assert "vmstat: compact_stall +1" in text and "compact_fail" not in text


def test_events_text_only_loaded_groups():
    only = {"interval": 1.0, "extfrag": dict(SAMPLE_EVENTS["extfrag"], by_process=[], events=0)}
    text = events_text(Events.from_json(only))
    assert text.startswith("extfrag: 0 fallbacks") and "alloc" not in text


def test_nothing_runs_at_import():
    import subprocess
    import sys
    code = ("import sys, mfd.sources.events, mfd.sources.events.alloc, mfd.sinks.events_text, "
            "mfd.sources.vmstat, mfd.cli, workloads; assert 'bcc' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=os.path.dirname(__file__))
    assert r.returncode == 0, r.stderr
