"""Extfrag events bucketed by pageblock in the kernel (bpf/extfrag_blocks.bpf.c),
for ``mfd map --events SECONDS``: which pageblocks a fallback polluted (took
pages from without changing the block's type) and which it converted."""
from __future__ import annotations

from typing import Callable, Dict, Tuple

from .. import ebpf
from .events.maps import HashDrain, PerCpuTotals, scalar

PROGRAM = "extfrag_blocks.bpf.c"
MAX_BLOCKS_CAP = 1 << 22      # 8 TiB of 2 MiB pageblocks; the map costs ~64 B per entry


class BlockEvents:
    """Loaded and counting from construction until :meth:`close`."""

    def __init__(self, pageblock_order: int, blocks: int, note: Callable[[str], None],
                 debug: bool = False, loader: str = "auto"):
        ebpf.require_root("mfd map --events")
        ebpf.require_tracepoints([("kmem", "mm_page_alloc_extfrag")], note)
        ebpf.start_loader(loader)
        try:
            btf = ebpf.load_btf(None, ": mfd map --events needs the kernel's BTF", note)
            defs: Dict[str, object] = dict(ebpf.sizes(btf))
            defs.update(MFD_PAGEBLOCK_ORDER=pageblock_order,
                        MFD_MAX_BLOCKS=max(1024, min(blocks, MAX_BLOCKS_CAP)))
            self.program = ebpf.Program("the pageblock event counter",
                                        ebpf.source_text([PROGRAM]), ebpf.cflags(defs), note,
                                        debug, loader=loader)
        finally:
            ebpf.release_loader()
        self.order = pageblock_order
        self._dropped = PerCpuTotals(self.program["extfrag_blocks_dropped"])

    def read(self) -> Tuple[Dict[int, int], Dict[int, int], int]:
        """(polluted events per pageblock, converted events per pageblock,
        events not counted for want of map room), emptying the map."""
        polluted, converted = {}, {}
        for block, v in HashDrain(self.program["extfrag_blocks"])():
            block = scalar(block)
            if v.polluted:
                polluted[block] = int(v.polluted)
            if v.converted:
                converted[block] = int(v.converted)
        return polluted, converted, scalar(self._dropped.delta())

    def close(self) -> None:
        self.program.close()
