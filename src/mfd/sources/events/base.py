"""What every event group is: the program it compiles, the tracepoints it
needs, how it attaches, and how it turns one interval's maps into its typed
result (mfd.model.events)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Sequence, Tuple

from ...model import Filter, GroupResult


@dataclass
class PollContext:
    """What every group needs to turn one interval's maps into rows."""

    elapsed: float                                   # seconds since the last poll
    filter: Filter = Filter()                        # -i/-c, kernel spelling
    zones: Dict[int, Tuple[int, str]] = field(default_factory=dict)  # zone_start_pfn -> (node, name)
    zone_names: Dict[Tuple[int, int], str] = field(default_factory=dict)  # (node, zone_idx) -> name
    # (start_pfn, end_pfn, node, name) of the populated zones, by start
    spans: Tuple[Tuple[int, int, int, str], ...] = ()

    def rate(self, n: int) -> float:
        return round(n / self.elapsed, 3) if self.elapsed > 0 else 0.0


class Group:
    """One event group.  Subclasses set ``name`` (its result's NAME) and
    ``program`` (a file in bpf/)."""

    name = ""
    program = ""
    needs_zones = False          # poll() wants the zone maps of PollContext

    def tracepoints(self) -> Sequence[Tuple[str, str]]:
        """(category, event) the program attaches to (checked before compiling)."""
        return ()

    def defines(self) -> Dict[str, object]:
        return {}

    def kprobes(self) -> Sequence[Tuple[str, str, str]]:
        """("kprobe" | "kretprobe", kernel function, program) to attach with
        the compile (TRACEPOINT_PROBEs attach themselves)."""
        return ()

    def bind(self, program) -> None:
        raise NotImplementedError

    def poll(self, ctx: PollContext) -> GroupResult:
        raise NotImplementedError
