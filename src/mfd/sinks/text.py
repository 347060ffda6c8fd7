"""Text tables of a frame: the seed's zone table, -n, -z, -e/-u, -b (a sink).

Default output stays under 80 columns; columns two spaces apart, like vmstat.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from ..derive import Frame
from ..fragindex import format_index
from ..model import Snapshot
from .table import table


@dataclass(frozen=True)
class View:
    """How the tables look (from the CLI flags); which zones: the frame's filter."""

    detail: bool = False            # -z
    extfrag: bool = True            # shown unless -u alone
    unusable: bool = True           # shown unless -e alone
    bar: bool = False               # -b
    show_pgdat: bool = False        # root terminal only
    by: str = "process"             # --by: event rows per process or per cgroup


def _bar(value_x1000: int, width: int = 10) -> str:
    full, empty = _bar_chars()
    filled = 0 if value_x1000 <= 0 else min(width, round(value_x1000 * width / 1000))
    return full * filled + empty * (width - filled)


def _bar_chars():
    enc = (getattr(sys.stdout, "encoding", None) or "").lower()
    return ("\u2588", "\u00b7") if "utf" in enc else ("#", ".")


def zone_table(frame: Frame, view: View) -> str:
    headers = ["NODE", "ZONE"]
    if view.detail:
        headers += ["ZONE_PFN", "SPANNED", "PRESENT", "MANAGED"]
    headers += ["ORDER", "NR_FREE", "TOTAL", "SUITABLE", "FREE"]
    if view.extfrag:
        headers += ["EXTFRAG"] + (["BAR"] if view.bar else [])
    if view.unusable:
        headers += ["UNUSABLE"] + (["BAR"] if view.bar else [])
    rows = []
    for f in frame.zones(empty=view.detail):
        z = f.zone
        lead = [z.node, z.zone]
        if view.detail:
            lead += [z.start_pfn, z.spanned, z.present, z.managed]
        if not z.populated:
            rows.append(lead + ["-"] * (len(headers) - len(lead) - 1) + ["empty"])
            continue
        for s in f.orders:
            row = lead + [s.order, s.nr_free, s.total, s.suitable, s.free]
            if view.extfrag:
                row.append(format_index(s.extfrag))
                if view.bar:
                    row.append(_bar(s.extfrag))
            if view.unusable:
                row.append(format_index(s.unusable))
                if view.bar:
                    row.append(_bar(s.unusable))
            rows.append(row)
            lead = ["", ""] + [""] * (4 if view.detail else 0)
    return table(rows, headers)


def node_table(frame: Frame, view: View) -> str:
    headers = ["NODE", "NR_ZONES", "START_PFN", "PRESENT", "SPANNED", "FREE", "ZONES"]
    if view.show_pgdat:
        headers.append("PGDAT")
    rows = []
    for n in frame.nodes():
        row = [n.node, n.nr_zones, n.start_pfn, n.present, n.spanned,
               sum(z.free_pages for z in n.zones),
               ",".join(z.zone for z in n.zones if z.populated) or "-"]
        if view.show_pgdat:
            row.append("%#x" % n.pgdat if n.pgdat else "-")
        rows.append(row)
    return table(rows, headers)


def block_header(snap: Snapshot) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap.time))
    how = snap.source + (f", pgdat via {snap.pgdat_path}" if snap.pgdat_path else "")
    return f"{stamp}  ({how})"


class TextSink:
    """The periodic text output on stdout, one block per sample: the zone
    table, the node table (-n), or (-s) the event tables alone, as the seed
    showed them; the event tables of --events below."""

    def __init__(self, view: View, tables: str = "zones"):
        self.view, self.tables = view, tables       # "zones", "nodes" or "none"

    def emit(self, frame: Frame) -> None:
        snap, events = frame.snapshot, frame.sample.events
        out = ""
        if self.tables == "nodes":
            out = block_header(snap) + "\n" + node_table(frame, self.view) + "\n"
        elif self.tables == "zones":
            out = block_header(snap) + "\n" + zone_table(frame, self.view) + "\n"
        if events is not None:
            # imported here: the event records load only when events are on (model)
            from .events_text import events_header, events_text
            out = (out or events_header(snap.time, events.interval) + "\n") + \
                events_text(events, self.view.by) + "\n"
        print(out, flush=True)

    def close(self) -> None:
        pass
