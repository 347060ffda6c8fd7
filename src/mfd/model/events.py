"""Typed results of the event groups: what one interval of events produced.

Each group (``mfd.sources.events``) returns one of the result classes below;
:class:`Events` holds them for one sample.  Every class is a frozen record
whose JSON form (``to_json``; the shape of ``--json``'s ``events`` and of a
recording's ``sample.events``) keeps the field order, and which reads itself
back from that JSON (``from_json``), checking the type of every field.

``counts()`` gives the numbers that are counts of the interval, by dotted
name (``extfrag.events``, ``compaction.vmstat.compact_stall``): what reports
total, charts plot and the live view shows.  Rates, running totals and the
interval itself are not counts.  A new group is a new result class here,
listed in :data:`RESULT_TYPES`; reports, charts, recordings and the live
view take it from there.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, Dict, Iterator, Mapping, Optional, Tuple, Type, TypeVar

from .filter import Filter

T = TypeVar("T", bound="Record")


class Record:
    """JSON in and out for a frozen dataclass of numbers, strings, nested
    records (tuples of them, named in NESTED) and flat dicts of numbers."""

    NESTED: ClassVar[Mapping[str, type]] = {}
    # Optional fields left out of the JSON when None (e.g. latency without kprobes).
    OMIT_NONE: ClassVar[Tuple[str, ...]] = ()

    def to_json(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None and f.name in self.OMIT_NONE:
                continue
            if isinstance(v, tuple):
                v = [x.to_json() if isinstance(x, Record) else x for x in v]
            elif isinstance(v, dict):
                v = dict(v)
            out[f.name] = v
        return out

    @classmethod
    def from_json(cls: Type[T], obj) -> T:
        """The record a ``to_json`` dict describes; missing fields take their
        defaults, unknown ones are ignored.  ValueError for a wrong type."""
        if not isinstance(obj, dict):
            raise ValueError(f"{cls.__name__}: not an object")
        kw = {}
        for f in dataclasses.fields(cls):
            if f.name not in obj:
                continue
            v = obj[f.name]
            sub = cls.NESTED.get(f.name)
            if sub is not None and not (v is None and str(f.type).startswith("Optional[")):
                if not isinstance(v, list):
                    raise ValueError(f"{cls.__name__}.{f.name}: not a list")
                v = tuple(sub.from_json(x) for x in v)
            else:
                v = _checked(cls, f, v)
            kw[f.name] = v
        return cls(**kw)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# The field annotations a Record may use, each with its JSON type check.
_CHECKS = {
    "int": _is_number, "float": _is_number,
    "str": lambda x: isinstance(x, str),
    "Dict[str, int]": lambda x: isinstance(x, dict) and all(
        isinstance(k, str) and _is_number(n) for k, n in x.items()),
}


def field_kind(f: dataclasses.Field) -> Tuple[str, bool]:
    """(annotation without Optional[...], whether None is allowed) of a field."""
    kind = str(f.type)
    if kind.startswith("Optional["):
        return kind[len("Optional["):-1], True
    return kind, False


def _checked(cls, f: dataclasses.Field, v):
    """``v`` if it has the type the field's annotation names, else ValueError."""
    kind, optional = field_kind(f)
    check = _CHECKS.get(kind)
    if check is None:  # a field type from_json cannot check: a defect, not bad input
        raise TypeError(f"{cls.__name__}.{f.name}: annotation {kind!r} has no JSON "
                        f"check (add one to _CHECKS)")
    if not ((v is None and optional) or check(v)):
        raise ValueError(f"{cls.__name__}.{f.name}: {type(v).__name__} where {kind} belongs")
    return v


@dataclass(frozen=True)
class HistBucket(Record):
    """One non-empty bucket of a log2 histogram: values lo .. hi."""

    lo: int = 0
    hi: int = 0
    count: int = 0


class GroupResult(Record):
    """What every event group's result offers besides its JSON."""

    NAME: ClassVar[str] = ""
    # Counts of the interval (dotted names below the group) ...
    COUNTS: ClassVar[Tuple[str, ...]] = ()
    # ... and those the live view shows first.
    HEADLINE: ClassVar[Tuple[str, ...]] = ()

    def counts(self) -> Dict[str, float]:
        return {f"{self.NAME}.{k}": getattr(self, k) for k in self.COUNTS}


