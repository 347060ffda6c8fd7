"""What a recording says happened, for ``mfd doctor FILE.db``: one pass over
its samples keeping only what the findings need.  Pure: it takes records
(mfd.recording.SampleRecord) and returns numbers.

The work and memory are bounded whatever the file holds: per zone and node a
few numbers, and the event rows merged per (process, cgroup, order) key, at
most MAX_KEYS keys per table (more fold into one "others" row).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from ..compaction import fragmentation_score_node
from ..model import Filter
from ..model.events import CompactionResult, DirectCompaction, Events, ExtfragResult, ExtfragRow
from .can import blocks_now

MAX_KEYS = 4096


@dataclass
class Stretch:
    """Time a condition held: in all, and its longest unbroken stretch (a
    sample's interval counts when the condition holds at its end)."""

    total: float = 0.0
    longest: float = 0.0
    longest_from: Optional[float] = None    # when the longest stretch began
    longest_to: Optional[float] = None
    now: bool = False                       # held at the last sample
    since: Optional[float] = None           # when the stretch holding now began
    _run: float = 0.0

    def cut(self) -> None:
        """A gap in the recording (a new run): no stretch spans it."""
        self.now, self.since, self._run = False, None, 0.0

    def add(self, held: bool, t: float, interval: float) -> None:
        self.now = held
        if not held:
            self.since, self._run = None, 0.0
            return
        self.total += interval
        if self.since is None:
            self.since = t - interval
        self._run += interval
        if self._run > self.longest:
            self.longest, self.longest_from, self.longest_to = self._run, self.since, t


@dataclass
class ZoneStory:
    node: int
    zone: str
    present: int = 0
    no_block: Stretch = field(default_factory=Stretch)   # no free block >= the THP order


@dataclass
class NodeStory:
    node: int
    first: Optional[int] = None          # fragmentation_score_node at the first sample
    last: int = 0
    max: int = 0
    above: Stretch = field(default_factory=Stretch)      # score > kcompactd's high watermark
    since_score: Optional[int] = None    # the score when the stretch holding now began


@dataclass
class Story:
    first: Optional[float] = None
    last: Optional[float] = None
    samples: int = 0
    seconds: float = 0.0
    zones: Dict[Tuple[int, str], ZoneStory] = field(default_factory=dict)
    nodes: Dict[int, NodeStory] = field(default_factory=dict)
    event_samples: int = 0
    event_seconds: float = 0.0
    vmstat: Dict[str, int] = field(default_factory=dict)   # compaction's compact_* changes
    # first and last sample time at which compaction failed / a pageblock was taken over
    fail_span: Optional[Tuple[float, float]] = None
    takeover_span: Optional[Tuple[float, float]] = None
    direct: Dict[tuple, List[int]] = field(default_factory=dict)
    extfrag: Dict[tuple, List[int]] = field(default_factory=dict)

    def events(self) -> Optional[Events]:
        """The recording's event rows merged over its span, as one interval of
        event_seconds (None when no sample carried events)."""
        if not self.event_samples:
            return None
        direct = tuple(DirectCompaction(pid=k[0], comm=k[1], cgroup=k[2], order=k[3],
                                        count=v[0], stall_ns=v[1])
                       for k, v in self.direct.items())
        rows = tuple(ExtfragRow(pid=k[0], comm=k[1], cgroup=k[2], alloc_order=k[3],
                                fallback_order=k[4], alloc_migratetype=k[5],
                                fallback_migratetype=k[6], events=v[0], change_ownership=v[1])
                     for k, v in self.extfrag.items())
        return Events(self.event_seconds, results=(
            ExtfragResult(events=sum(r.events for r in rows),
                          change_ownership=sum(r.change_ownership for r in rows),
                          by_process=rows),
            CompactionResult(direct=direct, direct_stalls=sum(d.count for d in direct),
                             vmstat=dict(self.vmstat))))


def _widen(span: Optional[Tuple[float, float]], t: float) -> Tuple[float, float]:
    return (t, t) if span is None else (span[0], t)


def _merge(table: Dict[tuple, List[int]], key: tuple, values: Tuple[int, ...]) -> None:
    """Add ``values`` to ``key``'s row; past MAX_KEYS keys, to one "others" row."""
    if key not in table and len(table) >= MAX_KEYS:
        # the orders stay (pollution is a matter of fallback_order); strings go
        key = (-1, "(others)") + tuple("" if isinstance(k, str) else k for k in key[2:])
    acc = table.setdefault(key, [0] * len(values))
    for i, v in enumerate(values):
        acc[i] += v


def tell(records: Iterable, hpage_order: int, high_wmark: int,
         flt: Filter = Filter()) -> Story:
    """Fold a recording's samples (unfiltered: a node's score weighs all its
    zones) into a Story; ``flt`` picks the zones and nodes it tells of.
    ``high_wmark``: kcompactd's high watermark for the node scores."""
    st = Story()
    run_id = None
    for rec in records:
        if rec.run.id != run_id:
            run_id = rec.run.id
            for stretch in [z.no_block for z in st.zones.values()] + \
                    [n.above for n in st.nodes.values()]:
                stretch.cut()
        if st.first is None:
            st.first = rec.time
        st.last, st.samples = rec.time, st.samples + 1
        st.seconds += rec.interval
        by_node: Dict[int, List[Tuple[int, Tuple[int, ...]]]] = {}
        for z in rec.zones:
            if not z.present:
                continue
            by_node.setdefault(z.node, []).append((z.present, z.nr_free))
            if not flt.wants(z.node, z.zone):
                continue
            zs = st.zones.get((z.node, z.zone))
            if zs is None:
                zs = st.zones[(z.node, z.zone)] = ZoneStory(z.node, z.zone)
            zs.present = z.present
            zs.no_block.add(blocks_now(z.nr_free, hpage_order) == 0, rec.time, rec.interval)
        for node, zones in by_node.items():
            if not flt.wants(node):
                continue
            score = fragmentation_score_node(zones, hpage_order)
            ns = st.nodes.get(node)
            if ns is None:
                ns = st.nodes[node] = NodeStory(node, first=score)
            ns.last, ns.max = score, max(ns.max, score)
            if score > high_wmark and not ns.above.now:
                ns.since_score = score
            ns.above.add(score > high_wmark, rec.time, rec.interval)
        if rec.events is not None:
            _events(st, rec)
    return st


def _events(st: Story, rec) -> None:
    st.event_samples += 1
    st.event_seconds += rec.interval
    comp = rec.events.get("compaction")
    if comp is not None:
        for k, v in comp.vmstat.items():
            st.vmstat[k] = st.vmstat.get(k, 0) + v
        if comp.vmstat.get("compact_fail", 0) > 0:
            st.fail_span = _widen(st.fail_span, rec.time)
        for d in comp.direct:
            _merge(st.direct, (d.pid, d.comm, d.cgroup, d.order), (d.count, d.stall_ns))
    ext = rec.events.get("extfrag")
    if ext is not None:
        for r in ext.by_process:
            _merge(st.extfrag, (r.pid, r.comm, r.cgroup, r.alloc_order, r.fallback_order,
                                r.alloc_migratetype, r.fallback_migratetype),
                   (r.events, r.change_ownership))
            if r.change_ownership:
                st.takeover_span = _widen(st.takeover_span, rec.time)

