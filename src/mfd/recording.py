"""Recordings: every sample in an SQLite file (``mfd --record FILE``), and reading them back.

The file is plain SQLite (stdlib :mod:`sqlite3`) in WAL mode, one transaction
per sample, so a killed mfd loses at most the sample it was writing and the
file always passes ``PRAGMA integrity_check``.  Schema version 3
(``PRAGMA user_version``; ``PRAGMA application_id`` is :data:`APPLICATION_ID`);
version 2 lacks the ``pagemap`` table, version 1 also differs in the
``zone_order`` view; both are read as they are and upgraded when recorded to
(see :func:`upgrade`):

``run``     one row per ``mfd --record`` invocation:
            ``id, started`` (unix time of its first sample), ``host``,
            ``kernel`` (``uname -r``), ``source`` (``bpf``/``procfs``),
            ``pgdat_path`` (``kallsyms``/``memcg``/NULL), ``nr_orders``,
            ``interval`` (``-d``), ``mfd_version``.
``sample``  one row per sample: ``id, run_id, seq`` (0, 1, ... within the
            run), ``time`` (unix seconds), ``interval`` (seconds since the
            previous sample), ``events`` (JSON of the interval's events,
            :class:`mfd.model.Events`; NULL when no events were traced).
``node``    per sample and node: ``sample_id, node, nr_zones, start_pfn,
            present, spanned`` (pages).
``zone``    per sample and zone, empty zones too: ``sample_id, node,
            zone_idx, zone`` (name), ``start_pfn, spanned, present, managed,
            free_pages``, and three JSON arrays with one entry per order:
            ``nr_free`` (free_area[order].nr_free), ``extfrag`` and
            ``unusable`` (the kernel's indices times 1000, as mm/vmstat.c
            computes them: 500 is 0.500, -1000 is extfrag's "a suitable
            block exists").
``zone_order`` (a view) the same, one row per order, for plain SQL, with
            ``populated`` (0 for an empty zone, present_pages 0) and the
            indices NULL for empty zones: the kernel's debugfs files leave
            them out too, and a "worst zone" query must not pick them.
``pagemap`` one row per zone of each pageblock map (``mfd --record FILE
            --map-interval S``): ``id, run_id, time, node, zone, page_size``
            (bytes), ``pageblock_order, first_block`` (the pfn of the zone's first
            pageblock >> pageblock_order) and ``runs``, a JSON array of
            class and length pairs, flat (``[1, 1505, 0, 512]``: 1505 free
            pageblocks, then 512 holes; the classes are
            mfd.pageblocks.CLASSES: 0 hole, 1 free, 2 huge, 3 compactable,
            4 uncertain, 5 pinned).
``meta``    ``key, value`` text: ``schema``, ``created``, ``created_by``.

Kernel addresses (a node's pglist_data) are never written.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sqlite3
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple

from . import __version__
from .errors import MfdError
from .model import Events, Filter, NodeSnapshot, Sample, Snapshot, ZoneSnapshot
from .model.events import RESULT_TYPES, field_kind

__all__ = ["SCHEMA_VERSION", "APPLICATION_ID", "History", "HistoryError", "Run", "ZoneRecord",
           "SampleRecord", "MapRecord", "create_schema", "upgrade"]

SCHEMA_VERSION = 3
APPLICATION_ID = 0x6D666431          # "mfd1": `file` and sqlite3 show it

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE run (
    id INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    host TEXT NOT NULL,
    kernel TEXT NOT NULL,
    source TEXT NOT NULL,
    pgdat_path TEXT,
    nr_orders INTEGER NOT NULL,
    interval REAL NOT NULL,
    mfd_version TEXT NOT NULL
);
CREATE TABLE sample (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES run(id),
    seq INTEGER NOT NULL,
    time REAL NOT NULL,
    interval REAL NOT NULL,
    events TEXT
);
CREATE INDEX sample_time ON sample(time);
CREATE TABLE node (
    sample_id INTEGER NOT NULL REFERENCES sample(id),
    node INTEGER NOT NULL,
    nr_zones INTEGER NOT NULL,
    start_pfn INTEGER NOT NULL,
    present INTEGER NOT NULL,
    spanned INTEGER NOT NULL,
    PRIMARY KEY (sample_id, node)
) WITHOUT ROWID;
CREATE TABLE zone (
    sample_id INTEGER NOT NULL REFERENCES sample(id),
    node INTEGER NOT NULL,
    zone_idx INTEGER NOT NULL,
    zone TEXT NOT NULL,
    start_pfn INTEGER NOT NULL,
    spanned INTEGER NOT NULL,
    present INTEGER NOT NULL,
    managed INTEGER NOT NULL,
    free_pages INTEGER NOT NULL,
    nr_free TEXT NOT NULL,
    extfrag TEXT NOT NULL,
    unusable TEXT NOT NULL,
    PRIMARY KEY (sample_id, node, zone_idx)
) WITHOUT ROWID;
"""

# Schema 3's pageblock maps (mfd --record --map-interval).
_PAGEMAP = """
CREATE TABLE pagemap (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES run(id),
    time REAL NOT NULL,
    node INTEGER NOT NULL,
    zone TEXT NOT NULL,
    page_size INTEGER NOT NULL,
    pageblock_order INTEGER NOT NULL,
    first_block INTEGER NOT NULL,
    runs TEXT NOT NULL
);
CREATE INDEX pagemap_time ON pagemap(time);
"""

