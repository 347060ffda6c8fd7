"""Snapshot of every node and zone from /proc/buddyinfo and /proc/zoneinfo (no BPF, no root).

Both files come from mm/vmstat.c:

* /proc/buddyinfo (frag_show_print) has one line per *populated* zone
  (``present_pages != 0``): ``"Node %d, zone %8s "`` then ``"%6lu "`` for each
  of the NR_PAGE_ORDERS ``free_area[order].nr_free`` counts.
* /proc/zoneinfo (zoneinfo_show_print) has a block for *every* zone of every
  online node, empty ones included, in ``enum zone_type`` order, so a zone's
  position inside its node is its index in ``pgdat->node_zones[]``.  Each block
  starts with ``"Node %d, zone %8s"``; the first populated zone of a node adds
  "per-node stats"; every zone prints ``pages free``, ``spanned``, ``present``,
  ``managed`` and the ``protection:`` line; unpopulated zones stop there,
  populated ones go on with zone and NUMA counters, a ``pagesets`` section of
  seven lines per online CPU, ``node_unreclaimable:`` and ``start_pfn:``.

The two files are read one after the other, not atomically: the counts are
diagnostics the kernel prints without a lock, and a zone can be onlined or
offlined between the two reads, which :class:`ProcfsSource` reports as a
:class:`ProcfsError` (read again).
"""
from __future__ import annotations

import os
import time
from typing import Callable, Dict, List, Optional, Tuple

from ..errors import MfdError
from ..model import NodeSnapshot, Snapshot, ZoneSnapshot
from ..model.pagetypes import ZoneLimits

__all__ = ["ProcfsError", "parse_buddyinfo", "parse_zoneinfo", "ProcfsSource"]

BUDDYINFO = "/proc/buddyinfo"
ZONEINFO = "/proc/zoneinfo"


class ProcfsError(MfdError):
    """/proc/buddyinfo or /proc/zoneinfo could not be read or understood (one-line message)."""


def _short(line: str, limit: int = 80) -> str:
    line = line.rstrip("\n")
    if len(line) > limit:
        line = line[:limit - 3] + "..."
    return repr(line)


def _parse_header(line: str) -> Optional[Tuple[int, str, List[str]]]:
    """``Node N, zone NAME rest...`` -> (N, NAME, rest tokens); None when malformed."""
    head, comma, rest = line.partition(",")
    if not comma:
        return None
    head_parts = head.split()
    rest_parts = rest.split()
    if (len(head_parts) != 2 or head_parts[0] != "Node" or len(rest_parts) < 2
            or rest_parts[0] != "zone"):
        return None
    node = head_parts[1]
    if not (node.isdigit() and node.isascii()):
        return None
    return int(node), rest_parts[1], rest_parts[2:]


def _is_number(token: str) -> bool:
    # Plain unsigned decimal only: int() alone would also take "+5", "1_000" or "٣".
    return token.isdigit() and token.isascii()


def parse_buddyinfo(text: str, path: str = BUDDYINFO) -> Dict[Tuple[int, str], Tuple[int, ...]]:
    """Parse /proc/buddyinfo: ``{(node, zone): (nr_free[0], nr_free[1], ...)}`` in file order.

    Any whitespace may separate the fields; blank lines are skipped.  Every
    line must have at least one count and all lines the same number of counts
    (NR_PAGE_ORDERS); anything else raises :class:`ProcfsError` naming ``path``
    and the line.
    """
    result: Dict[Tuple[int, str], Tuple[int, ...]] = {}
    nr_orders = -1
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line or line.isspace():
            continue
        parsed = _parse_header(line)
        if parsed is None or not parsed[2]:
            raise ProcfsError(f"cannot parse {path} line {lineno}: {_short(line)} "
                              "(expected 'Node N, zone NAME counts...')")
        node, zone, counts = parsed
        for token in counts:
            if not _is_number(token):
                raise ProcfsError(f"cannot parse {path} line {lineno}: bad count {token!r} "
                                  f"in {_short(line)}")
        if nr_orders < 0:
            nr_orders = len(counts)
        elif len(counts) != nr_orders:
            raise ProcfsError(f"cannot parse {path} line {lineno}: {len(counts)} counts, "
                              f"earlier lines have {nr_orders}")
        key = (node, zone)
        if key in result:
            raise ProcfsError(f"cannot parse {path} line {lineno}: node {node} zone {zone} "
                              "listed twice")
        result[key] = tuple(map(int, counts))
    return result


