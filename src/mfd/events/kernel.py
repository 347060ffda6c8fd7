"""What the running kernel offers the event groups: names from BTF, tracepoint
fields, kprobe support and the page allocator's entry point."""
from __future__ import annotations

import os
from typing import Dict, Optional, Set

from .. import sysfs
from ..tracing import TRACEFS

# Only the spelling is ours: which types exist and their values come from the
# kernel's BTF `enum migratetype` (CMA exists only with CONFIG_CMA, HighAtomic
# moved in 6.x).  The spellings are those of mm/page_alloc.c's
# migratetype_names[], which /proc/pagetypeinfo prints.
_MIGRATETYPE_SPELLING = {"UNMOVABLE": "Unmovable", "MOVABLE": "Movable",
                         "RECLAIMABLE": "Reclaimable", "HIGHATOMIC": "HighAtomic",
                         "CMA": "CMA", "ISOLATE": "Isolate"}
# Enumerators of enum migratetype that are not types: the count of the
# per-CPU-list types (an alias of the next type), the end markers.
_MIGRATETYPE_ALIASES = {"MIGRATE_PCPTYPES", "MIGRATE_TYPES"}

# kprobe PMU: present only with CONFIG_KPROBES (and perf events).
KPROBE_PMU = "/sys/bus/event_source/devices/kprobe"

# The allocator's entry, newest name first.  Every page allocation passes it,
# and kmem:mm_page_alloc fires at its end.
#   __alloc_frozen_pages_noprof  6.14+: the allocator's body since frozen-page
#       allocation came in; __alloc_pages_noprof became a wrapper around it
#       and slab calls it directly, so only it sees every allocation.
#   __alloc_pages_noprof  6.10-6.13 (memory allocation profiling renamed the
#       allocators with a _noprof suffix).
#   __alloc_pages  5.13-6.9 ("mm/page_alloc: combine __alloc_pages and
#       __alloc_pages_nodemask").
#   __alloc_pages_nodemask  before 5.13.
ALLOC_ENTRY_CANDIDATES = ("__alloc_frozen_pages_noprof", "__alloc_pages_noprof",
                          "__alloc_pages", "__alloc_pages_nodemask")


def migratetype_names(btf) -> Dict[int, str]:
    """{value: "Unmovable", ...} from BTF ``enum migratetype``, aliases skipped."""
    out: Dict[int, str] = {}
    for name, value in btf.enum_values("migratetype").items():
        if not name.startswith("MIGRATE_") or name in _MIGRATETYPE_ALIASES:
            continue
        short = name[len("MIGRATE_"):]
        out.setdefault(value, _MIGRATETYPE_SPELLING.get(short, short.capitalize()))
    return out


def compact_result_names(btf) -> Dict[int, str]:
    """{value: "success", ...} from BTF ``enum compact_result``, spelled as the
    compaction tracepoints print them (COMPACT_PARTIAL_SKIPPED -> partial_skipped)."""
    return {value: name[len("COMPACT_"):].lower()
            for name, value in btf.enum_values("compact_result").items()
            if name.startswith("COMPACT_")}


def tracepoint_fields(category: str, event: str, tracefs: str = TRACEFS) -> Set[str]:
    """Field names in the event's format file (empty when the event is missing)."""
    path = os.path.join(tracefs, "events", category, event, "format")
    fields: Set[str] = set()
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("field:"):
                    decl = line[len("field:"):].split(";", 1)[0]
                    fields.add(decl.split()[-1].split("[", 1)[0])
    except OSError:
        pass
    return fields


def kprobes_available(pmu: str = KPROBE_PMU) -> bool:
    return os.path.isdir(pmu)


def alloc_entry(kallsyms: str = "/proc/kallsyms") -> Optional[str]:
    """The newest of ALLOC_ENTRY_CANDIDATES this kernel has, or None."""
    found = sysfs.kallsyms_lookup(ALLOC_ENTRY_CANDIDATES, kallsyms)
    for name in ALLOC_ENTRY_CANDIDATES:
        if name in found:
            return name
    return None
