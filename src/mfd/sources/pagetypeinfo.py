"""Parse /proc/pagetypeinfo (mm/vmstat.c pagetypeinfo_show()).

The file is expensive: the kernel walks every free list (up to 100000
entries each) and every pageblock of every zone under zone->lock with
interrupts off (walk_zones_in_node()).  mfd reads it only on request
(``mfd can``, ``mfd doctor``), never per interval, and says what it cost.

Per node, in the order the seq_file prints them (frag_start/frag_next over
the online pgdats, so the header repeats for every node):

    Page block order: 9
    Pages per block:  512

    Free pages count per migrate type at order       0      1 ...
    Node    0, zone      DMA, type    Unmovable      0      0 ...

    Number of blocks type     Unmovable      Movable ...
    Node 0, zone      DMA            1            7 ...

    [Number of mixed blocks    Unmovable ...]   CONFIG_PAGE_OWNER, page_owner=on
"""
from __future__ import annotations

from typing import Dict, List, Optional, Set, Tuple

from ..errors import MfdError
from ..model.pagetypes import PageTypeInfo

PAGETYPEINFO = "/proc/pagetypeinfo"
CAP = 100000          # the free_list walk stops here; the cell then reads ">100000"
MAX_BYTES = 32 << 20  # 1024 nodes x 6 zones x 6 types is about 4 MB


class PageTypeInfoError(MfdError):
    """A pagetypeinfo file mfd cannot read (one line, naming the line)."""


def _bad(path: str, lineno: int, line: str, why: str) -> PageTypeInfoError:
    shown = line if len(line) <= 80 else line[:77] + "..."
    return PageTypeInfoError(f"cannot parse {path} line {lineno}: {shown!r} ({why})")


def _count(token: str) -> Tuple[int, bool]:
    """A free-count cell: (value, capped)."""
    capped = token.startswith(">")
    digits = token[1:] if capped else token
    if not digits.isdigit():
        raise ValueError(token)
    return int(digits), capped


def _zone_head(parts: List[str]) -> Tuple[int, str, List[str]]:
    """'Node', 'N,', 'zone', 'NAME[,]', rest...  -> (node, name, rest)."""
    if len(parts) < 4 or parts[0] != "Node" or parts[2] != "zone":
        raise ValueError("not a zone row")
    node = parts[1].rstrip(",")
    if not node.isdigit():
        raise ValueError("node id")
    return int(node), parts[3].rstrip(","), parts[4:]


def parse_pagetypeinfo(text: str, path: str = PAGETYPEINFO) -> PageTypeInfo:
    order = per_block = None
    types: Tuple[str, ...] = ()
    free: Dict[Tuple[int, str], Dict[str, Tuple[int, ...]]] = {}
    blocks: Dict[Tuple[int, str], Dict[str, int]] = {}
    mixed: Optional[Dict[Tuple[int, str], Dict[str, int]]] = None
    capped: Set[Tuple[int, str, str, int]] = set()
    nr_orders = None
    section = None          # "free", "blocks", "mixed"
    for lineno, line in enumerate(text.split("\n"), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if line.startswith("Page block order:"):
                value = int(parts[3])
                if order is not None and value != order:
                    raise ValueError("a different pageblock order for another node")
                order, section = value, None
            elif line.startswith("Pages per block:"):
                per_block = int(parts[3])
            elif line.startswith("Free pages count per migrate type at order"):
                orders = [int(p) for p in parts[8:]]
                if orders != list(range(len(orders))) or not orders:
                    raise ValueError("order columns")
                nr_orders, section = len(orders), "free"
            elif line.startswith("Number of blocks type"):
                names = tuple(parts[4:])
                if types and names != types:
                    raise ValueError("a different migratetype set for another node")
                types, section = names, "blocks"
            elif line.startswith("Number of mixed blocks"):
                if tuple(parts[4:]) != types:
                    raise ValueError("mixed-block columns differ from the block columns")
                section = "mixed"
                mixed = {} if mixed is None else mixed
            elif section == "free":
                node, zone, rest = _zone_head(parts)
                if len(rest) != 2 + nr_orders or rest[0] != "type":
                    raise ValueError(f"expected 'type NAME' and {nr_orders} counts")
                cells = [_count(t) for t in rest[2:]]
                mtype = rest[1]
                free.setdefault((node, zone), {})[mtype] = tuple(v for v, _ in cells)
                capped.update((node, zone, mtype, o) for o, (_, c) in enumerate(cells) if c)
            elif section in ("blocks", "mixed"):
                node, zone, rest = _zone_head(parts)
                if len(rest) != len(types) or not all(t.isdigit() for t in rest):
                    raise ValueError(f"expected {len(types)} block counts")
                row = dict(zip(types, (int(t) for t in rest)))
                (blocks if section == "blocks" else mixed)[(node, zone)] = row
            else:
                raise ValueError("unexpected line")
        except (ValueError, IndexError) as e:
            raise _bad(path, lineno, line, str(e) or "bad number") from None
    if order is None or per_block is None or nr_orders is None or not types:
        raise PageTypeInfoError(f"cannot parse {path}: no pageblock order, free counts or "
                                "block counts (truncated file?)")
    if per_block != 1 << order:
        raise PageTypeInfoError(f"cannot parse {path}: {per_block} pages per block is not "
                                f"2^{order}")
    missing = [k for k in free if k not in blocks]
    if missing:
        raise PageTypeInfoError(f"cannot parse {path}: node {missing[0][0]} zone "
                                f"{missing[0][1]} has free counts but no block counts "
                                "(truncated file?)")
    return PageTypeInfo(order, per_block, types, free, blocks, frozenset(capped), mixed)


def read_pagetypeinfo(path: str = PAGETYPEINFO) -> PageTypeInfo:
    """Read (root only: mode 0400) and parse."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except PermissionError:
        raise PageTypeInfoError(f"cannot read {path}: it is readable by root only "
                                "(run with sudo)") from None
    except OSError as e:
        raise PageTypeInfoError(f"cannot read {path}: {e.strerror}") from None
    if len(data) > MAX_BYTES:
        raise PageTypeInfoError(f"{path} is over {MAX_BYTES >> 20} MiB: not read")
    return parse_pagetypeinfo(data.decode("ascii", "replace"), path)
