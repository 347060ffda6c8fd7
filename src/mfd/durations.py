"""Durations and points in time as people type them: --retain 7d, --since -15m."""
from __future__ import annotations

import re
import time
from typing import Optional

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([smhdw]?)")


def parse_duration(text: str) -> float:
    """``"90"``, ``"90s"``, ``"15m"``, ``"2h"``, ``"7d"``, ``"1w"``, ``"1h30m"`` -> seconds (> 0).

    Raises :class:`ValueError` with a one-line message otherwise.
    """
    s = text.strip().lower()
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_RE.match(s, pos)
        if not m:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f"not a duration: {text!r} (examples: 90s, 15m, 2h, 7d, 1h30m)")
    if not total > 0 or total == float("inf"):
        raise ValueError(f"{text!r} is {'zero' if total == 0 else 'too long'}: "
                         f"give a duration above zero (examples: 90s, 15m, 7d)")
    return total


def format_duration(seconds: float) -> str:
    """``3725`` -> ``"1h02m05s"``; under a minute with one decimal (``"4.5s"``)."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d{h:02d}h{m:02d}m"
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    return f"{m}m{s:02d}s"


def format_time(t: float) -> str:
    """A unix time as local 'YYYY-MM-DD HH:MM:SS' (the form parse_time reads)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def parse_time(text: str, end: Optional[float] = None) -> float:
    """A point in time for ``--since``/``--until`` -> unix seconds.

    Accepts ``YYYY-MM-DD[ HH:MM[:SS]]`` (also with ``T``), ``HH:MM[:SS]``
    (today), all in local time; ``@EPOCH``; and ``-DURATION`` (``-15m``),
    counted back from ``end`` (the last recorded sample).
    """
    s = text.strip()
    if s.startswith("@"):
        try:
            return float(s[1:])
        except ValueError:
            pass
    elif s.startswith("-"):
        if end is None:
            raise ValueError(f"{text!r}: a relative time needs a recording to count back from")
        try:
            return end - parse_duration(s[1:])
        except ValueError:
            raise ValueError(f"not a time: {text!r} (-DURATION counts back from the last "
                             f"sample: -90s, -15m, -2h, -7d)") from None
    else:
        from datetime import datetime
        formats = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M",
                   "%Y-%m-%dT%H:%M", "%Y-%m-%d")
        for fmt in formats:
            try:
                return datetime.strptime(s, fmt).timestamp()
            except ValueError:
                continue
        for fmt in ("%H:%M:%S", "%H:%M"):
            try:
                t = datetime.strptime(s, fmt).time()
            except ValueError:
                continue
            return datetime.combine(datetime.now().date(), t).timestamp()
    raise ValueError(f"not a time: {text!r} (examples: '2024-05-01 12:00', 12:30, @1714560000, "
                     "-15m for the last 15 minutes of the recording)")
