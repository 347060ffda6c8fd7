"""Plain aligned columns, the one table layout of every text output."""
from __future__ import annotations

import tabulate as _tabulate

# Columns two spaces apart, no rules: short enough for 80 columns, and easy
# to cut/awk like vmstat's output.
_PLAIN = _tabulate.TableFormat(lineabove=None, linebelowheader=None, linebetweenrows=None,
                               linebelow=None, headerrow=_tabulate.DataRow("", "  ", ""),
                               datarow=_tabulate.DataRow("", "  ", ""), padding=0,
                               with_header_hide=None)


def table(rows, headers) -> str:
    saved, _tabulate.MIN_PADDING = _tabulate.MIN_PADDING, 0  # no extra header padding
    try:
        return _tabulate.tabulate(rows, headers=headers, tablefmt=_PLAIN,
                                  disable_numparse=True, stralign="right")
    finally:
        _tabulate.MIN_PADDING = saved