# Schema 2's view; schema 1 had no populated column and gave empty zones
# indices (unusable 1.000: "all free memory unusable" of a zone with none).
_VIEW = """
CREATE VIEW zone_order AS
    SELECT s.time AS time, z.sample_id AS sample_id, z.node AS node, z.zone AS zone,
           z.present > 0 AS populated,
           CAST(o.key AS INTEGER) AS "order", o.value AS nr_free,
           CASE WHEN z.present > 0
                THEN json_extract(z.extfrag, '$[' || o.key || ']') / 1000.0 END AS extfrag_index,
           CASE WHEN z.present > 0
                THEN json_extract(z.unusable, '$[' || o.key || ']') / 1000.0 END AS unusable_index
    FROM zone AS z JOIN sample AS s ON s.id = z.sample_id, json_each(z.nr_free) AS o
"""

# Schema 1's view, as mfd 0.1.0 created it (check_objects accepts it as mfd's).
_VIEW_1 = """
CREATE VIEW zone_order AS
    SELECT s.time AS time, z.sample_id AS sample_id, z.node AS node, z.zone AS zone,
           CAST(o.key AS INTEGER) AS "order", o.value AS nr_free,
           json_extract(z.extfrag, '$[' || o.key || ']') / 1000.0 AS extfrag_index,
           json_extract(z.unusable, '$[' || o.key || ']') / 1000.0 AS unusable_index
    FROM zone AS z JOIN sample AS s ON s.id = z.sample_id, json_each(z.nr_free) AS o
"""


def create_schema(conn: sqlite3.Connection, created: str) -> None:
    """The tables, the view and the meta rows of a new recording (in a transaction)."""
    for stmt in (_SCHEMA + _PAGEMAP + _VIEW).split(";\n"):
        if stmt.strip():
            conn.execute(stmt)
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [
        ("schema", str(SCHEMA_VERSION)), ("created", created),
        ("created_by", f"mfd {__version__}")])
    conn.execute("PRAGMA application_id=%d" % APPLICATION_ID)
    conn.execute("PRAGMA user_version=%d" % SCHEMA_VERSION)


def upgrade(conn: sqlite3.Connection, version: int) -> None:
    """Bring a recording of an older schema to this one (in a transaction).
    1 -> 2: the zone_order view gains populated and leaves empty zones' indices out.
    2 -> 3: the pagemap table."""
    if version == 1:
        conn.execute("DROP VIEW IF EXISTS zone_order")
        conn.execute(_VIEW)
    if version <= 2:
        for stmt in _PAGEMAP.split(";\n"):
            if stmt.strip():
                conn.execute(stmt)
    if version < SCHEMA_VERSION:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
        conn.execute("PRAGMA user_version=%d" % SCHEMA_VERSION)

def _errname(e: sqlite3.Error) -> str:
    """SQLite's error name (``SQLITE_FULL``...) where Python >= 3.11 gives it, else ''."""
    return getattr(e, "sqlite_errorname", "") or ""


