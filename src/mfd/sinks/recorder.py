"""The ``--record FILE`` sink: every sample into an SQLite recording
(the schema, and reading it back: mfd.recording)."""
from __future__ import annotations

import errno
import json
import os
import resource
import socket
import sqlite3
import time
from typing import Callable, Optional

from .. import __version__
from ..derive import Frame
from ..recording import (MAX_MAP_BLOCKS, MAX_MAP_TEXT, SCHEMA_VERSION, HistoryError,
                         check_schema, create_schema, describe, upgrade)
from ..safefs import check_opened, open_files, prepare_database, remove_new, side_files
from ..term import note as stderr_note


def check_writable(path: str) -> None:
    """Raise OSError with a precise reason when ``path`` cannot hold a recording.

    SQLite itself would only say "unable to open database file".  WAL mode
    creates ``FILE-wal`` and ``FILE-shm`` beside the file, so the directory
    must be writable too.
    """
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


def check_writable_or_fail(path: str) -> None:
    try:
        check_writable(path)
    except OSError as e:
        raise HistoryError(f"cannot record to {path}: {describe(e)} "
                           "(choose a writable file with --record)") from None


def _out_of_fds() -> Optional[str]:
    """Why no file can be opened, if that is so (EMFILE, ENFILE)."""
    try:
        os.close(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
    except OSError as e:
        if e.errno in (errno.EMFILE, errno.ENFILE):
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            return (f"{e.strerror} (RLIMIT_NOFILE is {soft}; SQLite needs three more "
                    f"for the database, its -wal and its -shm: raise it with ulimit -n)")
    return None


def _json_list(values) -> str:
    return json.dumps(list(values), separators=(",", ":"))


class Recorder:
    """The ``--record FILE`` sink: writes every sample (a :class:`~mfd.derive.Frame`) it is given.

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
                 note: Callable[[str], None] = stderr_note,
                 host: Optional[str] = None, kernel: Optional[str] = None,
                 follow_symlinks: bool = False):
        self.path, self.interval, self.retain, self.note = path, interval, retain, note
        self.follow_symlinks = follow_symlinks
        self.host = host or socket.gethostname()
        self.kernel = kernel or os.uname().release
        self.run_id: Optional[int] = None
        self.samples = 0
        self.maps = 0
        self._map_too_big = False
        self.conn: Optional[sqlite3.Connection] = None
        check_writable_or_fail(path)
        target, ident, created = prepare_database(path, follow_symlinks)
        side = side_files(target)
        try:
            self.conn = self._open(target, ident)
        except BaseException as e:
            # SQLite says only "unable to open database file" when it is out of file
            # descriptors: ask while its own are still open.
            short = _out_of_fds()
            if self.conn is not None:
                self.conn.close()
                self.conn = None
            remove_new(target, created, side)    # a failed open leaves nothing behind
            if short:
                raise HistoryError(f"cannot record to {path}: {short}") from None
            if isinstance(e, (sqlite3.Error, OSError)):
                raise HistoryError(f"cannot record to {path}: {describe(e)} "
                                   "(choose a writable file with --record)") from None
            raise

    def _open(self, target: str, ident) -> sqlite3.Connection:
        before = open_files()
        conn = sqlite3.connect(target, isolation_level=None, timeout=5)
        self.conn = conn
        version = check_schema(conn, self.path)
        check_opened(before, ident, self.path)  # the file SQLite opened is the one checked
        if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
            raise sqlite3.OperationalError("cannot switch to WAL mode")
        # NORMAL in WAL mode: a commit survives the process being killed (it is in
        # the OS page cache); a power cut may lose the last commits, never the file.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA journal_size_limit=%d" % (4 << 20))
        if version < SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            if version == 0:
                create_schema(conn, time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            else:
                upgrade(conn, version)
            conn.execute("COMMIT")
        return conn

    def emit(self, frame: Frame) -> None:
        if self.conn is None:
            return
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._insert(conn, frame)
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as e:
            self._stop(e)
            return
        self.samples += 1

    def _insert(self, conn: sqlite3.Connection, frame: Frame) -> None:
        sample, snap = frame.sample, frame.snapshot
        if self.run_id is None:
            self.run_id = conn.execute(
                "INSERT INTO run (started, host, kernel, source, pgdat_path, nr_orders, "
                "interval, mfd_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (snap.time, self.host, self.kernel, snap.source, snap.pgdat_path,
                 snap.nr_orders, self.interval, __version__)).lastrowid
        events = None if sample.events is None else json.dumps(sample.events.to_json(),
                                                               separators=(",", ":"))
        sid = conn.execute(
            "INSERT INTO sample (run_id, seq, time, interval, events) VALUES (?, ?, ?, ?, ?)",
            (self.run_id, sample.seq, snap.time, sample.interval, events)).lastrowid
        conn.executemany("INSERT INTO node VALUES (?, ?, ?, ?, ?, ?)", [
            (sid, n.node, n.nr_zones, n.start_pfn, n.present, n.spanned) for n in snap.nodes])
        conn.executemany("INSERT INTO zone VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            (sid, z.node, z.zone_idx, z.zone, z.start_pfn, z.spanned, z.present, z.managed,
             z.free_pages, _json_list(z.nr_free), _json_list(f.extfrag), _json_list(f.unusable))
            for f in frame.all_zones() for z in (f.zone,)])
        if self.retain is not None:
            cutoff = snap.time - self.retain
            old = "SELECT id FROM sample WHERE time < ?"
            conn.execute(f"DELETE FROM zone WHERE sample_id IN ({old})", (cutoff,))
            conn.execute(f"DELETE FROM node WHERE sample_id IN ({old})", (cutoff,))
            conn.execute("DELETE FROM sample WHERE time < ?", (cutoff,))
            conn.execute("DELETE FROM pagemap WHERE time < ?", (cutoff,))

    def emit_map(self, pm) -> None:
        """A pageblock map (mfd.model.physmap.PhysMap), one row per zone, in
        one transaction.  Before the first sample there is no run to file it
        under: it is dropped (the monitor takes maps after its first sample)."""
        if self.conn is None or self.run_id is None:
            return
        from ..pageblocks import index_runs     # numpy: only for a recording with maps
        conn = self.conn
        rows = [(self.run_id, pm.time, z.node, z.zone, pm.page_size, pm.pageblock_order,
                 z.first_block,
                 json.dumps([v for run in index_runs(z.classes) for v in run],
                            separators=(",", ":")))
                for z in pm.zones]
        # what the reader would refuse is not written (mfd.recording's caps)
        if sum(z.blocks for z in pm.zones) > MAX_MAP_BLOCKS or \
                any(len(r[-1]) > MAX_MAP_TEXT for r in rows):
            if not self._map_too_big:
                self._map_too_big = True
                self.note(f"a pageblock map over {MAX_MAP_BLOCKS} pageblocks or "
                          f"{MAX_MAP_TEXT >> 20} MiB is not recorded")
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO pagemap (run_id, time, node, zone, page_size, "
                             "pageblock_order, first_block, runs) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             rows)
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as e:
            self._stop(e)
            return
        self.maps += 1

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
        self.note(f"recording to {self.path} stopped: {describe(e)}; "
                  f"{self.samples} samples of this run are in the file; monitoring goes on")

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass
