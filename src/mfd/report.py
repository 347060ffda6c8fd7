"""``mfd report FILE.db``: what a recording says, as a terminal summary, charts and exports.

The summary and the exports need only the standard library; the charts
(``--html``, ``--png``) need matplotlib (``pip install 'mfd[plot]'``), which
:mod:`mfd.plots` imports only when asked.  Samples are streamed from SQLite
and folded into at most :data:`MAX_COLUMNS` time columns as they go, so a
day of 1 s samples is read in one pass with bounded memory.
"""
from __future__ import annotations

import argparse
import csv
import html
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from .errors import MfdError, UsageError
from .fragindex import format_index
from .history import History, SampleRecord, format_duration, parse_time
from .render import View, snapshot_json, table

MAX_COLUMNS = 1200      # time columns in a chart: more would not show on a page anyway
PLOT_HINT = ("charts need matplotlib: pip install 'mfd[plot]' "
             "(or apt-get install python3-matplotlib / dnf install python3-matplotlib)")

EPILOG = """\
examples:
  mfd report frag.db                       summary: span, worst zones and orders, events
  mfd report frag.db --html frag.html      the same with charts, in one self-contained file
  mfd report frag.db --png frag.png -c Normal --since -1h    last hour, zone Normal only
  mfd report frag.db --csv - | head        one row per sample, zone and order
  mfd report frag.db --json out.jsonl      one object per sample, shaped like mfd --json

times (--since/--until): '2024-05-01 12:00[:SS]', 12:00 (today), @EPOCH, or -15m
(counted back from the last sample).  Times are local.
"""


# Numeric leaves of Sample.events that are not counts of the interval: its length,
# rates (already divided), totals since start, and the -i/-c filter.
NOT_COUNTS = frozenset({"interval", "rate", "cumulative", "filter"})


