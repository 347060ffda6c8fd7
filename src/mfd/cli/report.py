"""``mfd report FILE.db``: summary, charts and exports of a recording."""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import List, Optional

from ..durations import format_time
from ..errors import MfdError, UsageError
from ..model import Filter
from ..recording import History
from ..report.build import build
from ..report.exports import Exports
from ..report.html import html_page
from ..report.summary import summary_text
from ..origin import install_hint
from ..safefs import AtomicOutput
from ..term import info
from . import common


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


def build_parser() -> argparse.ArgumentParser:
    p = common.parser("mfd report", "Summarize, chart and export a recording made with "
                      "mfd --record.", EPILOG)
    p.add_argument("file", metavar="FILE.db", help="the recording")
    common.add_span(p)
    common.add_filter(p, "only zones named NAME (any case)")
    p.add_argument("--html", metavar="OUT.html", type=common.path_arg,
                   help="write a self-contained HTML report ('-': stdout)")
    p.add_argument("--png", metavar="OUT.png", type=common.path_arg,
                   help="write the charts as a PNG image ('-': stdout)")
    p.add_argument("--csv", metavar="OUT.csv", type=common.path_arg,
                   help="export samples as CSV ('-': stdout)")
    p.add_argument("--json", metavar="OUT.jsonl", type=common.path_arg,
                   help="export samples as JSON lines ('-': stdout)")
    common.add_follow_symlinks(p)
    p.add_argument("--order", type=common.ranged(int, "an integer", 0), default=4,
                   metavar="N", help="order the summary ranks zones by (default 4)")
    p.add_argument("--threshold", type=common.ranged(float, "a number", 0, 1), default=0.5,
                   metavar="X", help="unusable_index counted as bad above X (default 0.5)")
    common.add_debug(p, "show tracebacks")
    return p


@dataclass(frozen=True)
class ReportConfig:
    file: str
    since: Optional[str] = None
    until: Optional[str] = None
    filter: Filter = Filter()
    html: Optional[str] = None
    png: Optional[str] = None
    csv: Optional[str] = None
    json: Optional[str] = None
    order: int = 4
    threshold: float = 0.5
    follow_symlinks: bool = False
    debug: bool = False

    @property
    def to_stdout(self) -> bool:
        """An output goes to stdout ('-'): then it is the only thing there."""
        return "-" in (self.html, self.png, self.csv, self.json)


def config(args) -> ReportConfig:
    outs = {"--html": args.html, "--png": args.png, "--csv": args.csv, "--json": args.json}
    dashes = [flag for flag, path in outs.items() if path == "-"]
    if len(dashes) > 1:
        raise UsageError(f"only one of {' and '.join(dashes)} can write to stdout ('-')")
    paths = [p for p in outs.values() if p and p != "-"]
    if len(set(map(os.path.abspath, paths))) < len(paths):
        raise UsageError("two outputs name the same file")
    if args.follow_symlinks and not paths:
        raise UsageError("--follow-symlinks needs an output file (--html, --png, --csv "
                         "or --json)")
    return ReportConfig(args.file, args.since, args.until, Filter(args.node, args.zone),
                        args.html, args.png, args.csv, args.json, args.order, args.threshold,
                        args.follow_symlinks, args.debug)


def _resolve(flt: Filter, hist: History, path: str) -> Filter:
    try:
        return flt.resolve(*hist.names(), where=path)
    except UsageError as e:
        raise UsageError(f"no populated zone matches -i/-c in {path}: {e}") from None


def _write(path: str, data: bytes, follow_symlinks: bool) -> None:
    """A whole output file: on stdout for '-', else beside its target and
    renamed onto it (never through a planted symlink: mfd.safefs)."""
    if path == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    with AtomicOutput(path, binary=True, follow_symlinks=follow_symlinks) as f:
        try:
            f.write(data)
        except OSError as e:
            raise MfdError(f"cannot write {path}: {e.strerror}") from None
    info(f"wrote {path}")


def run(cfg: ReportConfig) -> int:
    common.require_stdout("the report's summary")
    charts = bool(cfg.html or cfg.png)
    plots = None
    if charts:
        try:
            from ..report import plots
        except ImportError:
            plots = None
    with History(cfg.file) as hist:
        first, last, count = hist.bounds()
        if not count:
            raise MfdError(f"{cfg.file} holds no samples yet")
        since, until = common.span(cfg.since, cfg.until, last)
        flt = _resolve(cfg.filter, hist, cfg.file)
        exports = Exports(cfg.csv, cfg.json, flt, cfg.follow_symlinks)
        try:
            rep = build(hist, since, until, flt, cfg.threshold, cfg.order,
                        charts=plots is not None, sink=exports)
            if not rep.samples:
                raise MfdError(f"no samples in {cfg.file} between {cfg.since or 'the start'} "
                               f"and {cfg.until or 'the end'} (it spans {format_time(first)} .. "
                               f"{format_time(last)})")
            if not rep.zones:
                raise UsageError(f"no populated zone matches -i/-c in {cfg.file}")
            orders = max(z.nr_orders for z in rep.zones.values())
            if cfg.order >= orders:
                raise UsageError(f"--order {cfg.order}: the recording has orders "
                                 f"0-{orders - 1}")
        except BaseException:
            exports.abort()     # a report that fails leaves the targets as they were
            raise
        exports.commit()
    # Files first: a summary piped into head must not cost the charts.
    if charts and plots is not None:
        png = plots.render_png(rep)
        for path, data in ((cfg.png, png), (cfg.html, None)):
            if path:
                _write(path, png if data is not None else html_page(rep, png).encode("utf-8"),
                       cfg.follow_symlinks)
    if not cfg.to_stdout:
        print(summary_text(rep), flush=True)
    if charts and plots is None:
        raise MfdError("charts need matplotlib: " +
                       install_hint("python3-matplotlib", "python3-matplotlib", "matplotlib"))
    return 0


def main(argv: List[str], debug: bool = False) -> int:
    """``mfd report ...``; the exit status."""
    return common.command_main(build_parser, lambda args: run(config(args)),
                               common.join_time_args(argv), debug)