def describe(e: BaseException) -> str:
    """One short phrase for a failed open or write."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, OSError):
        return e.strerror or msg
    name = _errname(e) if isinstance(e, sqlite3.Error) else ""
    if name == "SQLITE_FULL" or "disk is full" in msg:
        return "no space left on the device"
    if name == "SQLITE_READONLY" or "readonly" in msg:
        return "the file or its file system is read-only"
    if name == "SQLITE_NOTADB" or "not a database" in msg:
        return "not an SQLite file"
    return msg


class HistoryError(MfdError):
    """A recording cannot be opened, created or read (one-line message)."""


def check_schema(conn: sqlite3.Connection, path: str) -> int:
    """The file's schema version; raises HistoryError for another program's DB, a newer
    mfd's, or a recording whose schema objects are not the ones mfd creates
    (:func:`check_objects`)."""
    app = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if app not in (0, APPLICATION_ID):
        raise HistoryError(f"{path} is an SQLite file of another program, not an mfd recording")
    if app == 0 and version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise HistoryError(f"{path} is an SQLite file of another program, "
                               "not an mfd recording")
        return 0
    if version > SCHEMA_VERSION:
        raise HistoryError(f"{path} was written by a newer mfd (schema {version}; this mfd "
                           f"{__version__} knows schema {SCHEMA_VERSION} and older): upgrade "
                           "mfd, or record to a new file")
    if version:
        check_objects(conn, path, version)
    return version


def _sql_words(sql: Optional[str]) -> Optional[str]:
    """``sql`` with its white space collapsed: SQLite keeps a CREATE statement's text
    as it was typed, so two mfd versions may differ only in indentation."""
    return None if sql is None else " ".join(sql.split())


def _expected_objects() -> Dict[str, Tuple[str, Tuple[str, ...]]]:
    """{name: (type, the SQL texts mfd has created it with)} of every object mfd makes."""
    out: Dict[str, Tuple[str, Tuple[str, ...]]] = {}
    for stmt in (_SCHEMA + _PAGEMAP).split(";\n"):
        words = _sql_words(stmt)
        if words:
            kind, name = words.split()[1].lower(), words.split()[2]
            out[name] = (kind, (words,))
    out["zone_order"] = ("view", (_sql_words(_VIEW), _sql_words(_VIEW_1)))
    return out


_TABLES = ("meta", "run", "sample", "node", "zone")


def check_objects(conn: sqlite3.Connection, path: str, version: int = SCHEMA_VERSION) -> None:
    """Refuse a recording whose schema is not mfd's own, before anything reads it.

    A view or a trigger is SQL that SQLite runs for whoever reads or writes the
    file: a ``sample`` replaced by a recursive view hangs a report, a trigger
    would run inside ``mfd --record``, as root.  So mfd's tables must be tables
    created by mfd's own statements (no generated columns, no virtual tables),
    ``zone_order`` must be mfd's view, and no other view or trigger may exist.
    Plain tables and indexes someone added are left alone: they hold no code
    mfd would run, and mfd never reads them.
    """
    expected = _expected_objects()
    found = set()

    def refuse(why: str) -> HistoryError:
        return HistoryError(f"{path}: {why} (not an mfd recording, or altered since)")

    for kind, name, sql in conn.execute("SELECT type, name, sql FROM sqlite_master"):
        want = expected.get(name)
        if want is not None:
            if kind != want[0]:
                raise refuse(f"schema object {name} is a {kind}, where mfd creates a {want[0]}")
            if _sql_words(sql) not in want[1]:
                raise refuse(f"the {kind} {name} is not the one mfd creates")
            found.add(name)
        elif kind in ("view", "trigger"):
            raise refuse(f"it holds a {kind} {name!r}, which mfd does not create")
        elif kind == "table" and (_sql_words(sql) or "").upper().startswith("CREATE VIRTUAL"):
            raise refuse(f"it holds a virtual table {name!r}, which mfd does not create")
    missing = [t for t in _TABLES + (("pagemap",) if version >= 3 else ()) if t not in found]
    if missing:
        raise refuse(f"table {missing[0]} is missing")


# -- what a recording may hold ----------------------------------------------------
#
# mfd report runs as root on files anyone may have written, so a recording is
# untrusted input: every value is checked before it is used, and each cap
# below bounds the work one row can cause.  The caps are the kernel's own
# limits, with headroom, so no real recording comes near one.

# Node ids are below MAX_NUMNODES = 1 << NODES_SHIFT (include/linux/numa.h);
# CONFIG_NODES_SHIFT has "range 1 10" (arch/x86/Kconfig, arch/arm64/Kconfig;
# 10 is also the MAXSMP default).
MAX_NODES = 1 << 10
# zone_idx is an enum zone_type below MAX_NR_ZONES (DMA, DMA32, Normal,
# HighMem, Movable, Device: at most 6 today); include/linux/page-flags-layout.h
# stops the build ("ZONES_SHIFT -- too many zones configured") beyond 8.
MAX_ZONES = 8
# NR_PAGE_ORDERS = MAX_PAGE_ORDER + 1 (include/linux/mmzone.h): 11 on x86-64,
# 14 on arm64 with 64K pages; the widest any Kconfig accepts is loongarch's
# ARCH_FORCE_MAX_ORDER "range 13 63", so 64 orders, which is also where the
# kernel's unsigned long block sizes (1UL << order) end.
MAX_ORDERS = 64
# host and kernel are uname()'s nodename and release: __NEW_UTS_LEN (64)
# characters at most (include/uapi/linux/utsname.h); source, pgdat_path and
# mfd_version are mfd's own short words.
MAX_TEXT = 64
# Zone names come from the kernel's zone_names[] ("DMA32", "Normal", ...);
# the eBPF walker reads at most 16 bytes of one (bpf/mfd.h MFD_ZONE_NAME_LEN).
MAX_ZONE_NAME = 32
MAX_ZONE_NAMES = 64          # distinct zone names in one file (a kernel has <= 8)
# Times: unix seconds from 1970 to the end of year 9999, what strftime and
# datetime can show.
MAX_TIME = 253402300799.0
U64 = (1 << 64) - 1          # nr_free, page counts and event counts are unsigned long
S32 = 1 << 31                # the kernel's indices are ints (x1000)
# A sample's events JSON: the largest mfd writes is its BPF maps full (10240
# extfrag rows, 4096 allocation failures, 4096 direct compactions with
# histograms: bpf/*.bpf.c), about 8 MiB.
MAX_EVENTS_TEXT = 16 << 20
MAX_EVENT_ROWS = 16384       # rows in one list of an event record (BPF maps hold <= 10240)
MAX_EVENT_KEYS = 256         # keys of one counter dict (compact_* of /proc/vmstat: ~10)
MAX_EVENT_STRING = 512       # a comm is 16 bytes, a kprobed symbol KSYM_NAME_LEN (512)
MAX_EVENT_COUNTERS = 512     # distinct event counter names in one report
# SQLite may work this long on one step (one sample's rows) before mfd gives
# up: an SQLite progress handler, so a damaged file cannot hang a report.
STEP_SECONDS = 20.0
# A pageblock map: six classes (mfd.pageblocks.CLASSES); at most 1 << 24
# pageblocks in one map (32 TiB of 2 MiB blocks); a first block below
# 2^52 (the largest pfn on 64-bit, MAX_PHYSMEM_BITS 52, is below that).
MAP_CLASSES = 6
MAX_MAP_BLOCKS = 1 << 24
MAX_MAP_TEXT = 24 << 20
MAX_PFN = 1 << 52
MAX_SPACED_MAPS = 64        # maps a report reads of a recording, evenly spaced
PAGE_SIZES = (4096, 8192, 16384, 65536, 262144)    # 256 KiB: hexagon's largest
SQLITE_MAX_VALUE = 32 << 20  # the longest text or blob SQLite hands back (SQLITE_LIMIT_LENGTH)

# A JSON array mfd wrote: integers and commas, nothing nested.  Checked before
# json.loads, so a crafted array can neither nest deeply nor be long.
_JSON_WS = "[ \t\n\r]*"
_UINT_LIST = re.compile(rf"\[{_JSON_WS}(?:[0-9]+{_JSON_WS}(?:,{_JSON_WS}[0-9]+{_JSON_WS})*)?\]")
_INT_LIST = re.compile(rf"\[{_JSON_WS}(?:-?[0-9]+{_JSON_WS}(?:,{_JSON_WS}-?[0-9]+{_JSON_WS})*)?\]")
_MAX_LIST_TEXT = MAX_ORDERS * 24 + 2    # 20 digits, a sign, a comma and some spaces each


def _show(value) -> str:
    """A value for a message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_time(t) -> bool:
    return type(t) in (float, int) and 0 <= t <= MAX_TIME    # NaN fails both


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number")     # json.loads takes NaN and Infinity


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"{text} is out of range")     # 1e999 would be inf
    return v


