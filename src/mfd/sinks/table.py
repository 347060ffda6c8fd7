"""Plain aligned columns, the one table layout of every text output."""
from __future__ import annotations

import tabulate as _tabulate

from ..term import one_line

# Columns two spaces apart, no rules: short enough for 80 columns, and easy
# to cut/awk like vmstat's output.
_PLAIN = _tabulate.TableFormat(lineabove=None, linebelowheader=None, linebetweenrows=None,
                               linebelow=None, headerrow=_tabulate.DataRow("", "  ", ""),
                               datarow=_tabulate.DataRow("", "  ", ""), padding=0,
                               with_header_hide=None)


def table(rows, headers) -> str:
    """``rows`` under ``headers``, right-aligned.  Every text cell is escaped
    (term.one_line): cells hold strings others control -- a process's comm,
    zone and host names from a recording -- and a newline or a terminal
    escape in one must not forge a row or drive the terminal."""
    rows = [[one_line(c) if isinstance(c, str) else c for c in row] for row in rows]
    saved, _tabulate.MIN_PADDING = _tabulate.MIN_PADDING, 0  # no extra header padding
    try:
        return _tabulate.tabulate(rows, headers=headers, tablefmt=_PLAIN,
                                  disable_numparse=True, stralign="right")
    finally:
        _tabulate.MIN_PADDING = saved
