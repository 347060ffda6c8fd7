"""Facts about the running kernel: nodes, kallsyms, kconfig, kprobes, tracepoint
fields, and the names of its enums (from BTF)."""
from __future__ import annotations

import itertools
import os
from typing import Dict, List, Optional, Set, Tuple

from .tracefs import TRACEFS


def parse_cpulist(text: str) -> List[int]:
    """Parse the kernel's list format ("0-1,3") used by node/online, has_memory."""
    out: List[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def memory_nodes(sysfs: str = "/sys") -> List[int]:
    """Node ids with memory (N_MEMORY), as /proc/buddyinfo walks them.

    Falls back to the online nodes on kernels without has_memory (before
    2.6.37), and to node 0 when the node directory is missing (!CONFIG_NUMA).
    """
    base = os.path.join(sysfs, "devices", "system", "node")
    for name in ("has_memory", "online"):
        try:
            with open(os.path.join(base, name)) as f:
                nodes = parse_cpulist(f.read())
            if nodes:
                return nodes
        except (OSError, ValueError):
            continue
    return [0]


def kallsyms_lookup(names, path: str = "/proc/kallsyms") -> Dict[str, int]:
    """Addresses of the given vmlinux symbols; absent or zeroed (kptr_restrict) ones are left out.

    One regex over the whole file: /proc/kallsyms has 100k+ lines and a
    Python loop over them costs more than generating the file does.
    """
    import re

    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError:
        return {}
    alt = b"|".join(re.escape(n.encode()) for n in names)
    found: Dict[str, int] = {}
    for m in re.finditer(rb"^([0-9a-fA-F]+) \S (" + alt + rb")$", text, re.M):
        addr = int(m.group(1), 16)
        if addr:
            found.setdefault(m.group(2).decode(), addr)
    return found


def kernel_release() -> str:
    return os.uname().release


def read_first_line(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.readline().strip()
    except OSError:
        return None


def kernel_config(option: str) -> Optional[str]:
    """Value of a CONFIG_ option ("y", "m", a string) from /proc/config.gz or
    /boot/config-$(uname -r); "" when known to be unset; None when no config is readable."""
    import gzip

    key = option if option.startswith("CONFIG_") else "CONFIG_" + option
    sources = [("/proc/config.gz", gzip.open),
               ("/boot/config-" + os.uname().release, open)]
    for path, opener in sources:
        try:
            with opener(path, "rt") as f:
                for line in f:
                    if line.startswith(key + "="):
                        return line.split("=", 1)[1].strip()
                    if line.startswith("# " + key + " is not set"):
                        return ""
            return ""
        except OSError:
            continue
    return None


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
    found = kallsyms_lookup(ALLOC_ENTRY_CANDIDATES, kallsyms)
    for name in ALLOC_ENTRY_CANDIDATES:
        if name in found:
            return name
    return None


def kernel_version(release: Optional[str] = None) -> Tuple[int, ...]:
    """(major, minor, patch) of the running kernel ("6.18.44-fc-v1147" ->
    (6, 18, 44)): for rules that changed between releases."""
    text = release if release is not None else kernel_release()
    nums = []
    for part in text.split("-", 1)[0].split(".")[:3]:
        digits = "".join(itertools.takewhile(str.isdigit, part))
        if not digits:
            break
        nums.append(int(digits))
    return tuple(nums) if len(nums) >= 2 else (0, 0)


THP_PMD_SIZE = "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"
HUGETLB_DIR = "/sys/kernel/mm/hugepages"


def hpage_pmd_size(path: str = THP_PMD_SIZE) -> Optional[int]:
    """The THP size in bytes (HPAGE_PMD_SIZE), None without CONFIG_TRANSPARENT_HUGEPAGE."""
    line = read_first_line(path)
    return int(line) if line and line.isdigit() and int(line) > 0 else None


def pageblock_order_guess(page_size: int = 0) -> int:
    """pageblock_order without reading /proc/pagetypeinfo: HPAGE_PMD_ORDER
    where THP is configured (6.12+ take it so, and HUGETLB_PAGE_ORDER before
    is the same on x86-64 and arm64 with 4 KiB pages), else 9."""
    page_size = page_size or os.sysconf("SC_PAGE_SIZE")
    thp = hpage_pmd_size()
    return (thp // page_size).bit_length() - 1 if thp else 9


def hugetlb_sizes(path: str = HUGETLB_DIR) -> List[int]:
    """Every hugetlb page size in bytes (hugepages-2048kB ...), smallest first."""
    try:
        names = os.listdir(path)
    except OSError:
        return []
    sizes = []
    for name in names:
        kb = name[len("hugepages-"):-len("kB")] if name.startswith("hugepages-") and \
            name.endswith("kB") else ""
        if kb.isdigit() and int(kb) > 0:
            sizes.append(int(kb) << 10)
    return sorted(sizes)


def sysctl_int(name: str, default: Optional[int] = None, root: str = "/proc/sys") -> Optional[int]:
    """An integer sysctl ("vm/extfrag_threshold"), ``default`` when absent or unreadable."""
    line = read_first_line(os.path.join(root, name))
    try:
        return int(line) if line is not None else default
    except ValueError:
        return default


def kswapd_running(proc: str = "/proc", limit: int = 1 << 20) -> Dict[int, bool]:
    """node -> whether its kswapd is on a CPU or runnable (state R), as
    should_proactive_compact_node()'s kswapd_is_running() asks.  Found by
    comm ("kswapd<node>") among /proc's tasks, at most ``limit`` of them."""
    out: Dict[int, bool] = {}
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()][:limit]
    except OSError:
        return out
    for pid in pids:
        try:
            with open(os.path.join(proc, pid, "stat"), "rb") as f:
                stat = f.read(512).decode("ascii", "replace")
        except OSError:
            continue
        name, _, rest = stat.partition("(")[2].rpartition(")")
        if name.startswith("kswapd") and name[6:].isdigit():
            out[int(name[6:])] = rest.split()[:1] == ["R"]
    return out