def _record_shape(cls) -> tuple:
    """(field names, nested record types, dict fields, str fields) of a record class."""
    names, dicts, strs = [], [], []
    for f in dataclasses.fields(cls):
        names.append(f.name)
        kind = field_kind(f)[0]
        if kind.startswith("Dict["):
            dicts.append(f.name)
        elif kind == "str":
            strs.append(f.name)
    return frozenset(names), dict(cls.NESTED), tuple(dicts), tuple(strs)


_SHAPES: Dict[type, tuple] = {}


def _check_record(obj, cls, path: tuple) -> None:
    """Raise ValueError unless ``obj`` could be the JSON of a ``cls`` mfd wrote.

    Events.from_json checks types; this bounds the work first.  Every list of
    rows is capped, and a row must name at least half of its record's fields:
    mfd writes all of them, and a crafted ``{}`` would cost a whole record's
    parsing for two bytes, so that 100 MB of them take minutes.  Half leaves
    room for fields a later mfd adds.
    """
    if not isinstance(obj, dict):
        raise ValueError(f"{'.'.join(path)}: not an object")
    shape = _SHAPES.get(cls)
    if shape is None:
        shape = _SHAPES[cls] = _record_shape(cls)
    names, nested, dicts, strs = shape
    present = len(names.intersection(obj))
    if 2 * present < len(names):
        raise ValueError(f"{'.'.join(path)}: names {present} of the {len(names)} fields "
                         f"of a {cls.__name__} record")
    for name, sub in nested.items():
        rows = obj.get(name)
        if isinstance(rows, list):
            if len(rows) > MAX_EVENT_ROWS:
                raise ValueError(f"{'.'.join(path + (name,))}: {len(rows)} rows, more than "
                                 f"{MAX_EVENT_ROWS}")
            for i, row in enumerate(rows):
                _check_record(row, sub, path + (f"{name}[{i}]",))
                _check_row_numbers(row, path + (f"{name}[{i}]",))
    for name in dicts:
        d = obj.get(name)
        if isinstance(d, dict) and (len(d) > MAX_EVENT_KEYS
                                    or any(len(k) > MAX_EVENT_STRING for k in d)):
            raise ValueError(f"{'.'.join(path + (name,))}: more than {MAX_EVENT_KEYS} "
                             "counters, or a name too long")
    for name in strs:
        v = obj.get(name)
        if isinstance(v, str) and len(v) > MAX_EVENT_STRING:
            raise ValueError(f"{'.'.join(path + (name,))}: {len(v)} characters, more than "
                             f"{MAX_EVENT_STRING}")


def _check_row_numbers(row: dict, path: tuple) -> None:
    """A row's integers are counts, orders, pids or nodes: none is negative
    (doctor and report add them up), and a process cannot have taken over
    more pageblocks than it fell back."""
    for k, v in row.items():
        if isinstance(v, int) and not isinstance(v, bool) and not 0 <= v <= U64:
            raise ValueError(f"{'.'.join(path + (k,))} is {_show(v)}, not 0 .. 2^64-1")
    took, events = row.get("change_ownership"), row.get("events")
    if isinstance(took, int) and isinstance(events, int) and took > events:
        raise ValueError(f"{'.'.join(path)}: change_ownership {took} > events {events}")


def parse_events(text: str) -> Events:
    """A sample's events JSON as typed records; ValueError (a short reason) if it is
    not what mfd writes.  The text is bounded before json.loads, and the parsed
    JSON before the records are built."""
    if len(text) > MAX_EVENTS_TEXT:
        raise ValueError(f"{len(text)} characters, more than {MAX_EVENTS_TEXT}")
    try:
        obj = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
        if not isinstance(obj, dict):
            raise ValueError("not an object")
        for cls in RESULT_TYPES:
            if cls.NAME in obj:
                _check_record(obj[cls.NAME], cls, (cls.NAME,))
        events = Events.from_json(obj)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except (TypeError, OverflowError) as e:
        raise ValueError(str(e)) from None
    if not 0 <= events.interval <= MAX_TIME:
        raise ValueError(f"interval {_show(events.interval)} is not a number of seconds")
    for name, v in events.counts().items():
        if not 0 <= v <= U64:       # numbers (from_json checked), finite (the parse did)
            raise ValueError(f"{name} is {_show(v)}, not a count (0 .. 2^64-1)")
    return events


# -- reading ------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One ``mfd --record`` invocation (a row of ``run``)."""

    id: int
    started: float
    host: str
    kernel: str
    source: str
    pgdat_path: Optional[str]
    nr_orders: int
    interval: float
    mfd_version: str


@dataclass(frozen=True)
class ZoneRecord:
    """One zone of one recorded sample; indices are the stored x1000 integers."""

    node: int
    zone: str
    zone_idx: int
    start_pfn: int
    spanned: int
    present: int
    managed: int
    free_pages: int
    nr_free: Tuple[int, ...]
    extfrag: Tuple[int, ...]
    unusable: Tuple[int, ...]

    def snapshot(self) -> ZoneSnapshot:
        return ZoneSnapshot(node=self.node, zone=self.zone, zone_idx=self.zone_idx,
                            start_pfn=self.start_pfn, spanned=self.spanned,
                            present=self.present, managed=self.managed, nr_free=self.nr_free)