# First token of the zoneinfo lines the parser reads -> (field, position of
# the number in the split line).  "pages" is only "pages free" (checked).
_ZONEINFO_FIELDS = {
    "Node": ("", 0),
    "pages": ("free", 2),
    "spanned": ("spanned", 1),
    "present": ("present", 1),
    "managed": ("managed", 1),
    "start_pfn:": ("start_pfn", 1),
}


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def _first_token_at(text: str, word: str, start: int, limit: int) -> int:
    """Offset of the first ``word`` in ``text[start:limit]`` that is the first token of its line."""
    found = text.find(word, start, limit)
    while found >= 0:
        begin = _line_start(text, found)
        after = found + len(word)
        if ((begin == found or text[begin:found].isspace())
                and (after >= len(text) or text[after] in " \t\r\n")):
            return found
        found = text.find(word, found + 1, limit)
    return -1


def _next_header(text: str, pos: int) -> int:
    """Offset of the next zone header ("Node" as a line's first token) at or after ``pos``,
    or len(text)."""
    found = _first_token_at(text, "Node", pos, len(text))
    return len(text) if found < 0 else found


def _zoneinfo_cuts(text: str) -> List[Tuple[int, int]]:
    """Spans of /proc/zoneinfo that hold nothing the parser reads, as (start, end) offsets.

    In every zone block two runs of lines are skipped with str.find instead of
    being split one by one:

    * after "per-node stats" up to the "pages free" line: the node counters
      (about 50 lines, first populated zone of each node only);
    * after "protection:" up to the "start_pfn:" line: zone and NUMA counters
      and the "pagesets" section, seven lines per online CPU (thousands on a
      big machine).  On an unpopulated zone this run is empty.

    A run whose end line is missing (truncated file) is cut only up to the
    next zone header, or not at all in the last block, so the line-by-line
    parse still sees, and rejects, whatever is there.
    """
    cuts: List[Tuple[int, int]] = []
    size = len(text)
    block = _next_header(text, 0)
    while block < size:
        limit = _next_header(text, block + 4)
        found = _first_token_at(text, "per-node", block, limit)
        if found >= 0:
            nxt = text.find("\n", found, limit) + 1
            if nxt:
                end = -1
                pages = _first_token_at(text, "pages", nxt, limit)
                while pages >= 0:
                    if text[pages + 5:text.find("\n", pages) + 1 or size].split()[:1] == ["free"]:
                        end = _line_start(text, pages)
                        break
                    pages = _first_token_at(text, "pages", pages + 5, limit)
                if end > nxt:
                    cuts.append((nxt, end))
        found = _first_token_at(text, "protection:", block, limit)
        if found >= 0:
            nxt = text.find("\n", found, limit) + 1
            if nxt:
                end = text.rfind("start_pfn", nxt, limit)
                if end >= 0:
                    end = _line_start(text, end)
                elif limit < size:
                    end = limit
                if end > nxt:
                    cuts.append((nxt, end))
        block = limit
    return cuts