@dataclass(frozen=True)
class ProcessRow(Record):
    """A row per process: its pid and comm (16 bytes of task->comm, any
    bytes a process chose: escape it before it reaches a terminal)."""

    pid: int = 0
    comm: str = ""


@dataclass(frozen=True)
class ExtfragRow(ProcessRow):
    alloc_order: int = 0
    fallback_order: int = 0
    alloc_migratetype: str = ""
    fallback_migratetype: str = ""
    events: int = 0
    change_ownership: int = 0
    cumulative: int = 0          # this key's events since mfd started
    rate: float = 0.0
    cgroup: str = "/"            # the task's cgroup v2 path ("/" on v1-only hosts)


@dataclass(frozen=True)
class ExtfragZone(Record):
    """The distinct pageblocks of one zone that the interval's fallbacks
    polluted (change_ownership 0 below pageblock order: the block kept its
    type) and converted (change_ownership 1)."""

    node: int = 0
    zone: str = ""
    polluted: int = 0
    converted: int = 0


@dataclass(frozen=True)
class ExtfragResult(GroupResult):
    """kmem:mm_page_alloc_extfrag: fallback steals, per process."""

    NAME: ClassVar[str] = "extfrag"
    COUNTS: ClassVar[Tuple[str, ...]] = ("events", "change_ownership", "dropped")
    HEADLINE: ClassVar[Tuple[str, ...]] = ("events", "change_ownership")
    NESTED: ClassVar[Mapping[str, type]] = {"by_process": ExtfragRow, "pageblocks": ExtfragZone}

    events: int = 0
    change_ownership: int = 0    # steals that took over the whole pageblock
    cumulative: int = 0          # events since mfd started
    rate: float = 0.0            # events per second
    dropped: int = 0             # not counted: the map was full
    by_process: Tuple[ExtfragRow, ...] = ()
    # per zone (with any), pageblocks polluted and converted in the interval
    pageblocks: Tuple[ExtfragZone, ...] = ()
    pageblocks_dropped: int = 0  # events not bucketed: more distinct pageblocks than the map holds


@dataclass(frozen=True)
class AllocOrder(Record):
    OMIT_NONE: ClassVar[Tuple[str, ...]] = ("latency_ns", "avg_ns", "hist_ns")
    NESTED: ClassVar[Mapping[str, type]] = {"hist_ns": HistBucket}

    order: int = 0
    allocs: int = 0
    failures: int = 0
    rate: float = 0.0
    # kprobe path only (None, and left out of the JSON, with the tracepoint)
    latency_ns: Optional[int] = None
    avg_ns: Optional[int] = None
    hist_ns: Optional[Tuple[HistBucket, ...]] = None


@dataclass(frozen=True)
class AllocFailure(ProcessRow):
    order: int = 0
    failures: int = 0


@dataclass(frozen=True)
class AllocResult(GroupResult):
    """The buddy allocator's entry: allocations and failures per order."""

    NAME: ClassVar[str] = "alloc"
    COUNTS: ClassVar[Tuple[str, ...]] = ("allocs", "failures", "dropped")
    HEADLINE: ClassVar[Tuple[str, ...]] = ("failures",)
    NESTED: ClassVar[Mapping[str, type]] = {"by_order": AllocOrder,
                                            "failures_by_process": AllocFailure}

    probe: str = "tracepoint"    # "kprobe" (with latency) or "tracepoint"
    function: Optional[str] = None   # the kprobed function
    allocs: int = 0
    failures: int = 0
    rate: float = 0.0
    dropped: int = 0
    by_order: Tuple[AllocOrder, ...] = ()
    failures_by_process: Tuple[AllocFailure, ...] = ()


@dataclass(frozen=True)
class CompactionZone(Record):
    node: Optional[int] = None   # None: a zone start pfn no snapshot knows
    zone: str = ""
    begin: int = 0
    runs: int = 0                # runs that ended
    duration_ns: int = 0
    max_ns: int = 0
    status: Dict[str, int] = field(default_factory=dict)   # end status -> runs
    # the runs made inside direct compaction (allocating tasks stalled on this zone)
    direct_runs: int = 0
    direct_ns: int = 0