@dataclass(frozen=True)
class MapRecord:
    """One zone of one recorded pageblock map (a row of ``pagemap``):
    ``runs`` are (class, pageblocks) pairs in pfn order (mfd.pageblocks.CLASSES)."""

    time: float
    run_id: int
    node: int
    zone: str
    page_size: int
    pageblock_order: int
    first_block: int
    runs: Tuple[Tuple[int, int], ...]

    @property
    def blocks(self) -> int:
        return sum(n for _c, n in self.runs)

    def counts(self) -> Tuple[int, ...]:
        """Pageblocks per class."""
        out = [0] * MAP_CLASSES
        for c, n in self.runs:
            out[c] += n
        return tuple(out)


@dataclass(frozen=True)
class SampleRecord:
    """One recorded sample: its run, the (filtered) zones and nodes, the events."""

    id: int
    run: Run
    seq: int
    time: float
    interval: float
    events: Optional[Events]
    nodes: Tuple[Tuple[int, int, int, int, int], ...]   # node, nr_zones, start_pfn, present, spanned
    zones: Tuple[ZoneRecord, ...]

    def sample(self) -> Sample:
        """The :class:`~mfd.model.Sample` this record was written from (without pgdat)."""
        by_node: Dict[int, list] = {}
        for z in self.zones:        # one pass: a sample may hold 1024 nodes x 8 zones
            by_node.setdefault(z.node, []).append(z.snapshot())
        nodes = tuple(NodeSnapshot(node=n, nr_zones=nz, start_pfn=sp, present=pr, spanned=sn,
                                   zones=tuple(by_node.get(n, ())))
                      for n, nz, sp, pr, sn in self.nodes)
        snap = Snapshot(time=self.time, source=self.run.source, nr_orders=self.run.nr_orders,
                        nodes=nodes, pgdat_path=self.run.pgdat_path)
        return Sample(snapshot=snap, interval=self.interval, seq=self.seq, events=self.events)


