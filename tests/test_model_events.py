"""The contract of the typed event results: the JSON shape of --json and of
recordings (the README's keys), the way back from JSON, and the counts that
reports, charts and the live view read."""
from __future__ import annotations

import json

import pytest

from mfd.model import (GROUPS, RESULT_TYPES, AllocFailure, AllocOrder, AllocResult,
                       CompactionResult, CompactionZone, DirectCompaction, Events, ExtfragResult,
                       ExtfragRow, Filter, HistBucket, KcompactdWake)
from mfd.model.events import ExtfragZone
from mfd.sources.events import GROUP_TYPES

# The keys mfd has written since schema 1, in order (README: Events, --json).
SHAPES = {
    ExtfragResult: ["events", "change_ownership", "cumulative", "rate", "dropped", "by_process",
                    "pageblocks", "pageblocks_dropped"],
    ExtfragZone: ["node", "zone", "polluted", "converted"],
    ExtfragRow: ["pid", "comm", "alloc_order", "fallback_order", "alloc_migratetype",
                 "fallback_migratetype", "events", "change_ownership", "cumulative", "rate",
                 "cgroup"],
    AllocResult: ["probe", "function", "allocs", "failures", "rate", "dropped", "by_order",
                  "failures_by_process"],
    AllocOrder: ["order", "allocs", "failures", "rate"],
    AllocFailure: ["pid", "comm", "order", "failures"],
    CompactionResult: ["begin", "end", "by_zone", "direct", "direct_stalls", "kcompactd_wake",
                       "kcompactd", "unmatched_end", "dropped", "vmstat"],
    CompactionZone: ["node", "zone", "begin", "runs", "duration_ns", "max_ns", "status",
                     "direct_runs", "direct_ns"],
    DirectCompaction: ["pid", "comm", "order", "count", "stall_ns", "hist_us", "cgroup"],
    KcompactdWake: ["node", "order", "highest_zone", "wakes"],
    HistBucket: ["lo", "hi", "count"],
}

FULL = Events(2.0, Filter(0, "Normal"), (
    ExtfragResult(3, 2, 10, 1.5, 0, (ExtfragRow(4242, "page-tables", 0, 10, "Unmovable",
                                                "Movable", 3, 2, 10, 1.5),)),
    AllocResult("kprobe", "__alloc_pages", 100, 1, 50.0, 0,
                (AllocOrder(0, 100, 1, 50.0, 30000, 297, (HistBucket(256, 511, 101),)),),
                (AllocFailure(1, "init", 0, 1),)),
    CompactionResult(1, 1, (CompactionZone(0, "Normal", 1, 1, 5000, 5000, {"success": 1}),),
                     (DirectCompaction(77, "thp", 9, 1, 2500000, (HistBucket(2048, 4095, 1),)),),
                     1, 2, (KcompactdWake(0, 9, "Normal", 2),), 0, 0,
                     {"compact_stall": 1, "compact_fail": 0})))


def test_every_group_has_a_result_type_and_a_source():
    assert GROUPS == ("extfrag", "alloc", "compaction")
    assert [t.NAME for t in RESULT_TYPES] == list(GROUPS)
    assert sorted(GROUP_TYPES) == sorted(GROUPS)


@pytest.mark.parametrize("cls", sorted(SHAPES, key=lambda c: c.__name__))
def test_json_keys_are_the_documented_ones(cls):
    assert list(cls().to_json()) == SHAPES[cls]


def test_latency_fields_only_on_the_kprobe_path():
    assert list(AllocOrder(0, 1, 0, 1.0).to_json()) == SHAPES[AllocOrder]
    assert list(AllocOrder(0, 1, 0, 1.0, 5, 5, ()).to_json()) == \
        SHAPES[AllocOrder] + ["latency_ns", "avg_ns", "hist_ns"]


def test_events_round_trip_through_json():
    text = json.dumps(FULL.to_json())
    back = Events.from_json(json.loads(text))
    assert back == FULL
    doc = json.loads(text)
    assert list(doc) == ["interval", "filter", "extfrag", "alloc", "compaction"]
    assert doc["filter"] == {"node": 0, "zone": "Normal"}


def test_filter_is_always_there():
    assert Events(1.0).to_json()["filter"] == {"node": None, "zone": None}


def test_counts_are_the_interval_counts_only():
    counts = FULL.counts()
    assert counts == {
        "extfrag.events": 3, "extfrag.change_ownership": 2, "extfrag.dropped": 0,
        "alloc.allocs": 100, "alloc.failures": 1, "alloc.dropped": 0,
        "compaction.begin": 1, "compaction.end": 1, "compaction.direct_stalls": 1,
        "compaction.kcompactd_wake": 2, "compaction.unmatched_end": 0, "compaction.dropped": 0,
        "compaction.vmstat.compact_stall": 1, "compaction.vmstat.compact_fail": 0}
    assert not any(k.endswith((".rate", ".cumulative", "interval")) for k in counts)
    assert set(FULL.headline()) <= set(counts)


@pytest.mark.parametrize("bad", [
    {"interval": "1"},
    {"interval": 1, "extfrag": {"events": "3"}},
    {"interval": 1, "extfrag": {"by_process": {}}},
    {"interval": 1, "extfrag": {"by_process": [{"comm": 5}]}},
    {"interval": 1, "compaction": {"vmstat": {"compact_stall": "x"}}},
    {"interval": 1, "alloc": {"events": True, "allocs": True}},
    [],
])
def test_malformed_json_is_refused(bad):
    with pytest.raises(ValueError):
        Events.from_json(bad)


def test_unknown_groups_and_keys_are_skipped():
    ev = Events.from_json({"interval": 1, "future": {"x": 1},
                           "extfrag": {"events": 1, "new_key": 2}})
    assert [r.NAME for r in ev] == ["extfrag"] and ev.get("extfrag").events == 1


@pytest.mark.parametrize("cls", sorted(SHAPES, key=lambda c: c.__name__))
def test_every_field_can_be_read_back_and_checked(cls):
    """A field type from_json cannot check would pass bad recordings through (or,
    before _CHECKS, fail with a KeyError): every field is nested or checkable."""
    from dataclasses import fields

    from mfd.model.events import _CHECKS, field_kind
    for f in fields(cls):
        if f.name in cls.NESTED:
            continue
        kind, _ = field_kind(f)
        assert kind in _CHECKS, f"{cls.__name__}.{f.name}: {kind}"


def test_an_uncheckable_field_type_is_a_type_error_not_bad_input():
    from dataclasses import dataclass

    from mfd.model.events import Record

    @dataclass(frozen=True)
    class Odd(Record):
        when: complex = 0j

    with pytest.raises(TypeError, match="Odd.when.*_CHECKS"):
        Odd.from_json({"when": 1})


def test_rows_recorded_before_cgroups_read_as_the_root():
    old = {"pid": 1, "comm": "x", "alloc_order": 0, "fallback_order": 3,
           "alloc_migratetype": "Unmovable", "fallback_migratetype": "Movable", "events": 2,
           "change_ownership": 1, "cumulative": 2, "rate": 1.0}
    assert ExtfragRow.from_json(old).cgroup == "/"
    assert DirectCompaction.from_json({"pid": 1, "comm": "x", "order": 9, "count": 1,
                                       "stall_ns": 5, "hist_us": []}).cgroup == "/"
