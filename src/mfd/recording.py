"""Recordings: every sample in an SQLite file (``mfd --record FILE``), and reading them back.

The file is plain SQLite (stdlib :mod:`sqlite3`) in WAL mode, one transaction
per sample, so a killed mfd loses at most the sample it was writing and the
file always passes ``PRAGMA integrity_check``.  Schema version 2
(``PRAGMA user_version``; ``PRAGMA application_id`` is :data:`APPLICATION_ID`);
version 1 differs only in the ``zone_order`` view, and is read as it is and
upgraded when recorded to (see :func:`upgrade`):

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
``meta``    ``key, value`` text: ``schema``, ``created``, ``created_by``.

Kernel addresses (a node's pglist_data) are never written.
"""
from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

from . import __version__
from .errors import MfdError
from .model import Events, Filter, NodeSnapshot, Sample, Snapshot, ZoneSnapshot

__all__ = ["SCHEMA_VERSION", "APPLICATION_ID", "History", "HistoryError", "Run", "ZoneRecord",
           "SampleRecord", "create_schema", "upgrade"]

SCHEMA_VERSION = 2
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


def create_schema(conn: sqlite3.Connection, created: str) -> None:
    """The tables, the view and the meta rows of a new recording (in a transaction)."""
    for stmt in (_SCHEMA + _VIEW).split(";\n"):
        if stmt.strip():
            conn.execute(stmt)
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [
        ("schema", str(SCHEMA_VERSION)), ("created", created),
        ("created_by", f"mfd {__version__}")])
    conn.execute("PRAGMA application_id=%d" % APPLICATION_ID)
    conn.execute("PRAGMA user_version=%d" % SCHEMA_VERSION)


def upgrade(conn: sqlite3.Connection, version: int) -> None:
    """Bring a recording of an older schema to this one (in a transaction).
    1 -> 2: the zone_order view gains populated and leaves empty zones' indices out."""
    if version == 1:
        conn.execute("DROP VIEW IF EXISTS zone_order")
        conn.execute(_VIEW)
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
    """The file's schema version; raises HistoryError for another program's DB or a newer mfd's."""
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
    return version


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
        nodes = tuple(NodeSnapshot(node=n, nr_zones=nz, start_pfn=sp, present=pr, spanned=sn,
                                   zones=tuple(z.snapshot() for z in self.zones if z.node == n))
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
        try:
            self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5)
            self.version = check_schema(self.conn, path)
            if self.version == 0:
                raise HistoryError(f"{path} is empty, not an mfd recording")
            self.runs: Dict[int, Run] = {r[0]: Run(*r) for r in self.conn.execute(
                "SELECT id, started, host, kernel, source, pgdat_path, nr_orders, interval, "
                "mfd_version FROM run ORDER BY id")}
        except sqlite3.Error as e:
            self.close()
            raise HistoryError(f"cannot read {path}: {describe(e)}") from None
        except HistoryError:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self) -> "History":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def bounds(self) -> Tuple[Optional[float], Optional[float], int]:
        """(first time, last time, number of samples) of the whole recording."""
        return self.conn.execute("SELECT min(time), max(time), count(*) FROM sample").fetchone()

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
        nodes = [r[0] for r in self.conn.execute("SELECT DISTINCT node FROM node ORDER BY 1")]
        zones = [r[0] for r in self.conn.execute(
            "SELECT zone FROM zone GROUP BY zone ORDER BY min(zone_idx), zone")]
        return nodes, zones

    def samples(self, since: Optional[float] = None, until: Optional[float] = None,
                flt: Filter = Filter()) -> Iterator[SampleRecord]:
        """Every sample in ``[since, until]`` in time order, streamed.

        The filter keeps only its zones and nodes in each record; the samples
        themselves (and their events) are all there.
        """
        try:
            yield from self._samples(since, until, flt)
        except sqlite3.Error as e:
            raise HistoryError(f"cannot read {self.path}: {describe(e)}") from None

    def _events(self, text: Optional[str], sid: int) -> Optional[Events]:
        if not text:
            return None
        try:
            return Events.from_json(json.loads(text))
        except (ValueError, TypeError) as e:
            raise HistoryError(f"{self.path}: sample {sid} has malformed events ({e})") from None

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

        conn = self.conn
        zones = joined("zone", "x.node, x.zone, x.zone_idx, x.start_pfn, x.spanned, x.present, "
                       "x.managed, x.free_pages, x.nr_free, x.extfrag, x.unusable",
                       zextra, zparams)
        nodes = joined("node", "x.node, x.nr_zones, x.start_pfn, x.present, x.spanned",
                       extra, extra_params)
        zrow, nrow = zones.fetchone(), nodes.fetchone()
        loads = json.loads
        for sid, run_id, seq, t, interval, events in conn.execute(
                "SELECT s.id, s.run_id, s.seq, s.time, s.interval, s.events FROM sample AS s"
                + where + order, params):
            zs = []
            while zrow is not None and zrow[0] == sid:
                zs.append(ZoneRecord(zrow[1], zrow[2], zrow[3], zrow[4], zrow[5], zrow[6],
                                     zrow[7], zrow[8], tuple(loads(zrow[9])),
                                     tuple(loads(zrow[10])), tuple(loads(zrow[11]))))
                zrow = zones.fetchone()
            ns = []
            while nrow is not None and nrow[0] == sid:
                ns.append(tuple(nrow[1:]))
                nrow = nodes.fetchone()
            yield SampleRecord(sid, self.runs[run_id], seq, t, interval,
                               self._events(events, sid), tuple(ns), tuple(zs))