def _cut(text: str) -> Tuple[str, List[Tuple[int, int, int]]]:
    """Apply :func:`_zoneinfo_cuts`: the shortened text and, for error messages,
    every cut as ``(offset in the shortened text, start, end in text)``."""
    spans = _zoneinfo_cuts(text)
    if not spans:
        return text, []
    pieces: List[str] = []
    cuts: List[Tuple[int, int, int]] = []
    kept = 0
    start = 0
    for begin, end in spans:
        pieces.append(text[start:begin])
        kept += begin - start
        cuts.append((kept, begin, end))
        start = end
    pieces.append(text[start:])
    return "".join(pieces), cuts


def parse_zoneinfo(text: str, path: str = ZONEINFO) -> List[dict]:
    """Parse /proc/zoneinfo into one dict per zone, in file order.

    Keys: ``node``, ``zone``, ``zone_idx`` (position of the zone within its
    node, i.e. its ``enum zone_type``), ``spanned``, ``present``, ``managed``,
    ``start_pfn`` (0 for an unpopulated zone, which the kernel prints without
    it) and ``free`` (the ``pages free`` line, NR_FREE_PAGES).

    Tolerant of spacing and of lines it does not know; strict about the
    numbers it reads.  A block lacking ``pages free``, ``spanned`` or
    ``present``, or a populated block lacking ``start_pfn:`` (a truncated
    file), raises :class:`ProcfsError`.  A missing ``managed`` line (kernels
    before 3.8) reads as ``managed = present``.
    """
    short, cuts = _cut(text)

    def lineno(index: int) -> int:
        """1-based line number in ``text`` of line ``index`` of ``short`` (errors only)."""
        removed = sum(text.count("\n", begin, end) for at, begin, end in cuts
                      if short.count("\n", 0, at) <= index)
        return index + 1 + removed

    zones: List[dict] = []
    per_node: Dict[int, int] = {}
    cur: Optional[dict] = None
    cur_index = 0
    fields = _ZONEINFO_FIELDS
    for index, line in enumerate(short.split("\n")):
        parts = line.split()
        if not parts:
            continue
        entry = fields.get(parts[0])
        if entry is None:
            continue
        field, pos = entry
        if not field:                   # "Node N, zone NAME"
            parsed = _parse_header(line)
            if parsed is None or parsed[2]:
                raise ProcfsError(f"cannot parse {path} line {lineno(index)}: {_short(line)} "
                                  "(expected 'Node N, zone NAME')")
            if cur is not None:
                _finish_zone(cur, path, lineno, cur_index)
            node, name, _ = parsed
            zone_idx = per_node.get(node, 0)
            per_node[node] = zone_idx + 1
            cur = {"node": node, "zone": name, "zone_idx": zone_idx}
            zones.append(cur)
            cur_index = index
            continue
        if pos == 2 and (len(parts) < 2 or parts[1] != "free"):
            continue                    # "pages" but not "pages free"
        if cur is None:
            raise ProcfsError(f"cannot parse {path} line {lineno(index)}: {_short(line)} "
                              "before the first 'Node N, zone NAME' line")
        if len(parts) <= pos or not _is_number(parts[pos]):
            raise ProcfsError(f"cannot parse {path} line {lineno(index)}: "
                              f"bad number in {_short(line)}")
        cur[field] = int(parts[pos])
    if cur is not None:
        _finish_zone(cur, path, lineno, cur_index)
    return zones


def _finish_zone(zone: dict, path: str, lineno: Callable[[int], int], index: int) -> None:
    """Check one parsed zoneinfo block and fill in the optional fields."""
    for field, label in (("free", "pages free"), ("spanned", "spanned"), ("present", "present")):
        if field not in zone:
            raise ProcfsError(f"cannot parse {path}: node {zone['node']} zone {zone['zone']} "
                              f"(line {lineno(index)}) has no '{label}' line (truncated file?)")
    if "managed" not in zone:
        zone["managed"] = zone["present"]
    if "start_pfn" not in zone:
        if zone["present"]:
            raise ProcfsError(f"cannot parse {path}: populated node {zone['node']} zone "
                              f"{zone['zone']} (line {lineno(index)}) has no 'start_pfn:' line "
                              "(truncated file?)")
        zone["start_pfn"] = 0


