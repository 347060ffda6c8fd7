"""``mfd serve``: the Prometheus exporter, one snapshot per scrape
(``mfd --prometheus [HOST:]PORT`` is the same)."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import List

from .. import __version__, ebpf
from ..derive import Frame
from ..model import Filter, Sample
from ..sinks.exporter import DEFAULT_PORT, HEAD_TIMEOUT, MAX_CONNECTIONS, parse_listen, serve
from ..sources import open_snapshot_source
from ..term import info, note
from . import common


EPILOG = f"""\
examples:
  sudo mfd serve                           /metrics on 127.0.0.1:{DEFAULT_PORT}
  sudo mfd serve --listen [::1]:{DEFAULT_PORT}       on IPv6 loopback
  sudo mfd serve --listen 0.0.0.0:{DEFAULT_PORT}     on every IPv4 interface
  sudo mfd serve --listen [::]:{DEFAULT_PORT}        on every IPv6 interface
  mfd serve --source procfs --listen 19610 without root: from /proc

Every interface is never implied: 0.0.0.0 or [::] must be written out, and
an IPv6 address goes in brackets.  Each connection carries one request and
must send it within {HEAD_TIMEOUT:g} s; at most {MAX_CONNECTIONS} are held at once.
"""


def build_parser() -> argparse.ArgumentParser:
    p = common.parser("mfd serve", "Serve Prometheus metrics: each scrape takes one "
                      "snapshot, nothing runs between scrapes.", EPILOG)
    p.add_argument("--listen", metavar="[HOST:]PORT", default=str(DEFAULT_PORT),
                   help=f"address to listen on (default 127.0.0.1:{DEFAULT_PORT}; "
                        "no host means loopback; IPv6 in brackets, as [::1]:PORT)")
    common.add_filter(p)
    common.add_source(p)
    common.add_debug(p)
    return p


@dataclass(frozen=True)
class ServeConfig:
    listen: str = str(DEFAULT_PORT)
    filter: Filter = Filter()
    source: str = "auto"
    pgdat_path: str = "auto"
    debug: bool = False
    flag: str = "--listen"          # how the address was given, for messages
    bpf_loader: str = "auto"


def config(args, flag: str = "--listen") -> ServeConfig:
    listen = args.prometheus if flag == "--prometheus" else args.listen
    parse_listen(listen, flag)      # a bad address is a usage error, before any loading
    for flag_name, dest in (("--pgdat-path", "pgdat_path"), ("--bpf-loader", "bpf_loader")):
        if getattr(args, dest) != "auto" and args.source == "procfs":
            from ..errors import UsageError
            raise UsageError(f"{flag_name} does nothing with --source procfs "
                             "(nothing is compiled)")
    return ServeConfig(listen, Filter(args.node, args.zone), args.source,
                       args.pgdat_path, args.debug, flag, args.bpf_loader)


def run(cfg: ServeConfig) -> int:
    try:
        source = open_snapshot_source(cfg.source, cfg.pgdat_path, cfg.debug, info,
                                      cfg.bpf_loader)
    finally:
        ebpf.release_loader()   # loaded: the compiler's process can go
    try:
        flt = cfg.filter.resolve_in(source.snapshot())

        def take() -> Frame:
            return Frame(Sample(source.snapshot(), 0.0, 0), flt)

        return serve(take, {"version": __version__, "source": source.name,
                            "pgdat_path": getattr(source, "pgdat_path", None) or "",
                            "kernel": os.uname().release}, cfg.listen, note, cfg.flag, said=info)
    finally:
        source.close()


def main(argv: List[str], debug: bool = False) -> int:
    return common.command_main(build_parser, lambda args: run(config(args)), argv, debug)
