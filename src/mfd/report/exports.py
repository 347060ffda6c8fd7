"""--csv and --json exports of a recording, written one record at a time."""
from __future__ import annotations

import contextlib
import csv
import json
import sys
import time
from typing import List, Optional

from ..derive import Frame
from ..errors import MfdError
from ..fragindex import format_index
from ..model import Filter
from ..recording import SampleRecord
from ..safefs import AtomicOutput
from ..sinks.jsonl import sample_json

# populated: 0 for an empty zone (no present pages), whose index cells stay
# empty, as the kernel's debugfs files leave such zones out.
CSV_HEADER = ["time", "timestamp", "run", "host", "kernel", "source", "node", "zone", "order",
              "nr_free", "free_pages", "managed", "extfrag_index", "unusable_index",
              "populated"]


def _where(path: str) -> str:
    return "to standard output" if path == "-" else path


class Exports:
    """--csv and --json writers, fed one record at a time (``-`` is stdout).

    Files are written beside their target and renamed onto it by
    :meth:`commit` (mfd.safefs: never through a planted symlink); a report
    that fails half way leaves the targets as they were."""

    def __init__(self, csv_path: Optional[str], json_path: Optional[str],
                 flt: Filter = Filter(), follow_symlinks: bool = False):
        self.filter = flt
        self.files: List[AtomicOutput] = []
        self.follow_symlinks = follow_symlinks
        self.csv = self.json = None
        self.csv_where = self.json_where = ""
        try:
            if csv_path:
                self.csv_where = _where(csv_path)
                f = self._open(csv_path)
                self.csv = csv.writer(f, lineterminator="\n")
                self.csv.writerow(CSV_HEADER)
            if json_path:
                self.json_where = _where(json_path)
                self.json = self._open(json_path)
        except BaseException:
            self.abort()
            raise

    def _open(self, path: str):
        if path == "-":
            return sys.stdout
        out = AtomicOutput(path, follow_symlinks=self.follow_symlinks)
        self.files.append(out)
        return out.file

    def __call__(self, rec: SampleRecord) -> None:
        if self.csv is not None:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(rec.time))
            lead = [f"{rec.time:.6f}", stamp, rec.run.id, rec.run.host, rec.run.kernel,
                    rec.run.source]
            with self._writing(self.csv_where):
                self.csv.writerows(
                    lead + [z.node, z.zone, o, n, z.free_pages, z.managed]
                    + ([format_index(e), format_index(u), 1] if z.present else ["", "", 0])
                    for z in rec.zones
                    for o, (n, e, u) in enumerate(zip(z.nr_free, z.extfrag, z.unusable)))
        if self.json is not None:
            obj = sample_json(Frame(rec.sample(), self.filter), rec.run.host,
                              rec.run.kernel, run=rec.run.id)
            with self._writing(self.json_where):
                self.json.write(json.dumps(obj) + "\n")

    @contextlib.contextmanager
    def _writing(self, where: str):
        try:
            yield
        except BrokenPipeError:
            raise
        except OSError as e:
            raise MfdError(f"cannot write {where}: {e.strerror or e}") from None

    def commit(self) -> None:
        """Put the finished files in place."""
        files, self.files = self.files, []
        for i, out in enumerate(files):
            try:
                out.commit()
            except BaseException:
                for rest in files[i + 1:]:
                    rest.abort()
                raise

    def abort(self) -> None:
        """Drop the unfinished files; their targets stay as they were."""
        files, self.files = self.files, []
        for out in files:
            out.abort()
