"""The node/zone filter (``-i``/``-c``): checked once against the kernel's own
names, then applied by every source and sink that has rows per node or zone."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence

from ..errors import UsageError
from .snapshot import NodeSnapshot, Snapshot, ZoneSnapshot


def zone_names(zones: Iterable[ZoneSnapshot]) -> List[str]:
    """Distinct zone names in the kernel's order (enum zone_type)."""
    seen: List[str] = []
    for z in zones:
        if z.zone not in seen:
            seen.append(z.zone)
    return seen


@dataclass(frozen=True)
class Filter:
    """Which node and which zone the user asked for; None is every one.

    ``zone`` is matched without regard to case (the seed took ``-c normal``);
    :meth:`resolve` replaces the user's spelling with the kernel's ("Normal"),
    which is what every output then shows.
    """

    node: Optional[int] = None
    zone: Optional[str] = None

    @property
    def active(self) -> bool:
        return self.node is not None or self.zone is not None

    def resolve(self, nodes: Sequence[int], zones: Sequence[str], where: str = "") -> "Filter":
        """This filter checked against the node ids and zone names that exist
        (the running kernel's, or a recording's), with the zone spelt as the
        kernel spells it.  Raises UsageError listing the valid ones."""
        suffix = f" in {where}" if where else ""
        if self.node is not None and self.node not in nodes:
            raise UsageError(f"no node {self.node}{suffix} "
                             f"(nodes: {', '.join(map(str, nodes))})")
        zone = self.zone
        if zone is not None:
            match = [n for n in zones if n.lower() == zone.lower()]
            if not match:
                raise UsageError(f"no zone {zone!r}{suffix} (zones: {', '.join(zones)})")
            zone = match[0]
        return Filter(self.node, zone)

    def resolve_in(self, snap: Snapshot) -> "Filter":
        return self.resolve([n.node for n in snap.nodes], zone_names(snap.zones()))

    def wants(self, node: Optional[int], zone: Optional[str] = None) -> bool:
        """Does a row for (node, zone) pass?  ``zone`` None: a row with a node only."""
        if self.node is not None and node != self.node:
            return False
        if self.zone is not None and zone is not None and zone.lower() != self.zone.lower():
            return False
        return True

    def nodes(self, snap: Snapshot) -> List[NodeSnapshot]:
        return [n for n in snap.nodes if self.wants(n.node)]

    def zones(self, snap: Snapshot, empty: bool = False) -> List[ZoneSnapshot]:
        """Zones that pass.  Empty zones (no present pages) only with ``empty``,
        or when ``-c`` names them."""
        empty = empty or self.zone is not None
        return [z for z in snap.zones()
                if self.wants(z.node, z.zone) and (empty or z.populated)]

    def describe(self) -> str:
        """``node 1 zone Normal``; empty when nothing is filtered."""
        parts = ([f"node {self.node}"] if self.node is not None else []) + \
                ([f"zone {self.zone}"] if self.zone is not None else [])
        return " ".join(parts)

    def to_json(self) -> dict:
        return {"node": self.node, "zone": self.zone}

    @classmethod
    def from_json(cls, obj) -> "Filter":
        if not isinstance(obj, dict):
            return cls()
        node, zone = obj.get("node"), obj.get("zone")
        return cls(node if isinstance(node, int) and not isinstance(node, bool) else None,
                   zone if isinstance(zone, str) else None)
