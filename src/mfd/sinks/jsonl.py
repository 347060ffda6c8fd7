"""JSON lines: one object per sample, for ``--json`` and ``mfd report --json``.

The shape (README, "--json") carries no kernel address (pgdat) by design.
Zones are every zone that passes the filter, empty ones included (with
``"populated": false``); ``events`` is there when event groups are loaded.
"""
from __future__ import annotations

import json
import time
from typing import Optional

from ..derive import Frame, ZoneFigures
from ..term import noted


def zone_json(f: ZoneFigures) -> dict:
    z, stats = f.zone, f.orders
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


def sample_json(frame: Frame, host: str, kernel: str, run: Optional[int] = None) -> dict:
    """One object.  ``run`` (a recording's run id, for mfd report --json) adds
    seq, interval, run and events (null without events)."""
    snap, sample = frame.snapshot, frame.sample
    by_node: dict = {}
    for f in frame.zones(empty=True):   # one pass: a recording may hold 1024 nodes
        by_node.setdefault(f.zone.node, []).append(zone_json(f))
    nodes = []
    for n in frame.nodes():
        nz = by_node.get(n.node, [])
        if frame.filter.zone is not None and not nz:
            continue
        nodes.append({"node": n.node, "nr_zones": n.nr_zones, "start_pfn": n.start_pfn,
                      "present": n.present, "spanned": n.spanned, "zones": nz})
    doc = {
        "time": round(snap.time, 6),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(snap.time)),
        "host": host, "kernel": kernel, "source": snap.source,
        "pgdat_path": snap.pgdat_path, "nr_orders": snap.nr_orders, "nodes": nodes,
    }
    events = None if sample.events is None else sample.events.to_json()
    if run is not None:
        doc.update(seq=sample.seq, interval=sample.interval, run=run, events=events)
    elif events is not None:
        doc["events"] = events
    return doc


class JsonSink:
    """``--json``: one object per sample on stdout."""

    def __init__(self, host: str, kernel: str):
        self.host, self.kernel = host, kernel

    def emit(self, frame: Frame) -> None:
        doc = sample_json(frame, self.host, self.kernel)
        # What the run said once on stderr (the path taken, the header tree),
        # here too: -q keeps it off stderr, not out of the data.
        doc["notes"] = noted()
        print(json.dumps(doc), flush=True)

    def close(self) -> None:
        pass