class History:
    """A recording opened for reading (``mfd report``).

    Opens read-only when the file cannot be written (a read-only mount, another
    user's file); otherwise read-write so SQLite can recover a recording whose
    writer was killed.  Raises :class:`HistoryError` for a missing file, a file
    that is not an mfd recording, or a newer schema.

    The file is untrusted input (see "what a recording may hold" above): its
    schema objects must be mfd's (:func:`check_objects`), every row is checked
    as it is read, and SQLite's work on any one step is bounded in time.  What
    fails is one :class:`HistoryError` naming the row.
    """

    def __init__(self, path: str):
        self.path = path
        if not os.path.exists(path):
            raise HistoryError(f"no such recording: {path} (make one with mfd --record {path})")
        if os.path.isdir(path):
            raise HistoryError(f"{path} is a directory, not a recording")
        from urllib.parse import quote
        uri = "file:%s?mode=" % quote(os.path.abspath(path))
        if os.access(path, os.W_OK) and os.access(os.path.dirname(os.path.abspath(path)),
                                                  os.W_OK):
            uri += "rw"
        elif os.path.exists(path + "-wal"):
            uri += "ro"         # SQLite reads the WAL through the -shm file left beside it
        else:
            # Nothing left in a WAL, and SQLite could not create FILE-shm here (a
            # read-only mount): read the file as the immutable file it is.
            uri += "ro&immutable=1"
        self.conn: Optional[sqlite3.Connection] = None
        self._deadline = time.monotonic() + STEP_SECONDS
        try:
            self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5)
            self._guard(self.conn)
            self.version = check_schema(self.conn, path)
            if self.version == 0:
                raise HistoryError(f"{path} is empty, not an mfd recording")
            self.runs: Dict[int, Run] = {}
            for row in self.conn.execute(
                    "SELECT id, started, host, kernel, source, pgdat_path, nr_orders, interval, "
                    "mfd_version FROM run ORDER BY id"):
                run = self._run(row)
                self.runs[run.id] = run
        except sqlite3.Error as e:
            self.close()
            raise self._failed(e) from None
        except HistoryError:
            self.close()
            raise

    def _guard(self, conn: sqlite3.Connection) -> None:
        """Bound what SQLite does for this file: no step longer than STEP_SECONDS
        (a progress handler), no value longer than SQLITE_MAX_VALUE, nothing from
        the schema that is not known to be harmless, and no writes at all."""
        conn.set_progress_handler(self._progress, 10000)
        if hasattr(conn, "setlimit"):       # Python >= 3.11
            conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, SQLITE_MAX_VALUE)
        # SQLite's own defence for untrusted files (3.31+; older ones ignore the
        # pragma): SQL functions with side effects and virtual tables cannot be
        # used from the schema.  check_objects refuses views and triggers anyway.
        conn.execute("PRAGMA trusted_schema = OFF")
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA cell_size_check = ON")   # damaged b-tree pages: an error

    def _progress(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0     # non-zero: interrupt

    def _arm(self) -> None:
        """Give SQLite STEP_SECONDS for the next step."""
        self._deadline = time.monotonic() + STEP_SECONDS

    def _failed(self, e: sqlite3.Error) -> HistoryError:
        if time.monotonic() > self._deadline:
            return HistoryError(f"cannot read {self.path}: SQLite worked more than "
                                f"{STEP_SECONDS:.0f} s on one step without a result (a damaged "
                                "or crafted file?)")
        return HistoryError(f"cannot read {self.path}: {describe(e)}")

    def _run(self, row) -> Run:
        rid, started, host, kernel, source, pgdat_path, nr_orders, interval, version = row

        def bad(what: str) -> HistoryError:
            return HistoryError(f"{self.path}: run {_show(rid)}: {what}")
        if type(rid) is not int:
            raise bad("its id is not an integer")
        if not _is_time(started):
            raise bad(f"started is not a unix time ({_show(started)})")
        for name, v in (("host", host), ("kernel", kernel), ("source", source),
                        ("mfd_version", version), ("pgdat_path", pgdat_path)):
            if not (isinstance(v, str) and len(v) <= MAX_TEXT) \
                    and not (v is None and name == "pgdat_path"):
                raise bad(f"{name} is not a text of at most {MAX_TEXT} characters "
                          f"({_show(v)})")
        if not (type(nr_orders) is int and 1 <= nr_orders <= MAX_ORDERS):
            raise bad(f"nr_orders is not a number of orders from 1 to {MAX_ORDERS} "
                      f"({_show(nr_orders)})")
        if not _is_time(interval):
            raise bad(f"interval is not a number of seconds ({_show(interval)})")
        return Run(rid, float(started), host, kernel, source, pgdat_path, nr_orders,
                   float(interval), version)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self) -> "History":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _query(self, sql: str, params=()) -> list:
        """Every row of one bounded query (HistoryError if SQLite fails or stalls)."""
        self._arm()
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise self._failed(e) from None

    def bounds(self) -> Tuple[Optional[float], Optional[float], int]:
        """(first time, last time, number of samples) of the whole recording."""
        first, last, count = self._query(
            "SELECT min(time), max(time), count(*) FROM sample")[0]
        if count and not (_is_time(first) and _is_time(last)):
            # A time that is text, NULL or out of range: name the first such sample.
            bad = self._query("SELECT id, time FROM sample WHERE NOT (typeof(time) IN "
                              "('integer', 'real') AND time BETWEEN 0 AND ?) ORDER BY id "
                              "LIMIT 1", (MAX_TIME,))
            sid, t = bad[0] if bad else ("?", last)
            raise HistoryError(f"{self.path}: sample {_show(sid)}: time is not a unix time "
                               f"from 1970 to 9999 ({_show(t)})")
        return first, last, count

    def count(self, since: Optional[float] = None, until: Optional[float] = None) -> int:
        """Samples in ``[since, until]``."""
        where, params = self._where(since, until)
        return self._query("SELECT count(*) FROM sample" + where, params)[0][0]

    def _where(self, since, until, prefix="") -> Tuple[str, list]:
        clauses, params = [], []
        if since is not None:
            clauses.append(f"{prefix}time >= ?")
            params.append(since)
        if until is not None:
            clauses.append(f"{prefix}time <= ?")
            params.append(until)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def names(self) -> Tuple[List[int], List[str]]:
        """Node ids and zone names (in zone_idx order) the recording holds."""
        nodes = []
        for (n,) in self._query("SELECT DISTINCT node FROM node ORDER BY 1 LIMIT ?",
                                (MAX_NODES + 1,)):
            if not (type(n) is int and 0 <= n < MAX_NODES):
                sid = self._query("SELECT sample_id FROM node WHERE node IS ? LIMIT 1", (n,))
                raise HistoryError(f"{self.path}: sample {_show(sid[0][0] if sid else '?')}: "
                                   f"node {_show(n)} is not a node id below {MAX_NODES}")
            nodes.append(n)
        zones = []
        for name, idx, sid in self._query(
                "SELECT zone, min(zone_idx), min(sample_id) FROM zone GROUP BY zone "
                "ORDER BY 2, 1 LIMIT ?", (MAX_ZONE_NAMES + 1,)):
            if not (isinstance(name, str) and 0 < len(name) <= MAX_ZONE_NAME):
                raise HistoryError(f"{self.path}: sample {_show(sid)}: zone name {_show(name)} "
                                   f"is not a text of 1 to {MAX_ZONE_NAME} characters")
            zones.append(name)
        if len(zones) > MAX_ZONE_NAMES:
            raise HistoryError(f"{self.path}: more than {MAX_ZONE_NAMES} distinct zone names "
                               "(a kernel has at most 8)")
        return nodes, zones

    def map_times(self, since: Optional[float] = None, until: Optional[float] = None,
                  limit: int = MAX_SPACED_MAPS) -> Tuple[int, List[float]]:
        """(how many pageblock maps the recording took in ``[since, until]``,
        the times of at most ``limit`` of them, evenly spaced, the first and
        the last included); (0, []) before schema 3.  A long recording (a
        map every 10 s for a year) costs ``limit`` small queries, not a list
        of every map."""
        if self.version < 3:
            return 0, []
        where, params = self._where(since, until)
        count = self._query(f"SELECT count(DISTINCT time) FROM pagemap{where}", params)[0][0]
        if count <= limit:
            rows = self._query(f"SELECT DISTINCT time FROM pagemap{where} ORDER BY 1", params)
        else:
            picks = (sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})
                     if limit > 1 else [0])
            rows = [r for i in picks for r in self._query(
                f"SELECT DISTINCT time FROM pagemap{where} ORDER BY 1 LIMIT 1 OFFSET ?",
                params + [i])]
        times = [t for (t,) in rows]
        if not all(_is_time(t) for t in times):
            raise HistoryError(f"{self.path}: a pageblock map's time is not a unix time")
        return count, times

    def pagemap(self, at: float, flt: Filter = Filter()) -> List[MapRecord]:
        """The zones of the map taken at ``at`` (one of map_times())."""
        out, seen, blocks = [], set(), 0
        rows = self._query("SELECT id, run_id, time, node, zone, page_size, pageblock_order, "
                           "first_block, runs FROM pagemap WHERE time = ? ORDER BY node, "
                           "first_block LIMIT ?", (at, MAX_NODES * MAX_ZONES + 1))
        if len(rows) > MAX_NODES * MAX_ZONES:
            raise HistoryError(f"{self.path}: the pageblock map at {at} has more than "
                               f"{MAX_NODES * MAX_ZONES} zones")
        for row in rows:
            rec = self._map_row(row)
            if (rec.node, rec.zone) in seen:
                raise HistoryError(f"{self.path}: pagemap {_show(row[0])}: a second node "
                                   f"{rec.node} zone {rec.zone} in the map at {at}")
            if out and (rec.page_size, rec.pageblock_order) != (out[0].page_size,
                                                                out[0].pageblock_order):
                raise HistoryError(f"{self.path}: pagemap {_show(row[0])}: a page size or "
                                   "pageblock order other than its map's")
            seen.add((rec.node, rec.zone))
            blocks += rec.blocks
            if blocks > MAX_MAP_BLOCKS:
                raise HistoryError(f"{self.path}: the pageblock map at {at} has more than "
                                   f"{MAX_MAP_BLOCKS} pageblocks")
            if flt.wants(rec.node, rec.zone):
                out.append(rec)
        return out

    def _map_row(self, row) -> MapRecord:
        mid, rid, t, node, zone, page_size, order, first, runs = row

        def bad(what: str) -> HistoryError:
            return HistoryError(f"{self.path}: pagemap {_show(mid)}: {what}")
        if rid not in self.runs:
            raise bad(f"run_id {_show(rid)} is not a run in the file")
        if not (type(node) is int and 0 <= node < MAX_NODES):
            raise bad(f"node {_show(node)} is not a node id below {MAX_NODES}")
        if not (isinstance(zone, str) and 0 < len(zone) <= MAX_ZONE_NAME):
            raise bad(f"zone {_show(zone)} is not a text of 1 to {MAX_ZONE_NAME} characters")
        if not (type(page_size) is int and page_size in PAGE_SIZES):
            raise bad(f"page_size {_show(page_size)} is not a page size of Linux")
        if not (type(order) is int and 0 <= order < MAX_ORDERS):
            raise bad(f"pageblock_order {_show(order)} is not an order below {MAX_ORDERS}")
        if not (type(first) is int and 0 <= first < MAX_PFN >> order):
            raise bad(f"first_block {_show(first)} is not a pageblock number")
        parsed = _map_runs(runs)
        if parsed is None:
            raise bad(f"runs is not a list of class and length pairs (classes below "
                      f"{MAP_CLASSES}, at most {MAX_MAP_BLOCKS} pageblocks)")
        return MapRecord(float(t), rid, node, zone, page_size, order, first, parsed)

    def samples(self, since: Optional[float] = None, until: Optional[float] = None,
                flt: Filter = Filter()) -> Iterator[SampleRecord]:
        """Every sample in ``[since, until]`` in time order, streamed.

        The filter keeps only its zones and nodes in each record; the samples
        themselves (and their events) are all there.  A row that is not what
        mfd writes raises HistoryError naming it.
        """
        try:
            yield from self._samples(since, until, flt)
        except sqlite3.Error as e:
            raise self._failed(e) from None

    def _samples(self, since, until, flt: Filter) -> Iterator[SampleRecord]:
        where, params = self._where(since, until, "s.")
        order = " ORDER BY s.time, s.id"
        extra, extra_params = [], []
        if flt.node is not None:
            extra.append("x.node = ?")
            extra_params.append(flt.node)
        zextra = list(extra)
        zparams = list(extra_params)
        if flt.zone is not None:
            zextra.append("lower(x.zone) = lower(?)")
            zparams.append(flt.zone)

        def joined(table, cols, conds, cparams):
            sql = (f"SELECT s.id, {cols} FROM sample AS s JOIN {table} AS x ON x.sample_id = s.id"
                   + where + "".join((" AND " if where or i else " WHERE ") + c
                                     for i, c in enumerate(conds))
                   + order + ", x.node" + (", x.zone_idx" if table == "zone" else ""))
            return self.conn.execute(sql, params + cparams)

        self._arm()
        conn = self.conn
        zones = joined("zone", "x.node, x.zone, x.zone_idx, x.start_pfn, x.spanned, x.present, "
                       "x.managed, x.free_pages, x.nr_free, x.extfrag, x.unusable",
                       zextra, zparams)
        nodes = joined("node", "x.node, x.nr_zones, x.start_pfn, x.present, x.spanned",
                       extra, extra_params)
        zrow, nrow = zones.fetchone(), nodes.fetchone()
        counters: Set[str] = set()
        for sid, run_id, seq, t, interval, events in conn.execute(
                "SELECT s.id, s.run_id, s.seq, s.time, s.interval, s.events FROM sample AS s"
                + where + order, params):
            if not _is_time(t):
                raise HistoryError(f"{self.path}: sample {sid}: time is not a unix time from "
                                   f"1970 to 9999 ({_show(t)})")
            at = f"{self.path}: sample {sid} (time {t:.0f})"
            run = self.runs.get(run_id) if type(run_id) is int else None
            if run is None:
                raise HistoryError(f"{at}: run_id {_show(run_id)} names no run in the file")
            if not (type(seq) is int and seq >= 0):
                raise HistoryError(f"{at}: seq is not a sample number ({_show(seq)})")
            if not _is_time(interval):
                raise HistoryError(f"{at}: interval is not a number of seconds "
                                   f"({_show(interval)})")
            zs, last = [], (-1, -1)
            while zrow is not None and zrow[0] == sid:
                z = self._zone(zrow, run.nr_orders, at)
                # Ordered by the primary key, so a key repeated or out of order
                # is a damaged file; strictly rising keys also cap a sample at
                # MAX_NODES x MAX_ZONES zones.
                if (z.node, z.zone_idx) <= last:
                    raise HistoryError(f"{at}: zone rows repeat or are out of order")
                last = (z.node, z.zone_idx)
                zs.append(z)
                zrow = zones.fetchone()
            ns, last_node = [], -1
            while nrow is not None and nrow[0] == sid:
                ns.append(self._node(nrow, at))
                if ns[-1][0] <= last_node:
                    raise HistoryError(f"{at}: node rows repeat or are out of order")
                last_node = ns[-1][0]
                nrow = nodes.fetchone()
            if zs:
                ids = {n[0] for n in ns}
                lost = next((z for z in zs if z.node not in ids), None)
                if lost is not None:
                    raise HistoryError(f"{at}: zone {lost.zone} of node {lost.node} has no "
                                       "node row")
            ev = None
            if events is not None and events != "":
                if not isinstance(events, str):
                    raise HistoryError(f"{at}: events is not JSON text")
                try:
                    ev = parse_events(events)
                except ValueError as e:
                    raise HistoryError(f"{at}: events are not what mfd writes "
                                       f"({_reason(e)})") from None
                counters.update(ev.counts())
                if len(counters) > MAX_EVENT_COUNTERS:
                    raise HistoryError(f"{at}: more than {MAX_EVENT_COUNTERS} distinct event "
                                       "counters in the recording")
            yield SampleRecord(sid, run, seq, float(t), float(interval), ev, tuple(ns),
                               tuple(zs))
            self._arm()     # the next sample's rows get their own STEP_SECONDS

    def _node(self, row, at: str) -> Tuple[int, int, int, int, int]:
        _, node, nr_zones, start, present, spanned = row
        if not (type(node) is int and 0 <= node < MAX_NODES):
            raise HistoryError(f"{at}: node {_show(node)} is not a node id below {MAX_NODES}")
        if not (type(nr_zones) is int and 0 <= nr_zones <= MAX_ZONES):
            raise HistoryError(f"{at}: node {node}: nr_zones is not a number of zones from 0 "
                               f"to {MAX_ZONES} ({_show(nr_zones)})")
        for name, v in (("start_pfn", start), ("present", present), ("spanned", spanned)):
            if not (type(v) is int and v >= 0):     # SQLite integers end below 2^63
                raise HistoryError(f"{at}: node {node}: {name} is not a page count "
                                   f"({_show(v)})")
        return node, nr_zones, start, present, spanned

    def _zone(self, row, nr_orders: int, at: str) -> ZoneRecord:
        (_, node, name, idx, start, spanned, present, managed, free, nr_free, extfrag,
         unusable) = row
        if not (type(node) is int and 0 <= node < MAX_NODES):
            raise HistoryError(f"{at}: zone node {_show(node)} is not a node id below "
                               f"{MAX_NODES}")
        if not (type(idx) is int and 0 <= idx < MAX_ZONES):
            raise HistoryError(f"{at}: node {node}: zone_idx {_show(idx)} is not a zone "
                               f"index below {MAX_ZONES}")
        if not (isinstance(name, str) and 0 < len(name) <= MAX_ZONE_NAME):
            raise HistoryError(f"{at}: node {node} zone {idx}: the zone name is not a text of "
                               f"1 to {MAX_ZONE_NAME} characters ({_show(name)})")
        where = f"{at}: node {node} zone {name}"
        for what, v in (("start_pfn", start), ("spanned", spanned), ("present", present),
                        ("managed", managed), ("free_pages", free)):
            if not (type(v) is int and v >= 0):
                raise HistoryError(f"{where}: {what} is not a page count ({_show(v)})")
        counts = _int_list(nr_free, _UINT_LIST, nr_orders, 0, U64)
        if counts is None:
            raise HistoryError(f"{where}: nr_free is not a list of {nr_orders} non-negative "
                               "integers")
        ef = _int_list(extfrag, _INT_LIST, nr_orders, -S32, S32 - 1)
        if ef is None:
            raise HistoryError(f"{where}: extfrag is not a list of {nr_orders} integers")
        un = _int_list(unusable, _INT_LIST, nr_orders, -S32, S32 - 1)
        if un is None:
            raise HistoryError(f"{where}: unusable is not a list of {nr_orders} integers")
        return ZoneRecord(node, name, idx, start, spanned, present, managed, free, counts, ef,
                          un)


