"""Recordings: every sample in an SQLite file (``mfd --record FILE``), and reading them back.

The file is plain SQLite (stdlib :mod:`sqlite3`) in WAL mode, one transaction
per sample, so a killed mfd loses at most the sample it was writing and the
file always passes ``PRAGMA integrity_check``.  Schema version 1
(``PRAGMA user_version``; ``PRAGMA application_id`` is :data:`APPLICATION_ID`):

``run``     one row per ``mfd --record`` invocation:
            ``id, started`` (unix time of its first sample), ``host``,
            ``kernel`` (``uname -r``), ``source`` (``bpf``/``procfs``),
            ``pgdat_path`` (``kallsyms``/``memcg``/NULL), ``nr_orders``,
            ``interval`` (``-d``), ``mfd_version``.
``sample``  one row per sample: ``id, run_id, seq`` (0, 1, ... within the
            run), ``time`` (unix seconds), ``interval`` (seconds since the
            previous sample), ``events`` (JSON of the interval's event counts,
            NULL when no events were traced).
``node``    per sample and node: ``sample_id, node, nr_zones, start_pfn,
            present, spanned`` (pages).
``zone``    per sample and zone, empty zones too: ``sample_id, node,
            zone_idx, zone`` (name), ``start_pfn, spanned, present, managed,
            free_pages``, and three JSON arrays with one entry per order:
            ``nr_free`` (free_area[order].nr_free), ``extfrag`` and
            ``unusable`` (the kernel's indices times 1000, as mm/vmstat.c
            computes them: 500 is 0.500, -1000 is extfrag's "a suitable
            block exists").
``zone_order`` (a view) the same, one row per order, for plain SQL.
``meta``    ``key, value`` text: ``schema``, ``created``, ``created_by``.

Kernel addresses (a node's pglist_data) are never written.
"""
from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from . import __version__, fragindex
from .errors import MfdError, UsageError
from .model import NodeSnapshot, Sample, Snapshot, ZoneSnapshot

__all__ = ["SCHEMA_VERSION", "APPLICATION_ID", "Recorder", "History", "Run", "ZoneRecord",
           "SampleRecord", "parse_duration", "parse_time", "format_duration"]

SCHEMA_VERSION = 1
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
CREATE VIEW zone_order AS
    SELECT s.time AS time, z.sample_id AS sample_id, z.node AS node, z.zone AS zone,
           CAST(o.key AS INTEGER) AS "order", o.value AS nr_free,
           json_extract(z.extfrag, '$[' || o.key || ']') / 1000.0 AS extfrag_index,
           json_extract(z.unusable, '$[' || o.key || ']') / 1000.0 AS unusable_index
    FROM zone AS z JOIN sample AS s ON s.id = z.sample_id, json_each(z.nr_free) AS o;
"""

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
    if not s or pos != len(s) or not total > 0:
        raise ValueError(f"not a duration: {text!r} (examples: 90s, 15m, 2h, 7d, 1h30m)")
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
        return end - parse_duration(s[1:])
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


def _errname(e: sqlite3.Error) -> str:
    """SQLite's error name (``SQLITE_FULL``...) where Python >= 3.11 gives it, else ''."""
    return getattr(e, "sqlite_errorname", "") or ""


def _describe(e: BaseException) -> str:
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


def _check_schema(conn: sqlite3.Connection, path: str) -> int:
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


def _check_writable(path: str) -> None:
    """Raise OSError with a precise reason when ``path`` cannot hold a recording.

    SQLite itself would only say "unable to open database file".  WAL mode
    creates ``FILE-wal`` and ``FILE-shm`` beside the file, so the directory
    must be writable too.
    """
    import errno
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise OSError(errno.EISDIR, "it is a directory")
    try:
        os.stat(folder)
    except PermissionError:
        raise OSError(errno.EACCES, f"permission denied on {folder}") from None
    except OSError:
        raise OSError(errno.ENOENT, f"no such directory {folder}") from None
    if not os.path.isdir(folder):
        raise OSError(errno.ENOTDIR, f"{folder} is not a directory")
    for target in ([path] if os.path.exists(path) else []) + [folder]:
        if not os.access(target, os.W_OK):
            if os.statvfs(folder).f_flag & os.ST_RDONLY:
                raise OSError(errno.EROFS, f"{folder} is on a read-only file system")
            raise OSError(errno.EACCES, f"permission denied on {target}")


def _json_list(values) -> str:
    return json.dumps(list(values), separators=(",", ":"))


