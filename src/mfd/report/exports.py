"""--csv and --json exports of a recording, written one record at a time."""
from __future__ import annotations

import csv
import json
import sys
import time
from typing import Optional

from ..derive import Frame
from ..errors import MfdError
from ..fragindex import format_index
from ..model import Filter
from ..recording import SampleRecord
from ..sinks.jsonl import sample_json

# populated: 0 for an empty zone (no present pages), whose index cells stay
# empty, as the kernel's debugfs files leave such zones out.
CSV_HEADER = ["time", "timestamp", "run", "host", "kernel", "source", "node", "zone", "order",
              "nr_free", "free_pages", "managed", "extfrag_index", "unusable_index",
              "populated"]


class Exports:
    """--csv and --json writers, fed one record at a time (``-`` is stdout)."""

    def __init__(self, csv_path: Optional[str], json_path: Optional[str],
                 flt: Filter = Filter()):
        self.filter = flt
        self.files = []
        self.csv = self.json = None
        try:
            if csv_path:
                f = self._open(csv_path)
                self.csv = csv.writer(f, lineterminator="\n")
                self.csv.writerow(CSV_HEADER)
            if json_path:
                self.json = self._open(json_path)
        except OSError as e:
            self.close()
            raise MfdError(f"cannot write {e.filename}: {e.strerror}") from None

    def _open(self, path: str):
        if path == "-":
            return sys.stdout
        f = open(path, "w", encoding="utf-8", newline="")
        self.files.append(f)
        return f

    def __call__(self, rec: SampleRecord) -> None:
        try:
            if self.csv is not None:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(rec.time))
                lead = [f"{rec.time:.6f}", stamp, rec.run.id, rec.run.host, rec.run.kernel,
                        rec.run.source]
                self.csv.writerows(
                    lead + [z.node, z.zone, o, n, z.free_pages, z.managed]
                    + ([format_index(e), format_index(u), 1] if z.present else ["", "", 0])
                    for z in rec.zones
                    for o, (n, e, u) in enumerate(zip(z.nr_free, z.extfrag, z.unusable)))
            if self.json is not None:
                obj = sample_json(Frame(rec.sample(), self.filter), rec.run.host,
                                  rec.run.kernel, run=rec.run.id)
                self.json.write(json.dumps(obj) + "\n")
        except OSError as e:
            if isinstance(e, BrokenPipeError):
                raise
            raise MfdError(f"cannot write the export: {e.strerror or e}") from None

    def close(self) -> None:
        for f in self.files:
            f.close()
        self.files = []