def _map_runs(text) -> Optional[Tuple[Tuple[int, int], ...]]:
    """A pagemap row's runs: pairs of a class below MAP_CLASSES and a length
    of at least 1, at most MAX_MAP_BLOCKS blocks in all; None otherwise."""
    if not (isinstance(text, str) and len(text) <= MAX_MAP_TEXT and _UINT_LIST.fullmatch(text)):
        return None
    values = json.loads(text)
    if len(values) % 2:
        return None
    runs = tuple(zip(values[0::2], values[1::2]))
    if any(c >= MAP_CLASSES or n < 1 for c, n in runs) or \
            sum(n for _c, n in runs) > MAX_MAP_BLOCKS:
        return None
    return runs


def _int_list(text, pattern, length: int, lo: int, hi: int) -> Optional[Tuple[int, ...]]:
    """The JSON array ``text`` as a tuple of ``length`` integers in ``[lo, hi]``; None
    if it is anything else.  The pattern is checked first, so no array mfd did not
    write reaches json.loads (no nesting, no floats, bounded length)."""
    if not (isinstance(text, str) and len(text) <= _MAX_LIST_TEXT
            and pattern.fullmatch(text)):
        return None
    values = tuple(json.loads(text))
    if len(values) != length or (values and (min(values) < lo or max(values) > hi)):
        return None
    return values


def _reason(e: Exception) -> str:
    """An exception's message, one line and short."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 120 else text[:117] + "..."
