"""Prometheus exporter: ``mfd serve [--listen HOST:PORT]`` serves /metrics.

Samples on demand, like node_exporter: each scrape takes one snapshot (about
15 us through eBPF), so nothing runs between scrapes and the numbers are as
fresh as the scrape.  Listens on loopback unless given a host.  No kernel
address is ever exported (the pgdat pointer stays out of every label).
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterator, Tuple

from ..derive import Frame
from ..errors import MfdError, UsageError

DEFAULT_PORT = 9610


def parse_listen(text: str, flag: str = "--listen") -> Tuple[str, int]:
    """``PORT``, ``:PORT``, ``HOST:PORT`` or ``[V6]:PORT``; no host means 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        p = int(port)
    except ValueError:
        raise UsageError(f"{flag} wants [HOST:]PORT, not {text!r}")
    if not 0 < p < 65536:
        raise UsageError(f"{flag} port out of range: {p}")
    return host, p


class SnapshotCollector:
    """A prometheus_client collector: one snapshot per scrape, thread-safe.
    ``take()`` returns a fresh Frame (the CLI binds it to a source and the filter)."""

    def __init__(self, take: Callable[[], Frame], info: dict):
        self.take, self.info = take, info
        self.lock = threading.Lock()
        self.errors = 0

    def collect(self) -> Iterator:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        t0 = time.perf_counter()
        frame = None
        with self.lock:  # the eBPF source reuses one map buffer
            try:
                frame = self.take()
            except MfdError:
                self.errors += 1
        took = time.perf_counter() - t0
        info = GaugeMetricFamily("mfd_build_info", "mfd version, snapshot source and kernel",
                                 labels=sorted(self.info))
        info.add_metric([self.info[k] for k in sorted(self.info)], 1)
        yield info
        yield CounterMetricFamily("mfd_collector_errors_total",
                                  "Snapshots that failed (see mfd's stderr)", value=self.errors)
        yield GaugeMetricFamily("mfd_snapshot_duration_seconds",
                                "Time to take the snapshot behind this scrape", value=took)
        if frame is None:
            return
        zl, zol = ["node", "zone"], ["node", "zone", "order"]
        fam = {
            "free_blocks": GaugeMetricFamily(
                "mfd_zone_free_blocks", "Free blocks of exactly this order "
                "(free_area[order].nr_free, as /proc/buddyinfo)", labels=zol),
            "extfrag": GaugeMetricFamily(
                "mfd_zone_extfrag_index", "The kernel's extfrag_index (mm/vmstat.c): -1 when "
                "a suitable block exists, towards 1 when failure would be fragmentation",
                labels=zol),
            "unusable": GaugeMetricFamily(
                "mfd_zone_unusable_index", "The kernel's unusable_index (mm/vmstat.c): share "
                "of free memory unusable for this order", labels=zol),
            "free_pages": GaugeMetricFamily("mfd_zone_free_pages", "Free pages in the zone",
                                            labels=zl),
            "managed": GaugeMetricFamily("mfd_zone_managed_pages", "zone->managed_pages",
                                         labels=zl),
            "present": GaugeMetricFamily("mfd_zone_present_pages", "zone->present_pages",
                                         labels=zl),
            "spanned": GaugeMetricFamily("mfd_zone_spanned_pages", "zone->spanned_pages",
                                         labels=zl),
        }
        for f in frame.zones():
            z = f.zone
            zv = [str(z.node), z.zone]
            for s in f.orders:
                ov = zv + [str(s.order)]
                fam["free_blocks"].add_metric(ov, s.nr_free)
                fam["extfrag"].add_metric(ov, s.extfrag / 1000)
                fam["unusable"].add_metric(ov, s.unusable / 1000)
            fam["free_pages"].add_metric(zv, z.free_pages)
            fam["managed"].add_metric(zv, z.managed)
            fam["present"].add_metric(zv, z.present)
            fam["spanned"].add_metric(zv, z.spanned)
        yield from fam.values()


def serve(take: Callable[[], Frame], info: dict, listen: str, note: Callable[[str], None],
          wait: Callable[[float], None] = time.sleep) -> int:
    """Serve /metrics until a signal ends mfd.  ``info`` labels mfd_build_info
    (version, source, pgdat_path, kernel).  Returns the exit status."""
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError as e:
        raise MfdError("the exporter needs prometheus-client: apt install "
                       "python3-prometheus-client, dnf install python3-prometheus_client, "
                       "or pip install prometheus-client") from e

    host, port = parse_listen(listen)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(take, info))
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        raise MfdError(f"cannot listen on {host}:{port}: {e.strerror or e} "
                       "(choose another address with --listen HOST:PORT)") from e
    note(f"serving Prometheus metrics on http://{host}:{port}/metrics "
         "(one snapshot per scrape); Ctrl-C to end")
    while True:
        wait(3600)
