"""Folding a recording into a report: per-zone summaries over the span and
time columns for the charts, in one pass over the samples."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Set, Tuple

from ..model import Filter
from ..recording import History, SampleRecord

MAX_COLUMNS = 1200      # time columns in a chart: more would not show on a page anyway
# Zones drawn in the charts: a row of panels each.  A recording may hold 1024
# nodes x 8 zones; the charts then show the worst zones by the summary's
# ranking (every zone stays in the tables), so the picture and the memory of
# the time columns stay bounded whatever the file holds.
MAX_CHART_ZONES = 12


@dataclass
class ZoneSummary:
    """What one zone did over the selected span (indices x1000, times in seconds)."""

    node: int
    zone: str
    zone_idx: int
    nr_orders: int
    samples: int = 0
    seconds: float = 0.0                 # sum of the sample intervals
    managed: int = 0                     # at the last sample
    free_min: Optional[int] = None
    free_max: int = 0
    free_sum: int = 0
    unusable_sum: List[int] = field(default_factory=list)
    unusable_max: List[int] = field(default_factory=list)
    above: List[float] = field(default_factory=list)     # seconds with unusable > threshold
    no_block: List[float] = field(default_factory=list)  # seconds with no free block >= order
    nr_free_min: List[Optional[int]] = field(default_factory=list)
    nr_free_max: List[int] = field(default_factory=list)

    def __post_init__(self):
        n, self.nr_orders = self.nr_orders, 0
        self.grow(n)

    def grow(self, n: int) -> None:
        """Room for ``n`` orders (a later run, on another kernel, may have more)."""
        more = n - self.nr_orders
        if more > 0:
            self.unusable_sum += [0] * more
            self.unusable_max += [0] * more
            self.above += [0.0] * more
            self.no_block += [0.0] * more
            self.nr_free_min += [None] * more
            self.nr_free_max += [0] * more
            self.nr_orders = n

    @property
    def label(self) -> str:
        return f"node {self.node} {self.zone}"

    def unusable_mean(self, order: int) -> float:
        return self.unusable_sum[order] / self.samples if self.samples else 0.0


@dataclass
class Column:
    """One time column of the charts: consecutive samples folded together."""

    start: float
    end: float
    seconds: float = 0.0                          # sum of the sample intervals
    events: Dict[str, float] = field(default_factory=dict)
    # per zone key: [samples, unusable sums per order, nr_free sums per order]
    zones: Dict[Tuple[int, int], list] = field(default_factory=dict)


@dataclass
class Report:
    path: str
    version: int
    runs: list
    first: float
    last: float
    samples: int
    threshold: int                  # x1000
    order: int
    zones: Dict[Tuple[int, int], ZoneSummary]
    events: Dict[str, float]
    event_samples: int              # samples that carried event counts
    event_seconds: float            # their intervals added up
    columns: List[Column]
    # The zones the charts draw (the worst MAX_CHART_ZONES when there are more).
    charted: List[Tuple[int, int]] = field(default_factory=list)


def rank_zones(zones, order: int) -> List[ZoneSummary]:
    """Zones worst first: most time with unusable_index above the threshold at
    ``order``, then the highest mean index there."""
    return sorted(zones, key=lambda s: (
        -(s.above[order] if order < s.nr_orders else 0),
        -(s.unusable_mean(order) if order < s.nr_orders else 0), s.node, s.zone_idx))


class Accumulator:
    """Folds a stream of :class:`~mfd.history.SampleRecord` into a :class:`Report`."""

    def __init__(self, expected: int, threshold: int, order: int, charts: bool,
                 chart_keys: Optional[Set[Tuple[int, int]]] = None):
        self.per_column = max(1, -(-expected // MAX_COLUMNS))
        self.threshold, self.order, self.charts = threshold, order, charts
        # None: chart every zone until there are more than MAX_CHART_ZONES
        # (then ``overflow``, and build() makes a second pass for the worst).
        self.chart_keys = chart_keys
        self.overflow = False
        self.zones: Dict[Tuple[int, int], ZoneSummary] = {}
        self.events: Dict[str, float] = {}
        self.event_samples = 0
        self.event_seconds = 0.0
        self.columns: List[Column] = []
        self.runs: Dict[int, object] = {}
        self.count = 0
        self.first = self.last = None

    def add(self, rec: SampleRecord) -> None:
        if self.first is None:
            self.first = rec.time
        self.last = rec.time
        self.runs[rec.run.id] = rec.run
        flat = rec.events.counts() if rec.events is not None else {}
        if rec.events is not None:
            self.event_samples += 1
            self.event_seconds += rec.interval
            for k, v in flat.items():
                self.events[k] = self.events.get(k, 0) + v
        col = None
        if self.charts:
            if self.count % self.per_column == 0:
                self.columns.append(Column(rec.time, rec.time))
            col = self.columns[-1]
            col.end = rec.time
            col.seconds += rec.interval
            for k, v in flat.items():
                col.events[k] = col.events.get(k, 0) + v
        self.count += 1
        thr = self.threshold
        for z in rec.zones:
            if not z.present:
                continue
            key = (z.node, z.zone_idx)
            s = self.zones.get(key)
            if s is None:
                s = self.zones[key] = ZoneSummary(z.node, z.zone, z.zone_idx, len(z.nr_free))
                if col is not None and self.chart_keys is None \
                        and len(self.zones) > MAX_CHART_ZONES:
                    self._drop_columns()
                    col = None
            elif len(z.nr_free) > s.nr_orders:
                s.grow(len(z.nr_free))
            s.samples += 1
            s.seconds += rec.interval
            s.managed = z.managed
            s.free_min = z.free_pages if s.free_min is None else min(s.free_min, z.free_pages)
            s.free_max = max(s.free_max, z.free_pages)
            s.free_sum += z.free_pages
            for o, (u, e, n) in enumerate(zip(z.unusable, z.extfrag, z.nr_free)):
                s.unusable_sum[o] += u
                if u > s.unusable_max[o]:
                    s.unusable_max[o] = u
                if u > thr:
                    s.above[o] += rec.interval
                if e != -1000:
                    s.no_block[o] += rec.interval
                lo = s.nr_free_min[o]
                s.nr_free_min[o] = n if lo is None or n < lo else lo
                if n > s.nr_free_max[o]:
                    s.nr_free_max[o] = n
            if col is not None and (self.chart_keys is None or key in self.chart_keys):
                acc = col.zones.get(key)
                if acc is None:
                    acc = col.zones[key] = [0, [0] * len(z.nr_free), [0] * len(z.nr_free)]
                elif len(acc[1]) < len(z.nr_free):
                    more = [0] * (len(z.nr_free) - len(acc[1]))
                    acc[1], acc[2] = acc[1] + more, acc[2] + more
                acc[0] += 1
                acc[1] = [a + b for a, b in zip(acc[1], z.unusable)] + acc[1][len(z.unusable):]
                acc[2] = [a + b for a, b in zip(acc[2], z.nr_free)] + acc[2][len(z.nr_free):]

    def _drop_columns(self) -> None:
        """More zones than the charts show: forget the time columns (build() reads
        the samples again for the worst zones only)."""
        self.overflow, self.charts, self.columns = True, False, []


def build(hist: History, since: Optional[float] = None, until: Optional[float] = None,
          flt: Filter = Filter(), threshold: float = 0.5, order: int = 4, charts: bool = False,
          sink: Optional[Callable[[SampleRecord], None]] = None) -> Report:
    """Read the selected samples once: the summary, chart columns (``charts``), and
    every record handed to ``sink`` too (the exports).  With more zones than
    MAX_CHART_ZONES the charts' columns come from a second pass over the worst."""
    expected = hist.count(since, until)
    acc = Accumulator(expected, round(threshold * 1000), order, charts)
    for rec in hist.samples(since, until, flt):
        acc.add(rec)
        if sink is not None:
            sink(rec)
    zones = dict(sorted(acc.zones.items()))
    columns = acc.columns
    charted = [k for k in zones] if charts else []
    if charts and acc.overflow:
        worst = rank_zones(zones.values(), order)[:MAX_CHART_ZONES]
        charted = sorted((s.node, s.zone_idx) for s in worst)
        again = Accumulator(expected, acc.threshold, order, True, chart_keys=set(charted))
        for rec in hist.samples(since, until, flt):
            again.add(rec)
        columns = again.columns
    return Report(hist.path, hist.version, [acc.runs[k] for k in sorted(acc.runs)],
                  acc.first, acc.last, acc.count, acc.threshold, order, zones, acc.events,
                  acc.event_samples, acc.event_seconds, columns, charted)
