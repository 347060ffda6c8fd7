"""The kernel's fragmentation indices, computed exactly as mm/vmstat.c does.

Everything here is a pure function of ``nr_free`` (``zone->free_area[order].nr_free``
for ``order`` in ``0 .. NR_PAGE_ORDERS-1``), so the same numbers come out whether
the counts were read by the eBPF walker, from /proc/buddyinfo or from a
recording.

The arithmetic follows mm/vmstat.c (CONFIG_COMPACTION, CONFIG_DEBUG_FS) step by
step, in integer fixed point with three decimals (an index of 0.5 is ``500``):

* ``fill_contig_page_info()``  -> :func:`fill_contig_page_info`
* ``__fragmentation_index()``  -> :func:`fragmentation_index`
* ``unusable_free_index()``    -> :func:`unusable_free_index`
* ``extfrag_show_print()``     -> :func:`format_extfrag`, :func:`format_debugfs_line`
* ``unusable_show_print()``    -> :func:`format_unusable`, :func:`format_debugfs_line`

The kernel works in ``unsigned long`` (64 bits on every architecture mfd
supports), divides with ``div_u64()`` (unsigned floor division) and returns
the result as an ``int``; those wrap-arounds are reproduced, so even the odd
values the kernel can print (see :func:`fragmentation_index`) come out the same.

The kernel loops ``for (order = 0; order < NR_PAGE_ORDERS; order++)`` (before
6.8: ``order < MAX_ORDER``); here the number of orders is ``len(nr_free)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

__all__ = [
    "ContigPageInfo",
    "fill_contig_page_info",
    "contig_page_infos",
    "fragmentation_index",
    "unusable_free_index",
    "extfrag_indices",
    "unusable_indices",
    "format_index",
    "format_extfrag",
    "format_unusable",
    "format_debugfs_line",
    "parse_debugfs_index",
]

_U64 = (1 << 64) - 1          # unsigned long / u64 wrap-around
_U32 = (1 << 32) - 1


def _as_int(value: int) -> int:
    """C conversion of an unsigned 64-bit value to ``int`` (two's complement, 32 bits)."""
    value &= _U32
    return value - (1 << 32) if value & 0x80000000 else value


@dataclass(frozen=True)
class ContigPageInfo:
    """``struct contig_page_info`` of mm/vmstat.c."""

    free_pages: int            # free base pages in the zone
    free_blocks_total: int     # free blocks of any order
    free_blocks_suitable: int  # free blocks of at least suitable_order, counted in 2^suitable_order units


def fill_contig_page_info(nr_free: Sequence[int], suitable_order: int) -> ContigPageInfo:
    """``fill_contig_page_info()`` of mm/vmstat.c.

    For every order: ``free_blocks_total += nr_free[order]``,
    ``free_pages += nr_free[order] << order`` and, when ``order >= suitable_order``,
    ``free_blocks_suitable += nr_free[order] << (order - suitable_order)`` -- a
    free order-10 block holds four order-8 blocks.  Sums wrap at 2^64 like the
    kernel's ``unsigned long``.
    """
    if suitable_order < 0:
        raise ValueError(f"negative order {suitable_order}")
    free_pages = 0
    total = 0
    suitable = 0
    for order, blocks in enumerate(nr_free):
        if blocks < 0:
            raise ValueError(f"negative nr_free[{order}] = {blocks}")
        total += blocks
        free_pages += blocks << order
        if order >= suitable_order:
            suitable += blocks << (order - suitable_order)
    # Reducing once at the end equals reducing after every step (+ and << are
    # compatible with arithmetic modulo 2^64).
    return ContigPageInfo(free_pages & _U64, total & _U64, suitable & _U64)


def contig_page_infos(nr_free: Sequence[int]) -> List[ContigPageInfo]:
    """:func:`fill_contig_page_info` for every order at once, in one pass.

    ``free_pages`` and ``free_blocks_total`` do not depend on the order, and
    ``free_blocks_suitable`` for order k is ``nr_free[k] + 2 * suitable(k+1)``
    (a free block of order k+1 holds two of order k), summed from the top
    order down.  The same numbers as calling fill_contig_page_info() per
    order, wrap-around included, in O(orders) instead of O(orders^2): every
    sink computes them for every zone of every sample.
    """
    free_pages = total = 0
    for order, blocks in enumerate(nr_free):
        if blocks < 0:
            raise ValueError(f"negative nr_free[{order}] = {blocks}")
        total += blocks
        free_pages += blocks << order
    free_pages &= _U64
    total &= _U64
    out: List[ContigPageInfo] = []
    suitable = 0
    for blocks in reversed(nr_free):
        suitable = (blocks + 2 * suitable) & _U64
        out.append(ContigPageInfo(free_pages, total, suitable))
    out.reverse()
    return out


def fragmentation_index(order: int, info: ContigPageInfo,
                        max_order: Optional[int] = None) -> int:
    """``__fragmentation_index()`` of mm/vmstat.c, times 1000.

    Returns:

    * ``0`` when the zone has no free block at all (``!free_blocks_total``);
    * ``-1000`` when an allocation of this order would succeed (a suitable
      block exists): the index only means something for failing requests;
    * otherwise ``1000 - (1000 + free_pages*1000/2^order) / free_blocks_total``
      with both divisions floored: towards 0 the failure is due to lack of
      memory, towards 1000 due to fragmentation.

    The formula can go below zero: with a single free block smaller than the
    request (``free_blocks_total == 1``) it is ``-free_pages*1000/2^order``,
    e.g. ``-500`` for one free page and an order-1 request; the kernel prints
    that as `` 0.-500`` (see :func:`format_extfrag`).

    ``max_order`` is MAX_PAGE_ORDER (``NR_PAGE_ORDERS - 1``); when given, an
    ``order`` above it returns 0 as the kernel's ``WARN_ON_ONCE`` branch does.
    """
    if order < 0:
        raise ValueError(f"negative order {order}")
    if max_order is not None and order > max_order:
        return 0
    if not info.free_blocks_total:
        return 0
    if info.free_blocks_suitable:
        return -1000
    requested = 1 << order
    # div_u64((1000 + div_u64(free_pages * 1000ULL, requested)), free_blocks_total)
    scaled = ((info.free_pages * 1000) & _U64) // requested
    quotient = ((1000 + scaled) & _U64) // info.free_blocks_total
    return _as_int((1000 - quotient) & _U64)


def unusable_free_index(order: int, info: ContigPageInfo) -> int:
    """``unusable_free_index()`` of mm/vmstat.c, times 1000.

    The share of free memory that sits in blocks smaller than ``2^order``
    pages: ``(free_pages - (free_blocks_suitable << order)) * 1000 / free_pages``,
    floored; 0 means every free page is usable for the request, 1000 none.
    A zone without free pages returns ``1000`` ("no free memory is interpreted
    as all free memory is unusable").  ``info`` must come from
    ``fill_contig_page_info(nr_free, order)`` for the same ``order``.
    """
    if order < 0:
        raise ValueError(f"negative order {order}")
    if info.free_pages == 0:
        return 1000
    unusable = (info.free_pages - ((info.free_blocks_suitable << order) & _U64)) & _U64
    return _as_int(((unusable * 1000) & _U64) // info.free_pages)


def extfrag_indices(nr_free: Sequence[int]) -> List[int]:
    """One :func:`fragmentation_index` per order, as a line of debugfs extfrag/extfrag_index."""
    max_order = len(nr_free) - 1
    return [fragmentation_index(order, fill_contig_page_info(nr_free, order), max_order)
            for order in range(len(nr_free))]


def unusable_indices(nr_free: Sequence[int]) -> List[int]:
    """One :func:`unusable_free_index` per order, as a line of debugfs extfrag/unusable_index."""
    return [unusable_free_index(order, fill_contig_page_info(nr_free, order))
            for order in range(len(nr_free))]


def _c_divmod(value: int, divisor: int = 1000) -> Tuple[int, int]:
    """C's ``value / divisor`` and ``value % divisor``: the quotient truncates toward zero."""
    quotient = abs(value) // divisor
    if value < 0:
        quotient = -quotient
    return quotient, value - quotient * divisor


def format_index(value_x1000: int, width: int = 0) -> str:
    """``seq_printf("%<width>d.%03d", index / 1000, index % 1000)`` with C semantics.

    C division truncates toward zero and the remainder takes the sign of the
    dividend, so ``-1000`` gives ``"-1.000"``, ``-500`` gives ``"0.-500"``,
    ``-1`` gives ``"0.-01"`` and ``1500`` gives ``"1.500"``.  ``width`` pads the
    integer part with spaces on the left as ``%2d`` does.
    """
    quotient, remainder = _c_divmod(value_x1000)
    return "%*d.%03d" % (width, quotient, remainder)


def format_extfrag(value_x1000: int) -> str:
    """One value as extfrag_show_print() prints it: ``"%2d.%03d"`` (`` 0.250``, ``-1.000``)."""
    return format_index(value_x1000, 2)


def format_unusable(value_x1000: int) -> str:
    """One value as unusable_show_print() prints it: ``"%d.%03d"`` (``0.250``, ``1.000``)."""
    return format_index(value_x1000, 0)


_KINDS = {
    "extfrag": format_extfrag,
    "extfrag_index": format_extfrag,
    "unusable": format_unusable,
    "unusable_index": format_unusable,
}


def format_debugfs_line(node: int, zone: str, values_x1000: Iterable[int], kind: str) -> str:
    """One line of /sys/kernel/debug/extfrag/{extfrag_index,unusable_index}, without its newline.

    ``"Node %d, zone %8s "`` then every value followed by one space, exactly as
    extfrag_show_print() (``kind="extfrag"``) or unusable_show_print()
    (``kind="unusable"``) print it; the kernel ends the line with ``'\\n'``.
    """
    try:
        fmt = _KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r} (expected 'extfrag' or 'unusable')") from None
    parts = ["Node %d, zone %8s " % (node, zone)]
    for value in values_x1000:
        parts.append(fmt(value))
        parts.append(" ")
    return "".join(parts)


def _parse_value(token: str) -> int:
    # The kernel printed index/1000 "." index%1000 (C semantics), so the index
    # is int_part * 1000 + frac_part with frac_part carrying its own sign:
    # "-1.000" -> -1000, "0.-500" -> -500, "0.066" -> 66.
    int_part, sep, frac_part = token.partition(".")
    if not sep or not frac_part:
        raise ValueError(token)
    whole = int(int_part)
    frac = int(frac_part)
    if not -1000 < frac < 1000:
        raise ValueError(token)
    return whole * 1000 + frac


def parse_debugfs_index(text: str) -> Dict[Tuple[int, str], List[int]]:
    """Parse extfrag/extfrag_index or extfrag/unusable_index back to x1000 ints.

    Returns ``{(node, zone): [index per order]}``.  Raises :class:`ValueError`
    naming the line when a line does not look like ``Node N, zone NAME v v ...``.
    """
    result: Dict[Tuple[int, str], List[int]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            head, _, rest = line.partition(",")
            head_parts = head.split()
            rest_parts = rest.split()
            if (len(head_parts) != 2 or head_parts[0] != "Node" or len(rest_parts) < 2
                    or rest_parts[0] != "zone"):
                raise ValueError(line)
            node = int(head_parts[1])
            values = [_parse_value(tok) for tok in rest_parts[2:]]
        except ValueError:
            raise ValueError(f"cannot parse debugfs index line {lineno}: {line!r} "
                             "(expected 'Node N, zone NAME values...')") from None
        result[(node, rest_parts[1])] = values
    return result
