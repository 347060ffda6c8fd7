"""``mfd report FILE.db``: summary, charts and exports of a recording."""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import List, Optional, Tuple

from ..errors import MfdError, UsageError
from ..model import Filter
from ..recording import History
from ..report.build import build
from ..report.exports import Exports
from ..report.html import html_page
from ..report.summary import summary_text
from . import common


EPILOG = """\
examples:
  mfd report frag.db                       summary: span, worst zones and orders, events
  mfd report frag.db --html frag.html      the same with charts, in one self-contained file
  mfd report frag.db --png frag.png -c Normal --since -1h    last hour, zone Normal only
  mfd report frag.db --csv - | head        one row per sample, zone and order
  mfd report frag.db --json out.jsonl      one object per sample, shaped like mfd --json
  mfd report old.db --compare new.db --labels 6.1,6.18 --html ab.html
                                           two recordings side by side: index medians,
                                           p90 and max per order, time with no THP-order
                                           block, event rates

times (--since/--until): '2024-05-01 12:00[:SS]', 12:00 (today), @EPOCH, or -15m
(counted back from the last sample; with --compare, each file's own).  Times
are local.
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
    p.add_argument("--order", type=common.ranged(int, "an integer", 0), metavar="N",
                   help="order the summary ranks zones by (default 4)")
    p.add_argument("--threshold", type=common.ranged(float, "a number", 0, 1), metavar="X",
                   help="unusable_index counted as bad above X (default 0.5)")
    p.add_argument("--compare", metavar="B.db", type=common.path_arg,
                   help="a second recording to set beside FILE.db (the summary, --html, --png)")
    p.add_argument("--labels", metavar="A,B", type=_labels,
                   help="with --compare: names for the two recordings (default their file "
                        "names)")
    p.add_argument("--thp-order", type=common.ranged(int, "an integer", 1, 20), metavar="N",
                   help="with --compare: the THP order for the time with no such block "
                        "(default this machine's, from hpage_pmd_size)")
    common.add_debug(p, "show tracebacks")
    return p


def _labels(text: str) -> Tuple[str, str]:
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise argparse.ArgumentTypeError(f"two labels with a comma between, not {text!r}")
    if parts[0].strip() == parts[1].strip():
        raise argparse.ArgumentTypeError(f"two different labels, not {text!r}")
    return parts[0].strip(), parts[1].strip()


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
    compare: Optional[str] = None
    labels: Optional[Tuple[str, str]] = None
    thp_order: Optional[int] = None

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
    if args.compare is None:
        for flag, value in (("--labels", args.labels), ("--thp-order", args.thp_order)):
            if value is not None:
                raise UsageError(f"{flag} needs --compare B.db")
    else:
        for flag, value in (("--csv", args.csv), ("--json", args.json),
                            ("--order", args.order), ("--threshold", args.threshold)):
            if value is not None:
                raise UsageError(f"{flag} does nothing with --compare (it is for one "
                                 "recording's report)")
        try:
            same = os.path.samefile(args.compare, args.file)
        except OSError:     # one is missing: History says which
            same = os.path.abspath(args.compare) == os.path.abspath(args.file)
        if same:
            raise UsageError("--compare names the same file as FILE.db")
    return ReportConfig(args.file, args.since, args.until, Filter(args.node, args.zone),
                        args.html, args.png, args.csv, args.json,
                        4 if args.order is None else args.order,
                        0.5 if args.threshold is None else args.threshold,
                        args.follow_symlinks, args.debug, args.compare, args.labels,
                        args.thp_order)


def _side(path: str, cfg: ReportConfig, label: str):
    """One recording of a comparison, read once: its Report and distributions."""
    from ..report.compare import Distributions, Side
    with History(path) as hist:
        sel = common.select(hist, cfg.since, cfg.until, cfg.filter)
        dist = Distributions()
        rep = build(hist, sel.since, sel.until, sel.filter, cfg.threshold, cfg.order, sink=dist)
    if not rep.samples:
        raise sel.nothing()
    return Side(label, rep, dist)


def run_compare(cfg: ReportConfig) -> int:
    from ..compaction import compaction_hpage_order
    from ..diagnose.can import size_text
    from ..kernel import facts
    from ..report.compare import Comparison, default_labels
    from ..report.html import comparison_page
    from ..report.summary import comparison_text
    common.require_stdout("the comparison's summary")
    labels = cfg.labels or default_labels((cfg.file, cfg.compare))
    page_size = os.sysconf("SC_PAGE_SIZE")
    hpage = cfg.thp_order if cfg.thp_order is not None else \
        compaction_hpage_order(facts.hpage_pmd_size(), page_size)
    cmp = Comparison(_side(cfg.file, cfg, labels[0]), _side(cfg.compare, cfg, labels[1]), hpage)
    orders = min(side.nr_orders for side in cmp.sides)
    if hpage >= orders:
        raise UsageError(f"--thp-order {hpage}: the recordings have orders 0-{orders - 1}"
                         if cfg.thp_order is not None else
                         f"this machine's THP order {hpage} is beyond the recordings' orders "
                         f"0-{orders - 1}: say it with --thp-order")
    if not cmp.common_zones():
        raise MfdError(f"{cfg.file} and {cfg.compare} have no populated zone in common "
                       "(node and zone name) to compare")
    huge = size_text(hpage, page_size)
    plots = common.plots(bool(cfg.html or cfg.png))
    if plots is not None:
        png = plots.render_comparison_png(cmp)
        if cfg.png:
            common.write_output(cfg.png, png, cfg.follow_symlinks)
        if cfg.html:
            common.write_output(cfg.html, comparison_page(cmp, png, huge).encode("utf-8"),
                   cfg.follow_symlinks)
    if not cfg.to_stdout:
        print(comparison_text(cmp, huge), flush=True)
    if (cfg.html or cfg.png) and plots is None:
        raise common.no_matplotlib()
    return 0


def _maps_html(mh) -> str:
    """The HTML report's section on the recording's pageblock maps ('' without)."""
    if mh is None:
        return ""
    from ..report.maps import maps_section
    return maps_section(mh)


def run(cfg: ReportConfig) -> int:
    if cfg.compare is not None:
        return run_compare(cfg)
    common.require_stdout("the report's summary")
    charts = bool(cfg.html or cfg.png)
    plots = common.plots(charts)
    with History(cfg.file) as hist:
        sel = common.select(hist, cfg.since, cfg.until, cfg.filter)
        exports = Exports(cfg.csv, cfg.json, sel.filter, cfg.follow_symlinks)
        try:
            rep = build(hist, sel.since, sel.until, sel.filter, cfg.threshold, cfg.order,
                        charts=plots is not None, sink=exports)
            if not rep.samples:
                raise sel.nothing()
            if not rep.zones:
                raise UsageError(f"no populated zone matches -i/-c in {cfg.file}")
            orders = max(z.nr_orders for z in rep.zones.values())
            if cfg.order >= orders:
                raise UsageError(f"--order {cfg.order}: the recording has orders "
                                 f"0-{orders - 1}")
            mh = None
            if hist.map_times(sel.since, sel.until, 1)[0]:     # numpy only for maps
                from ..report.maps import map_history
                mh = map_history(hist, sel.since, sel.until, sel.filter)
        except BaseException:
            exports.abort()     # a report that fails leaves the targets as they were
            raise
        exports.commit()
    # Files first: a summary piped into head must not cost the charts.
    if charts and plots is not None:
        png = plots.render_png(rep)
        for path, data in ((cfg.png, png), (cfg.html, None)):
            if path:
                common.write_output(path, png if data is not None else
                                    html_page(rep, png, _maps_html(mh)).encode("utf-8"),
                                    cfg.follow_symlinks)
    if not cfg.to_stdout:
        print(summary_text(rep), flush=True)
        if mh is not None:
            from ..report.maps import maps_text
            print("\n" + maps_text(mh), end="", flush=True)
    if charts and plots is None:
        raise common.no_matplotlib()
    return 0


def main(argv: List[str], debug: bool = False) -> int:
    """``mfd report ...``; the exit status."""
    return common.command_main(build_parser, lambda args: run(config(args)),
                               common.join_time_args(argv), debug)