@dataclass(frozen=True)
class DirectCompaction(ProcessRow):
    NESTED: ClassVar[Mapping[str, type]] = {"hist_us": HistBucket}

    order: int = 0
    count: int = 0
    stall_ns: int = 0
    hist_us: Tuple[HistBucket, ...] = ()
    cgroup: str = "/"            # the task's cgroup v2 path ("/" on v1-only hosts)


@dataclass(frozen=True)
class KcompactdWake(Record):
    node: int = 0
    order: int = 0
    highest_zone: str = ""
    wakes: int = 0


@dataclass(frozen=True)
class CompactionResult(GroupResult):
    """Compaction runs per zone, direct compaction per process, kcompactd
    wake-ups and the change of /proc/vmstat's compact_* counters."""

    NAME: ClassVar[str] = "compaction"
    COUNTS: ClassVar[Tuple[str, ...]] = ("begin", "end", "direct_stalls", "kcompactd_wake",
                                         "unmatched_end", "dropped")
    HEADLINE: ClassVar[Tuple[str, ...]] = ("begin", "vmstat.compact_stall")
    NESTED: ClassVar[Mapping[str, type]] = {"by_zone": CompactionZone,
                                            "direct": DirectCompaction,
                                            "kcompactd": KcompactdWake}

    begin: int = 0
    end: int = 0
    by_zone: Tuple[CompactionZone, ...] = ()
    direct: Tuple[DirectCompaction, ...] = ()
    direct_stalls: int = 0
    kcompactd_wake: int = 0
    kcompactd: Tuple[KcompactdWake, ...] = ()
    unmatched_end: int = 0
    dropped: int = 0
    vmstat: Dict[str, int] = field(default_factory=dict)   # compact_* counter -> change

    def counts(self) -> Dict[str, float]:
        out = super().counts()
        out.update((f"{self.NAME}.vmstat.{k}", v) for k, v in self.vmstat.items())
        return out


# Every event group's result, in the order groups are loaded and shown.
RESULT_TYPES: Tuple[Type[GroupResult], ...] = (ExtfragResult, AllocResult, CompactionResult)
GROUPS: Tuple[str, ...] = tuple(t.NAME for t in RESULT_TYPES)
_BY_NAME = {t.NAME: t for t in RESULT_TYPES}


@dataclass(frozen=True)
class Events:
    """One interval of every loaded event group."""

    interval: float                          # seconds the counts cover
    filter: Filter = Filter()                # -i/-c, applied to rows with a node or zone
    results: Tuple[GroupResult, ...] = ()    # in GROUPS order

    def get(self, name: str) -> Optional[GroupResult]:
        for r in self.results:
            if r.NAME == name:
                return r
        return None

    def __iter__(self) -> Iterator[GroupResult]:
        return iter(self.results)

    def counts(self) -> Dict[str, float]:
        out: Dict[str, float] = {}
        for r in self.results:
            out.update(r.counts())
        return out

    def headline(self) -> Tuple[str, ...]:
        """Dotted names of the counts to show first."""
        return tuple(f"{r.NAME}.{k}" for r in self.results for k in r.HEADLINE)

    def to_json(self) -> dict:
        out: dict = {"interval": round(self.interval, 6), "filter": self.filter.to_json()}
        for r in self.results:
            out[r.NAME] = r.to_json()
        return out

    @classmethod
    def from_json(cls, obj) -> "Events":
        """Events from ``to_json``'s dict (a recording); ValueError if malformed.
        Groups this mfd does not know are skipped."""
        if not isinstance(obj, dict):
            raise ValueError("events: not an object")
        interval = obj.get("interval", 0.0)
        if not _is_number(interval):
            raise ValueError("events.interval: not a number")
        results = tuple(_BY_NAME[name].from_json(obj[name]) for name in GROUPS if name in obj)
        return cls(float(interval), Filter.from_json(obj.get("filter")), results)