class Recorder:
    """The ``--record FILE`` sink: writes every :class:`~mfd.model.Sample` it is given.

    Opening creates the file (or appends a new run to an existing recording)
    and raises :class:`HistoryError` -- mfd exits 1 before it monitors
    anything -- when the path cannot be written, is not an mfd recording, or
    has a newer schema.

    A write that fails later (disk full, I/O error, the file went read-only)
    rolls its sample back, prints one line through ``note`` and stops
    recording; monitoring goes on, and every sample committed before stays
    readable.  A sample that :meth:`emit` returned from is committed.

    ``retain`` (seconds) deletes, in the same transaction as each new sample,
    every sample older than that.  SQLite reuses the freed pages, so the
    file stops growing once it holds ``retain`` worth of samples.
    """

    def __init__(self, path: str, interval: float, retain: Optional[float] = None,
                 note: Callable[[str], None] = lambda msg: print(f"mfd: {msg}",
                                                                 file=sys.stderr, flush=True),
                 host: Optional[str] = None, kernel: Optional[str] = None):
        self.path, self.interval, self.retain, self.note = path, interval, retain, note
        self.host = host or socket.gethostname()
        self.kernel = kernel or os.uname().release
        self.run_id: Optional[int] = None
        self.samples = 0
        self.conn: Optional[sqlite3.Connection] = None
        try:
            self.conn = self._open()
        except (sqlite3.Error, OSError) as e:
            if self.conn is not None:
                self.conn.close()
            raise HistoryError(f"cannot record to {path}: {_describe(e)} "
                               "(choose a writable file with --record)") from None

    @classmethod
    def from_args(cls, args, note: Callable[[str], None]) -> "Recorder":
        return cls(args.record, interval=args.interval, retain=args.retain, note=note)

    def _open(self) -> sqlite3.Connection:
        _check_writable(self.path)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=5)
        self.conn = conn
        version = _check_schema(conn, self.path)
        if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
            raise sqlite3.OperationalError("cannot switch to WAL mode")
        # NORMAL in WAL mode: a commit survives the process being killed (it is in
        # the OS page cache); a power cut may lose the last commits, never the file.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA journal_size_limit=%d" % (4 << 20))
        if version == 0:
            conn.execute("BEGIN IMMEDIATE")
            for stmt in _SCHEMA.split(";\n"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("schema", str(SCHEMA_VERSION)),
                ("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
                ("created_by", f"mfd {__version__}")])
            conn.execute("PRAGMA application_id=%d" % APPLICATION_ID)
            conn.execute("PRAGMA user_version=%d" % SCHEMA_VERSION)
            conn.execute("COMMIT")
        return conn

    def emit(self, sample: Sample) -> None:
        if self.conn is None:
            return
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._insert(conn, sample)
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as e:
            self._stop(e)
            return
        self.samples += 1

    def _insert(self, conn: sqlite3.Connection, sample: Sample) -> None:
        snap = sample.snapshot
        if self.run_id is None:
            self.run_id = conn.execute(
                "INSERT INTO run (started, host, kernel, source, pgdat_path, nr_orders, "
                "interval, mfd_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (snap.time, self.host, self.kernel, snap.source, snap.pgdat_path,
                 snap.nr_orders, self.interval, __version__)).lastrowid
        events = None if sample.events is None else json.dumps(sample.events,
                                                               separators=(",", ":"))
        sid = conn.execute(
            "INSERT INTO sample (run_id, seq, time, interval, events) VALUES (?, ?, ?, ?, ?)",
            (self.run_id, sample.seq, snap.time, sample.interval, events)).lastrowid
        conn.executemany("INSERT INTO node VALUES (?, ?, ?, ?, ?, ?)", [
            (sid, n.node, n.nr_zones, n.start_pfn, n.present, n.spanned) for n in snap.nodes])
        conn.executemany("INSERT INTO zone VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            (sid, z.node, z.zone_idx, z.zone, z.start_pfn, z.spanned, z.present, z.managed,
             z.free_pages, _json_list(z.nr_free),
             _json_list(fragindex.extfrag_indices(z.nr_free)),
             _json_list(fragindex.unusable_indices(z.nr_free)))
            for z in snap.zones()])
        if self.retain is not None:
            cutoff = snap.time - self.retain
            old = "SELECT id FROM sample WHERE time < ?"
            conn.execute(f"DELETE FROM zone WHERE sample_id IN ({old})", (cutoff,))
            conn.execute(f"DELETE FROM node WHERE sample_id IN ({old})", (cutoff,))
            conn.execute("DELETE FROM sample WHERE time < ?", (cutoff,))

    def _stop(self, e: BaseException) -> None:
        conn, self.conn = self.conn, None
        try:
            if conn is not None and conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite already rolled back (e.g. after SQLITE_FULL)
        try:
            if conn is not None:
                conn.close()
        except sqlite3.Error:
            pass
        self.note(f"recording to {self.path} stopped: {_describe(e)}; "
                  f"{self.samples} samples of this run are in the file; monitoring goes on")

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass


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
    events: Optional[dict]
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
            self.version = _check_schema(self.conn, path)
            if self.version == 0:
                raise HistoryError(f"{path} is empty, not an mfd recording")
            self.runs: Dict[int, Run] = {r[0]: Run(*r) for r in self.conn.execute(
                "SELECT id, started, host, kernel, source, pgdat_path, nr_orders, interval, "
                "mfd_version FROM run ORDER BY id")}
        except sqlite3.Error as e:
            self.close()
            raise HistoryError(f"cannot read {path}: {_describe(e)}") from None
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

    def samples(self, since: Optional[float] = None, until: Optional[float] = None,
                node: Optional[int] = None, zone: Optional[str] = None) -> Iterator[SampleRecord]:
        """Every sample in ``[since, until]`` in time order, streamed.

        ``node`` and ``zone`` (a name, any case) keep only those zones and
        nodes in each record; the samples themselves (and their events) are
        all there.
        """
        try:
            yield from self._samples(since, until, node, zone)
        except sqlite3.Error as e:
            raise HistoryError(f"cannot read {self.path}: {_describe(e)}") from None

    def _samples(self, since, until, node, zone) -> Iterator[SampleRecord]:
        where, params = self._where(since, until, "s.")
        order = " ORDER BY s.time, s.id"
        extra, extra_params = [], []
        if node is not None:
            extra.append("x.node = ?")
            extra_params.append(node)
        zextra = list(extra)
        zparams = list(extra_params)
        if zone is not None:
            zextra.append("lower(x.zone) = lower(?)")
            zparams.append(zone)

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
                               loads(events) if events else None, tuple(ns), tuple(zs))