# Lines of a zone block parse_zone_limits() reads: first token -> field.
_LIMIT_FIELDS = {"boost": "boost", "min": "min", "low": "low", "high": "high",
                 "promo": "promo", "managed": "managed", "present": "present",
                 "nr_free_cma": "nr_free_cma", "nr_free_pages_blocks": "nr_free_pages_blocks"}


def parse_zone_limits(text: str, path: str = ZONEINFO) -> List[ZoneLimits]:
    """Each zone's watermarks, lowmem_reserve and free counts from
    /proc/zoneinfo, in file order.  The whole file is read line by line
    (parse_zoneinfo() skips the counters this needs): for ``mfd can`` and
    ``mfd doctor``, not for every interval."""
    out: List[ZoneLimits] = []
    per_node: Dict[int, int] = {}
    cur: Optional[dict] = None
    start = 0

    def finish() -> None:
        if cur is None:
            return
        missing = [f for f in ("free", "min", "low", "high", "present") if f not in cur]
        if missing:
            raise ProcfsError(f"cannot parse {path}: node {cur['node']} zone {cur['zone']} "
                              f"(line {start}) has no '{missing[0]}' line (truncated file?)")
        out.append(ZoneLimits(
            node=cur["node"], zone=cur["zone"], zone_idx=cur["zone_idx"], free=cur["free"],
            boost=cur.get("boost", 0), min=cur["min"], low=cur["low"], high=cur["high"],
            promo=cur.get("promo"), managed=cur.get("managed", cur["present"]),
            present=cur["present"], protection=tuple(cur.get("protection", ())),
            nr_free_cma=cur.get("nr_free_cma", 0),
            nr_free_pages_blocks=cur.get("nr_free_pages_blocks"),
            pcp_count=cur.get("pcp_count", 0)))

    for lineno, line in enumerate(text.split("\n"), 1):
        parts = line.split()
        if not parts:
            continue
        head = parts[0]
        if head == "Node":
            parsed = _parse_header(line)
            if parsed is None or parsed[2]:
                raise ProcfsError(f"cannot parse {path} line {lineno}: {_short(line)} "
                                  "(expected 'Node N, zone NAME')")
            finish()
            node, name, _ = parsed
            idx = per_node.get(node, 0)
            per_node[node] = idx + 1
            cur, start = {"node": node, "zone": name, "zone_idx": idx}, lineno
            continue
        if cur is None:
            continue
        try:
            if head == "pages" and parts[1:2] == ["free"]:
                cur["free"] = int(parts[2])
            elif head == "protection:":
                inner = line.split("(", 1)[1].rsplit(")", 1)[0]
                cur["protection"] = [int(t) for t in inner.replace(",", " ").split()]
            elif head == "count:":
                cur["pcp_count"] = cur.get("pcp_count", 0) + int(parts[1])
            elif head in _LIMIT_FIELDS and len(parts) == 2:
                cur[_LIMIT_FIELDS[head]] = int(parts[1])
        except (ValueError, IndexError):
            raise ProcfsError(f"cannot parse {path} line {lineno}: bad number in "
                              f"{_short(line)}") from None
    finish()
    return out