def flatten_events(events: Optional[dict], prefix: str = "") -> Dict[str, float]:
    """``{"extfrag": {"events": 3}}`` -> ``{"extfrag.events": 3}``: every count of the
    interval (numeric leaves, less :data:`NOT_COUNTS`; lists such as per-process
    tables are left out)."""
    out: Dict[str, float] = {}
    if not isinstance(events, dict):
        return out
    for key, value in events.items():
        if key in NOT_COUNTS:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_events(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
    return out


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
        n = self.nr_orders
        self.unusable_sum, self.unusable_max = [0] * n, [0] * n
        self.above, self.no_block = [0.0] * n, [0.0] * n
        self.nr_free_min, self.nr_free_max = [None] * n, [0] * n

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


class Accumulator:
    """Folds a stream of :class:`~mfd.history.SampleRecord` into a :class:`Report`."""

    def __init__(self, expected: int, threshold: int, order: int, charts: bool):
        self.per_column = max(1, -(-expected // MAX_COLUMNS))
        self.threshold, self.order, self.charts = threshold, order, charts
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
        flat = flatten_events(rec.events)
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
            if col is not None:
                acc = col.zones.get(key)
                if acc is None:
                    acc = col.zones[key] = [0, [0] * len(z.nr_free), [0] * len(z.nr_free)]
                acc[0] += 1
                acc[1] = [a + b for a, b in zip(acc[1], z.unusable)]
                acc[2] = [a + b for a, b in zip(acc[2], z.nr_free)]


def build(hist: History, since: Optional[float] = None, until: Optional[float] = None,
          node: Optional[int] = None, zone: Optional[str] = None, threshold: float = 0.5,
          order: int = 4, charts: bool = False,
          sink: Optional[callable] = None) -> Report:
    """Read the selected samples once: the summary, chart columns (``charts``), and
    every record handed to ``sink`` too (the exports)."""
    where, params = hist._where(since, until)
    expected = hist.conn.execute("SELECT count(*) FROM sample" + where, params).fetchone()[0]
    acc = Accumulator(expected, round(threshold * 1000), order, charts)
    for rec in hist.samples(since, until, node, zone):
        acc.add(rec)
        if sink is not None:
            sink(rec)
    return Report(hist.path, hist.version, [acc.runs[k] for k in sorted(acc.runs)],
                  acc.first, acc.last, acc.count, acc.threshold, order,
                  dict(sorted(acc.zones.items())), acc.events, acc.event_samples,
                  acc.event_seconds, acc.columns)


# -- the terminal summary -----------------------------------------------------


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _runs_line(rep: Report) -> str:
    hosts = sorted({(r.host, r.kernel) for r in rep.runs})
    sources = sorted({r.source + (f" (pgdat via {r.pgdat_path})" if r.pgdat_path else "")
                      for r in rep.runs})
    intervals = sorted({r.interval for r in rep.runs})
    return (f"{len(rep.runs)} run{'s' if len(rep.runs) != 1 else ''}: "
            + ", ".join(f"{h}, kernel {k}" for h, k in hosts) + "; "
            + ", ".join(sources) + "; every "
            + ", ".join(f"{i:g} s" for i in intervals))


def worst_zones(rep: Report) -> List[ZoneSummary]:
    o = rep.order
    return sorted(rep.zones.values(), key=lambda s: (
        -(s.above[o] if o < s.nr_orders else 0),
        -(s.unusable_mean(o) if o < s.nr_orders else 0), s.node, s.zone_idx))


def worst_orders(rep: Report, limit: int = 10) -> List[Tuple[ZoneSummary, int]]:
    """(zone, order) pairs, order >= 1, most time above the threshold first, then mean index."""
    pairs = [(s, o) for s in rep.zones.values() for o in range(1, s.nr_orders)]
    pairs.sort(key=lambda p: (-p[0].above[p[1]], -p[0].unusable_mean(p[1]),
                              p[0].node, p[0].zone_idx, p[1]))
    return pairs[:limit]


def _idx(v: float) -> str:
    return format_index(int(round(v)))


def zone_rows(rep: Report) -> Tuple[List[str], List[list]]:
    o, thr = rep.order, format_index(rep.threshold)
    headers = ["NODE", "ZONE", "MANAGED", "FREE_MIN", "FREE_MAX", f"MEAN@{o}", f"MAX@{o}",
               f">{thr}@{o}", "SHARE"]
    rows = []
    for s in worst_zones(rep):
        has = o < s.nr_orders
        rows.append([s.node, s.zone, s.managed, s.free_min, s.free_max,
                     _idx(s.unusable_mean(o)) if has else "-",
                     format_index(s.unusable_max[o]) if has else "-",
                     format_duration(s.above[o]) if has else "-",
                     _share(s.above[o], s.seconds) if has else "-"])
    return headers, rows


def order_rows(rep: Report, pairs) -> Tuple[List[str], List[list]]:
    thr = format_index(rep.threshold)
    headers = ["NODE", "ZONE", "ORDER", "NR_FREE_MIN", "NR_FREE_MAX", "MEAN", "MAX",
               f">{thr}", "NO_BLOCK"]
    rows = [[s.node, s.zone, o, s.nr_free_min[o], s.nr_free_max[o], _idx(s.unusable_mean(o)),
             format_index(s.unusable_max[o]), format_duration(s.above[o]),
             format_duration(s.no_block[o])] for s, o in pairs]
    return headers, rows


def _count(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.1f}"


def _rate(v: float) -> str:
    return f"{v:.0f}/s" if v >= 100 else f"{v:.3g}/s"


def event_rows(rep: Report, zeros: bool = False) -> List[list]:
    """[name, total, rate] of every event counter (``zeros``: those that stayed 0 too)."""
    span = rep.event_seconds
    return [[k, _count(v), _rate(v / span) if span else "-"]
            for k, v in sorted(rep.events.items()) if v or zeros]


def _indented(headers, rows) -> str:
    return "\n".join("  " + line for line in table(rows, headers).splitlines())


def summary_text(rep: Report) -> str:
    span = rep.last - rep.first
    thr = format_index(rep.threshold)
    out = [f"recording  {rep.path} (mfd schema {rep.version})",
           f"runs       {_runs_line(rep)}",
           f"span       {_stamp(rep.first)} .. {_stamp(rep.last)} ({format_duration(span)}), "
           f"{rep.samples} samples",
           "",
           f"zones, worst first: time with unusable_index > {thr} at order {rep.order}",
           _indented(*zone_rows(rep)),
           "",
           "worst orders (NO_BLOCK: time with no free block of that order or larger)",
           _indented(*order_rows(rep, worst_orders(rep))),
           ""]
    if rep.events:
        rows = event_rows(rep)
        width = max([5] + [len(r[0]) for r in rows])
        zero = len(rep.events) - len(rows)
        out.append(f"events: totals over {rep.event_samples} samples with events"
                   + (f" ({zero} other counters stayed 0)" if zero else ""))
        out += [f"  {name:<{width}}  {total:>12}  {rate:>10}" for name, total, rate in
                [("EVENT", "TOTAL", "RATE")] + rows]
        out.append("")
    else:
        out += ["events     none recorded (record with mfd -s/--events to add them)", ""]
    out.append("MANAGED, FREE_* in pages; NR_FREE_* in blocks; MEAN, MAX: unusable_index; "
               "unusable_index\nnever falls as the order rises: above the threshold at order "
               f"{rep.order} is above it at every higher order.")
    return "\n".join(out)


# -- exports --------------------------------------------------------------------

CSV_HEADER = ["time", "timestamp", "run", "host", "kernel", "source", "node", "zone", "order",
              "nr_free", "free_pages", "managed", "extfrag_index", "unusable_index"]


class Exports:
    """--csv and --json writers, fed one record at a time (``-`` is stdout)."""

    def __init__(self, csv_path: Optional[str], json_path: Optional[str], node, zone):
        self.view = View(node=node, zone=zone)
        self.files = []
        self.csv = self.json = None
        try:
            if csv_path:
                f = self._open(csv_path)
                self.csv = csv.writer(f, lineterminator="\n")
                self.csv.writerow(CSV_HEADER)
            if json_path:
                self.json = self._open(json_path)
        except OSError as e:
            self.close()
            raise MfdError(f"cannot write {e.filename}: {e.strerror}") from None

    def _open(self, path: str):
        if path == "-":
            return sys.stdout
        f = open(path, "w", encoding="utf-8", newline="")
        self.files.append(f)
        return f

    def __call__(self, rec: SampleRecord) -> None:
        try:
            if self.csv is not None:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(rec.time))
                lead = [f"{rec.time:.6f}", stamp, rec.run.id, rec.run.host, rec.run.kernel,
                        rec.run.source]
                self.csv.writerows(
                    lead + [z.node, z.zone, o, n, z.free_pages, z.managed,
                            format_index(e), format_index(u)]
                    for z in rec.zones
                    for o, (n, e, u) in enumerate(zip(z.nr_free, z.extfrag, z.unusable)))
            if self.json is not None:
                obj = snapshot_json(rec.sample().snapshot, self.view, rec.run.host,
                                    rec.run.kernel)
                obj.update(seq=rec.seq, interval=rec.interval, run=rec.run.id,
                           events=rec.events)
                self.json.write(json.dumps(obj) + "\n")
        except OSError as e:
            if isinstance(e, BrokenPipeError):
                raise
            raise MfdError(f"cannot write the export: {e.strerror or e}") from None

    def close(self) -> None:
        for f in self.files:
            f.close()
        self.files = []


# -- HTML -----------------------------------------------------------------------


def _html_table(headers, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(rep: Report, png: bytes) -> str:
    """A self-contained page: summary tables and the charts as an inline PNG."""
    import base64
    span = rep.last - rep.first
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>mfd report: {html.escape(os.path.basename(rep.path))}</title><style>",
        "body{font-family:sans-serif;margin:1.5em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right;font-size:90%}"
        "th{background:#eee}img{max-width:100%}",
        "</style></head><body>",
        f"<h1>mfd report: {html.escape(rep.path)}</h1>",
        f"<p>{html.escape(_runs_line(rep))}<br>{_stamp(rep.first)} .. {_stamp(rep.last)} "
        f"({format_duration(span)}), {rep.samples} samples, mfd schema {rep.version}</p>",
        f"<h2>Zones, worst first</h2><p>Time with unusable_index &gt; "
        f"{format_index(rep.threshold)} at order {rep.order} (and so at every order above)."
        "</p>",
        _html_table(*zone_rows(rep)),
        "<h2>Charts</h2>",
        "<img alt='unusable index heatmap, free blocks per order and event rates over time' "
        "src='data:image/png;base64," + base64.b64encode(png).decode("ascii") + "'>",
        "<h2>Every order</h2><p>NO_BLOCK: time with no free block of that order or larger "
        "(an allocation of that order would have needed reclaim or compaction).</p>",
        _html_table(*order_rows(rep, [(s, o) for s in rep.zones.values()
                                      for o in range(s.nr_orders)])),
    ]
    if rep.events:
        parts += ["<h2>Events</h2>", _html_table(["EVENT", "TOTAL", "RATE"],
                                                 event_rows(rep, zeros=True))]
    else:
        parts.append("<h2>Events</h2><p>None recorded (record with mfd -s/--events).</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


# -- the command ------------------------------------------------------------------


def _ranged(convert, what: str, lo, hi=None):
    """An argparse type: ``convert(text)`` within ``lo <= v`` (and ``v < hi``)."""
    def parse(text: str):
        try:
            v = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}")
        if v < lo or (hi is not None and not v < hi):
            bound = f">= {lo}" if hi is None else f"from {lo} up to (not incl.) {hi}"
            raise argparse.ArgumentTypeError(f"must be {bound}: {text!r}")
        return v
    return parse


def build_parser() -> argparse.ArgumentParser:
    from .cli import _Parser, _node_id
    p = _Parser(prog="mfd report", description="Summarize, chart and export a recording "
                "made with mfd --record.", epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE.db", help="the recording")
    p.add_argument("--since", metavar="TIME", help="only samples at or after TIME")
    p.add_argument("--until", metavar="TIME", help="only samples at or before TIME")
    p.add_argument("-i", "--node", type=_node_id, metavar="ID", help="only node ID")
    p.add_argument("-c", "--zone", metavar="NAME", help="only zones named NAME (any case)")
    p.add_argument("--html", metavar="OUT.html", help="write a self-contained HTML report")
    p.add_argument("--png", metavar="OUT.png", help="write the charts as a PNG image")
    p.add_argument("--csv", metavar="OUT.csv", help="export samples as CSV ('-': stdout)")
    p.add_argument("--json", metavar="OUT.jsonl",
                   help="export samples as JSON lines ('-': stdout)")
    p.add_argument("--order", type=_ranged(int, "an integer", 0), default=4, metavar="N",
                   help="order the summary ranks zones by (default 4)")
    p.add_argument("--threshold", type=_ranged(float, "a number", 0, 1), default=0.5,
                   metavar="X",
                   help="unusable_index counted as bad above X (default 0.5)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def run(args) -> int:
    if args.csv == "-" and args.json == "-":
        raise UsageError("only one of --csv and --json can write to stdout")
    charts = bool(args.html or args.png)
    plots = None
    if charts:
        try:
            from . import plots
        except ImportError:
            plots = None
    with History(args.file) as hist:
        first, last, count = hist.bounds()
        if not count:
            raise MfdError(f"{args.file} holds no samples yet")
        try:
            since = parse_time(args.since, last) if args.since else None
            until = parse_time(args.until, last) if args.until else None
        except ValueError as e:
            raise UsageError(str(e))
        if since is not None and until is not None and since > until:
            raise UsageError("--since is after --until")
        exports = Exports(args.csv, args.json, args.node, args.zone)
        try:
            rep = build(hist, since, until, args.node, args.zone, args.threshold, args.order,
                        charts=plots is not None, sink=exports)
        finally:
            exports.close()
    if not rep.samples:
        raise MfdError(f"no samples in {args.file} between {args.since or 'the start'} and "
                       f"{args.until or 'the end'} (it spans {_stamp(first)} .. {_stamp(last)})")
    if not rep.zones:
        raise UsageError(f"no populated zone matches -i/-c in {args.file}")
    # Files first: a summary piped into head must not cost the charts.
    if charts and plots is not None:
        png = plots.render_png(rep)
        for path, data in ((args.png, png), (args.html, None)):
            if not path:
                continue
            try:
                if data is not None:
                    with open(path, "wb") as f:
                        f.write(data)
                else:
                    with open(path, "w", encoding="utf-8") as f:
                        f.write(html_page(rep, png))
            except OSError as e:
                raise MfdError(f"cannot write {path}: {e.strerror}") from None
            print(f"mfd: wrote {path}", file=sys.stderr)
    if "-" not in (args.csv, args.json):
        print(summary_text(rep), flush=True)
    if charts and plots is None:
        raise MfdError(PLOT_HINT)
    return 0


def main(argv: Optional[Iterable[str]] = None) -> int:
    """``mfd report ...``; returns the exit status like :func:`mfd.cli.main`."""
    from .cli import finish
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(argv[:-1]):     # "--since -15m": argparse would take -15m
        if arg in ("--since", "--until") and argv[i + 1].startswith("-"):  # for an option
            argv[i:i + 2] = [f"{arg}={argv[i + 1]}", ""]
    argv = [a for a in argv if a != ""]
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    return finish(lambda: run(args), args.debug)
