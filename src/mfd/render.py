"""Text and JSON renderings of a snapshot: the seed's tables, -n, -z, -e/-u, -b, --json."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence

import tabulate as _tabulate

from . import fragindex
from .model import NodeSnapshot, Snapshot, ZoneSnapshot


@dataclass(frozen=True)
class View:
    """What the user asked to see (from the CLI flags)."""

    node: Optional[int] = None      # -i
    zone: Optional[str] = None      # -c (any case)
    detail: bool = False            # -z
    extfrag: bool = True            # shown unless -u alone
    unusable: bool = True           # shown unless -e alone
    bar: bool = False               # -b
    show_pgdat: bool = False        # root terminal only


@dataclass(frozen=True)
class OrderStats:
    """The seed's per-order columns: fill_contig_page_info() plus both indices (x1000)."""

    order: int
    nr_free: int
    total: int          # free_blocks_total
    suitable: int       # free_blocks_suitable for this order
    free: int           # free_pages
    extfrag: int        # __fragmentation_index()
    unusable: int       # unusable_free_index()


def order_stats(nr_free: Sequence[int]) -> List[OrderStats]:
    out = []
    for order, n in enumerate(nr_free):
        info = fragindex.fill_contig_page_info(nr_free, order)
        out.append(OrderStats(order, n, info.free_blocks_total, info.free_blocks_suitable,
                              info.free_pages, fragindex.fragmentation_index(order, info),
                              fragindex.unusable_free_index(order, info)))
    return out


def select_zones(snap: Snapshot, view: View) -> List[ZoneSnapshot]:
    """Zones matching -i/-c.  Empty zones only when -z or -c asks for them."""
    want = view.zone.lower() if view.zone else None
    out = []
    for z in snap.zones():
        if view.node is not None and z.node != view.node:
            continue
        if want is not None and z.zone.lower() != want:
            continue
        if not z.populated and want is None and not view.detail:
            continue
        out.append(z)
    return out


def select_nodes(snap: Snapshot, view: View) -> List[NodeSnapshot]:
    return [n for n in snap.nodes if view.node is None or n.node == view.node]


# Columns two spaces apart, no rules: short enough for 80 columns, and easy
# to cut/awk like vmstat's output.
_PLAIN = _tabulate.TableFormat(lineabove=None, linebelowheader=None, linebetweenrows=None,
                               linebelow=None, headerrow=_tabulate.DataRow("", "  ", ""),
                               datarow=_tabulate.DataRow("", "  ", ""), padding=0,
                               with_header_hide=None)


def table(rows, headers) -> str:
    saved, _tabulate.MIN_PADDING = _tabulate.MIN_PADDING, 0  # no extra header padding
    try:
        return _tabulate.tabulate(rows, headers=headers, tablefmt=_PLAIN,
                                  disable_numparse=True, stralign="right")
    finally:
        _tabulate.MIN_PADDING = saved


def _bar(value_x1000: int, width: int = 10) -> str:
    full, empty = _bar_chars()
    filled = 0 if value_x1000 <= 0 else min(width, round(value_x1000 * width / 1000))
    return full * filled + empty * (width - filled)


def _bar_chars():
    enc = (getattr(sys.stdout, "encoding", None) or "").lower()
    return ("\u2588", "\u00b7") if "utf" in enc else ("#", ".")


def zone_table(snap: Snapshot, view: View) -> str:
    headers = ["NODE", "ZONE"]
    if view.detail:
        headers += ["ZONE_PFN", "SPANNED", "PRESENT", "MANAGED"]
    headers += ["ORDER", "NR_FREE", "TOTAL", "SUITABLE", "FREE"]
    if view.extfrag:
        headers += ["EXTFRAG"] + (["BAR"] if view.bar else [])
    if view.unusable:
        headers += ["UNUSABLE"] + (["BAR"] if view.bar else [])
    rows = []
    for z in select_zones(snap, view):
        lead = [z.node, z.zone]
        if view.detail:
            lead += [z.start_pfn, z.spanned, z.present, z.managed]
        if not z.populated:
            rows.append(lead + ["-"] * (len(headers) - len(lead) - 1) + ["empty"])
            continue
        for s in order_stats(z.nr_free):
            row = lead + [s.order, s.nr_free, s.total, s.suitable, s.free]
            if view.extfrag:
                row.append(fragindex.format_index(s.extfrag))
                if view.bar:
                    row.append(_bar(s.extfrag))
            if view.unusable:
                row.append(fragindex.format_index(s.unusable))
                if view.bar:
                    row.append(_bar(s.unusable))
            rows.append(row)
            lead = ["", ""] + [""] * (4 if view.detail else 0)
    return table(rows, headers)


def node_table(snap: Snapshot, view: View) -> str:
    headers = ["NODE", "NR_ZONES", "START_PFN", "PRESENT", "SPANNED", "FREE", "ZONES"]
    if view.show_pgdat:
        headers.append("PGDAT")
    rows = []
    for n in select_nodes(snap, view):
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


def zone_json(z: ZoneSnapshot) -> dict:
    stats = order_stats(z.nr_free)
    return {
        "zone": z.zone, "zone_idx": z.zone_idx, "populated": z.populated,
        "start_pfn": z.start_pfn, "spanned": z.spanned, "present": z.present,
        "managed": z.managed, "free_pages": z.free_pages,
        "free_blocks_total": stats[0].total if stats else 0,
        "nr_free": list(z.nr_free),
        "free_blocks_suitable": [s.suitable for s in stats],
        "extfrag_index": [s.extfrag / 1000 for s in stats],
        "unusable_index": [s.unusable / 1000 for s in stats],
    }


def snapshot_json(snap: Snapshot, view: View, host: str, kernel: str) -> dict:
    """One --json object.  Carries no kernel address (pgdat) by design."""
    zones = select_zones(snap, View(node=view.node, zone=view.zone, detail=True))
    nodes = []
    for n in select_nodes(snap, view):
        nz = [zone_json(z) for z in zones if z.node == n.node]
        if view.zone and not nz:
            continue
        nodes.append({"node": n.node, "nr_zones": n.nr_zones, "start_pfn": n.start_pfn,
                      "present": n.present, "spanned": n.spanned, "zones": nz})
    return {
        "time": round(snap.time, 6),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(snap.time)),
        "host": host, "kernel": kernel, "source": snap.source,
        "pgdat_path": snap.pgdat_path, "nr_orders": snap.nr_orders, "nodes": nodes,
    }


def zone_names(snap: Snapshot) -> List[str]:
    seen: List[str] = []
    for z in snap.zones():
        if z.zone not in seen:
            seen.append(z.zone)
    return seen


def node_ids(snap: Snapshot) -> Iterable[int]:
    return [n.node for n in snap.nodes]
