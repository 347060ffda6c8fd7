"""Snapshot of every node and zone through an eBPF program (BCC).

The program (bpf/zonewalk.bpf.c) walks pglist_data -> zones -> free_area once
per sample, when this process calls getppid(); it never runs on the page
allocator's path.  Offsets come from the running kernel's BTF, so the header
tree BCC compiles against may belong to another kernel.
"""
from __future__ import annotations

import ctypes
import os
import struct
import time
from typing import Callable, Dict, List, Optional

from .. import ebpf
from ..errors import KernelUnsupported, SourceUnavailable
from ..kernel import bpfmap, facts
from ..model import NodeSnapshot, Snapshot, ZoneSnapshot
from ..term import note as stderr_note

PROGRAM = "zonewalk.bpf.c"
HINT = " (or use --source procfs)"

# MFD_ERR_* in bpf/mfd.h
ERR_NO_MEMCG, ERR_NO_PGDAT, ERR_READ = 1, 2, 4

# (macro suffix, struct, member) for every offset the walk reads.
_OFFSETS = [
    ("task_struct_cgroups", "task_struct", "cgroups"),
    ("css_set_subsys", "css_set", "subsys"),
    ("mem_cgroup_css", "mem_cgroup", "css"),
    ("mem_cgroup_nodeinfo", "mem_cgroup", "nodeinfo"),
    ("mem_cgroup_per_node_lruvec", "mem_cgroup_per_node", "lruvec"),
    ("lruvec_pgdat", "lruvec", "pgdat"),
    ("pglist_data_node_zones", "pglist_data", "node_zones"),
    ("pglist_data_nr_zones", "pglist_data", "nr_zones"),
    ("pglist_data_node_start_pfn", "pglist_data", "node_start_pfn"),
    ("pglist_data_node_present_pages", "pglist_data", "node_present_pages"),
    ("pglist_data_node_spanned_pages", "pglist_data", "node_spanned_pages"),
    ("pglist_data_node_id", "pglist_data", "node_id"),
    ("zone_zone_start_pfn", "zone", "zone_start_pfn"),
    ("zone_spanned_pages", "zone", "spanned_pages"),
    ("zone_present_pages", "zone", "present_pages"),
    ("zone_managed_pages", "zone", "managed_pages"),
    ("zone_name", "zone", "name"),
    ("zone_free_area", "zone", "free_area"),
    ("free_area_nr_free", "free_area", "nr_free"),
]
_MEMCG_ONLY = {"task_struct_cgroups", "css_set_subsys", "mem_cgroup_css",
               "mem_cgroup_nodeinfo", "mem_cgroup_per_node_lruvec", "lruvec_pgdat"}

PGDAT_PATHS = ("auto", "kallsyms", "memcg")


class WalkLayout:
    """The snapshot record of bpf/mfd.h, for one (nodes, zones, orders) shape."""

    NAME_LEN = 16

    def __init__(self, nr_nodes: int, nr_zones: int, nr_orders: int):
        self.nr_nodes, self.nr_zones, self.nr_orders = nr_nodes, nr_zones, nr_orders
        zone = "4Q%dQ%ds" % (nr_orders, self.NAME_LEN)
        node = "6Q" + zone * nr_zones
        self.struct = struct.Struct("<3Q" + node * nr_nodes)
        self.zone_fields = 4 + nr_orders + 1
        self.node_fields = 6 + nr_zones * self.zone_fields

    @property
    def size(self) -> int:
        return self.struct.size

    def decode(self, buf, when: float, pgdat_path: str) -> "tuple[int, int, Snapshot]":
        v = self.struct.unpack_from(buf)
        seq, err = v[0], v[1]
        nodes: List[NodeSnapshot] = []
        o = self.nr_orders
        for n in range(self.nr_nodes):
            base = 3 + n * self.node_fields
            pgdat, start, present, spanned, nid, nr_zones = v[base:base + 6]
            if not pgdat:
                continue
            zones = []
            for z in range(self.nr_zones):
                zb = base + 6 + z * self.zone_fields
                name = v[zb + 4 + o].split(b"\0", 1)[0].decode("ascii", "replace")
                if not name:
                    continue  # slot past the kernel's zones (no name pointer)
                zones.append(ZoneSnapshot(node=nid, zone=name, zone_idx=z,
                                          start_pfn=v[zb], spanned=v[zb + 1],
                                          present=v[zb + 2], managed=v[zb + 3],
                                          nr_free=tuple(v[zb + 4:zb + 4 + o])))
            nodes.append(NodeSnapshot(node=nid, nr_zones=nr_zones, start_pfn=start,
                                      present=present, spanned=spanned,
                                      zones=tuple(zones), pgdat=pgdat))
        snap = Snapshot(time=when, source="bpf", nr_orders=o, nodes=tuple(nodes),
                        pgdat_path=pgdat_path)
        return seq, err, snap