def read_zone_limits(path: str = ZONEINFO) -> List[ZoneLimits]:
    """parse_zone_limits() of the running kernel's /proc/zoneinfo."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ProcfsError(f"cannot read {path}: {e.strerror}") from None
    return parse_zone_limits(text, path)


class ProcfsSource:
    """Snapshots from ``<root>/buddyinfo`` and ``<root>/zoneinfo``.

    ``root`` is "/proc" on a live system; tests point it at a directory of
    fixture files.  Needs no privileges.
    """

    name = "procfs"

    def __init__(self, root: str = "/proc"):
        self.root = root
        self.buddyinfo_path = os.path.join(root, "buddyinfo")
        self.zoneinfo_path = os.path.join(root, "zoneinfo")

    @staticmethod
    def _read(path: str) -> str:
        # os.read on the raw descriptor: the cheapest way to drain a seq_file
        # (no buffered-reader or text-decoder layers).  A seq_file read may
        # return less than asked, so read until end of file.
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                chunks = []
                while True:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
            finally:
                os.close(fd)
        except OSError as e:
            raise ProcfsError(f"cannot read {path}: {e.strerror or e}") from e
        return b"".join(chunks).decode("ascii", "replace")

    def snapshot(self) -> Snapshot:
        """Read both files once each and build a :class:`~mfd.model.Snapshot`.

        Every zone of /proc/zoneinfo becomes a ZoneSnapshot, empty ones with
        all-zero ``nr_free`` of the same length as the others.  Node fields
        follow the kernel's pglist_data: ``nr_zones`` is the highest populated
        zone index + 1, ``start_pfn`` the lowest populated zone start,
        ``present`` the sum of the zones' present pages and ``spanned`` the
        distance from ``start_pfn`` to the highest populated zone end.
        """
        buddy_text = self._read(self.buddyinfo_path)
        zone_text = self._read(self.zoneinfo_path)
        now = time.time()
        buddy = parse_buddyinfo(buddy_text, self.buddyinfo_path)
        zones = parse_zoneinfo(zone_text, self.zoneinfo_path)
        if not buddy:
            raise ProcfsError(f"{self.buddyinfo_path} lists no zone")
        nr_orders = len(next(iter(buddy.values())))
        empty = (0,) * nr_orders

        by_node: Dict[int, List[ZoneSnapshot]] = {}
        seen = set()
        for z in zones:
            key = (z["node"], z["zone"])
            if key in seen:
                raise ProcfsError(f"{self.zoneinfo_path} lists node {key[0]} zone {key[1]} twice")
            seen.add(key)
            counts = buddy.get(key)
            if counts is None:
                if z["present"]:
                    raise ProcfsError(
                        f"node {key[0]} zone {key[1]} is populated in {self.zoneinfo_path} "
                        f"but missing from {self.buddyinfo_path} (memory hotplug between "
                        "the reads? read again)")
                counts = empty
            elif not z["present"]:
                raise ProcfsError(
                    f"node {key[0]} zone {key[1]} is in {self.buddyinfo_path} but has no "
                    f"present pages in {self.zoneinfo_path} (memory hotplug between the "
                    "reads? read again)")
            by_node.setdefault(key[0], []).append(ZoneSnapshot(
                node=key[0], zone=key[1], zone_idx=z["zone_idx"], start_pfn=z["start_pfn"],
                spanned=z["spanned"], present=z["present"], managed=z["managed"],
                nr_free=counts))
        missing = [k for k in buddy if k not in seen]
        if missing:
            node, zone = missing[0]
            raise ProcfsError(f"node {node} zone {zone} is in {self.buddyinfo_path} but not in "
                              f"{self.zoneinfo_path} (changed between the reads, or truncated?)")

        nodes = []
        for node in sorted(by_node):
            node_zones = by_node[node]
            populated = [z for z in node_zones if z.present]
            if populated:
                start = min(z.start_pfn for z in populated)
                end = max(z.start_pfn + z.spanned for z in populated)
                nr_zones = max(z.zone_idx for z in populated) + 1
            else:           # memoryless node
                start = end = nr_zones = 0
            nodes.append(NodeSnapshot(
                node=node, nr_zones=nr_zones, start_pfn=start,
                present=sum(z.present for z in node_zones), spanned=end - start,
                zones=tuple(node_zones), pgdat=None))
        return Snapshot(time=now, source=self.name, nr_orders=nr_orders,
                        nodes=tuple(nodes), pgdat_path=None)

    def close(self) -> None:
        pass