class ZonewalkSource:
    """Loads zonewalk.bpf.c with BCC; ``snapshot()`` triggers one walk and reads it back."""

    name = "bpf"

    def __init__(self, pgdat_path: str = "auto", note: Callable[[str], None] = stderr_note,
                 btf_path: Optional[str] = None, load: bool = True, debug: bool = False,
                 loader: str = "auto"):
        """Prepare (BTF offsets, pgdat path, cflags) and, with ``load``, compile and
        attach (``loader``: ebpf.Program's auto, helper or inprocess)."""
        self.note = note
        self.debug = debug
        self.loader = loader
        self._program = None
        if load:
            ebpf.require_root("the eBPF source", " (or use --source procfs)")
            ebpf.start_loader(loader)
        self.btf = ebpf.load_btf(btf_path, "; use --source procfs", note)
        self.nodes = facts.memory_nodes()
        self.pgdat_path, self.path_defines = self._choose_pgdat_path(pgdat_path)
        self.nr_orders = self.btf.array_len("zone", "free_area")
        self.nr_zones = self.btf.array_len("pglist_data", "node_zones")
        self.layout = WalkLayout(len(self.nodes), self.nr_zones, self.nr_orders)
        self.cflags = self._cflags()
        # The parsed BTF is ~11 MB of a process that may run for months: every
        # answer needed is in the cflags and the layout now.
        self.btf = None
        self._seq = 0
        if load:
            self._load()

    # -- set-up -----------------------------------------------------------

    def _choose_pgdat_path(self, want: str):
        if want not in PGDAT_PATHS:
            raise ValueError(want)
        if want in ("auto", "kallsyms"):
            # Reading /proc/kallsyms costs ~90 ms; skip it when the config says
            # data symbols are not there (no CONFIG_KALLSYMS_ALL, as here).
            syms: Dict[str, int] = {}
            if facts.kernel_config("KALLSYMS_ALL") != "":
                syms = facts.kallsyms_lookup(["node_data", "contig_page_data"])
            if "node_data" in syms:
                return "kallsyms", {"MFD_PGDAT_PATH": 1, "MFD_NODE_DATA": "0x%xULL" % syms["node_data"]}
            if "contig_page_data" in syms:
                return "kallsyms", {"MFD_PGDAT_PATH": 1,
                                    "MFD_CONTIG_PAGE_DATA": "0x%xULL" % syms["contig_page_data"]}
            if want == "kallsyms":
                raise KernelUnsupported("--pgdat-path kallsyms: no node_data or "
                                        "contig_page_data in /proc/kallsyms (kernel without "
                                        "CONFIG_KALLSYMS_ALL): use --pgdat-path memcg or auto")
        if not self.btf.has_member("mem_cgroup", "nodeinfo"):
            raise KernelUnsupported("cannot find the nodes: no data symbols in /proc/kallsyms "
                                    "and no memory cgroups (CONFIG_MEMCG); use --source procfs")
        if want == "auto":
            self.note("no node_data/contig_page_data in /proc/kallsyms (no CONFIG_KALLSYMS_ALL): "
                      "reaching the nodes through the memory cgroup")
        return "memcg", {"MFD_PGDAT_PATH": 2,
                         "MFD_MEMORY_CGRP_ID": self.btf.enum_value("cgroup_subsys_id",
                                                                   "memory_cgrp_id")}

    def _cflags(self) -> List[str]:
        defs: Dict[str, object] = {"MFD_TGID": os.getpid()}
        defs.update(ebpf.sizes(self.btf, self.nodes))
        defs.update({"MFD_SIZEOF_zone": self.btf.sizeof("zone"),
                     "MFD_SIZEOF_free_area": self.btf.sizeof("free_area")})
        defs.update(self.path_defines)
        for macro, st, member in _OFFSETS:
            if macro in _MEMCG_ONLY and self.pgdat_path != "memcg":
                continue
            defs["MFD_OFF_" + macro] = self.btf.member_offset(st, member)
        return ebpf.cflags(defs)

    def _load(self) -> None:
        # syscalls:* exist only with CONFIG_FTRACE_SYSCALLS.
        ebpf.require_tracepoints([("syscalls", "sys_enter_getppid")], self.note, HINT,
                                 lambda _: " (kernel without CONFIG_FTRACE_SYSCALLS)")
        self._program = ebpf.Program("the eBPF zone walker", self.source_text(), self.cflags,
                                     self.note, self.debug, HINT, loader=self.loader)
        table = self._program["snapshot"]
        if ctypes.sizeof(table.Leaf) != self.layout.size:
            self.close()
            raise SourceUnavailable("snapshot record size mismatch between bpf/mfd.h and "
                                    f"sources/zonewalk.py ({ctypes.sizeof(table.Leaf)} != "
                                    f"{self.layout.size})")
        self._fd = table.map_fd
        self._lookup = bpfmap.libbpf().bpf_map_lookup_elem
        self._key = ctypes.c_int(0)
        self._leaf = table.Leaf()
        self._key_p = ctypes.byref(self._key)
        self._leaf_p = ctypes.byref(self._leaf)
        # The walk takes the node ids to visit from the map value itself (see
        # bpf/zonewalk.bpf.c for why not from a constant array).
        for i, nid in enumerate(self.nodes):
            self._leaf.nodes[i].node_id = nid
        table[self._key] = self._leaf

    # -- sampling ---------------------------------------------------------

    def snapshot(self) -> Snapshot:
        when = time.time()
        os.getppid()  # fires syscalls:sys_enter_getppid: the walk runs now, in this task
        if self._lookup(self._fd, self._key_p, self._leaf_p) != 0:
            raise SourceUnavailable("cannot read the snapshot map")
        seq, err, snap = self.layout.decode(memoryview(self._leaf).cast("B"), when,
                                            self.pgdat_path)
        if seq == self._seq:
            raise SourceUnavailable("the eBPF zone walker did not run (tracepoint not firing)")
        self._seq = seq
        if err & ERR_NO_MEMCG:
            raise SourceUnavailable("no memory cgroup for this task (booted with "
                                    "cgroup_disable=memory?); use --source procfs")
        if not snap.nodes:
            raise SourceUnavailable(f"the eBPF zone walker found no node (error bits {err:#x})")
        return snap

    def close(self) -> None:
        if self._program is not None:
            program, self._program = self._program, None
            program.close()

    def source_text(self) -> str:
        return ebpf.source_text([PROGRAM])
