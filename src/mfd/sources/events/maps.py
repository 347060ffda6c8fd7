"""Reading BPF maps (mfd.kernel.bpfmap.Map) once per interval, in as few
syscalls as the kernel allows."""
from __future__ import annotations

import array
import ctypes
import errno
import os
from typing import List, Sequence, Tuple

from ...kernel.bpfmap import ENOTSUPP
from ...model import HistBucket


class HashDrain:
    """Read and empty a BPF hash map each interval.

    BPF_MAP_LOOKUP_AND_DELETE_BATCH (Linux 5.6+) into buffers of ``chunk``
    entries kept from one interval to the next: one syscall per ``chunk``
    entries, plus one.  (BCC's own items_lookup_and_delete_batch() allocates
    and zeroes buffers for the map's whole max_entries on every call: for
    the compaction maps 1.5 MB per interval, whose page faults cost mfd more
    the busier the allocator is.)  Without batch support (older kernels),
    walk the keys and delete each, as bcc's tools do.  Keys and values are
    the table's own ctypes Key and Leaf (copies), or ints for scalar types.
    """

    def __init__(self, table, chunk: int = 256):
        self.table = table
        self.batch = True
        self._size(chunk)

    def _size(self, n: int) -> None:
        self._n = n
        self._keys = (self.table.Key * n)()
        self._values = (self.table.Leaf * n)()

    def __call__(self) -> List[Tuple[object, object]]:
        if self.batch:
            try:
                return self._batch()
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP, ENOTSUPP):
                    raise
                self.batch = False       # kernel before 5.6
        items = [(k, v) for k, v in self.table.items()]
        for k, _ in items:
            try:
                del self.table[k]
            except KeyError:
                pass
        return items

    def _batch(self) -> List[Tuple[object, object]]:
        out: List[Tuple[object, object]] = []
        token_in, token_out = ctypes.c_uint32(0), ctypes.c_uint32(0)
        first = True
        while True:
            count = ctypes.c_uint32(self._n)
            err = self.table.lookup_and_delete_batch(
                None if first else ctypes.byref(token_in), ctypes.byref(token_out),
                self._keys, self._values, count)
            if err == errno.ENOSPC and count.value == 0:
                self._size(self._n * 2)  # one hash bucket holds more than the buffer
                continue
            if err not in (0, errno.ENOENT):
                raise OSError(err, f"BPF_MAP_LOOKUP_AND_DELETE_BATCH: {os.strerror(err)}")
            out.extend((_copy(self._keys[i]), _copy(self._values[i]))
                       for i in range(count.value))
            if err == errno.ENOENT:    # the map is empty now
                return out
            token_in.value, first = token_out.value, False


def _copy(x):
    """A ctypes struct out of a reused buffer (ints and bytes are copies already)."""
    return type(x).from_buffer_copy(x) if isinstance(x, (ctypes.Structure, ctypes.Array)) else x


class PerCpuTotals:
    """The sum over CPUs of element 0 of a BPF_PERCPU_ARRAY whose value is a
    struct of u64s, as an instance of the table's own Leaf; and its change
    since the previous read.  One lookup fetches every CPU's copy."""

    def __init__(self, table):
        self.table = table
        self.leaf_type = table.sLeaf
        size = ctypes.sizeof(self.leaf_type)
        if size % 8:
            raise ValueError("per-CPU record is not made of u64 fields")
        self.words = size // 8
        self.prev = array.array("Q", bytes(size))

    def _sum(self) -> "array.array":
        raw = memoryview(bytes(self.table[0])).cast("Q")
        n = self.words
        return array.array("Q", map(sum, zip(*(raw[i:i + n] for i in range(0, len(raw), n)))))

    def delta(self):
        """Leaf holding what accumulated since the previous call."""
        cur = self._sum()
        diff = array.array("Q", (c - p for c, p in zip(cur, self.prev)))
        self.prev = cur
        return self.leaf_type.from_buffer_copy(diff.tobytes())


def scalar(x) -> int:
    """An integer key/value: batch reads give ints, item reads ctypes scalars."""
    return getattr(x, "value", x)


def cgroup_name(names, cgroup_id: int) -> str:
    """A cgroup v2 id as its path (mfd.kernel.cgroups.CgroupNames), "/" for
    the root; without a resolver, the root's "/" or "cgroup:<id>"."""
    cgroup_id = scalar(cgroup_id)
    if names is not None:
        return names.name(cgroup_id)
    return "/" if cgroup_id == 1 else f"cgroup:{cgroup_id}"


def comm(raw) -> str:
    """A task comm (char[16]) from a ctypes field."""
    data = bytes(raw) if not isinstance(raw, bytes) else raw
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


def log2_hist(counts: Sequence[int]) -> Tuple[HistBucket, ...]:
    """Non-empty buckets of a bpf_log2l() histogram, as bcc prints them:
    slot s holds values from 2^(s-1) to 2^s - 1 (slot 0: the value 0)."""
    return tuple(HistBucket((1 << s) >> 1, (1 << s) - 1, int(n))
                 for s, n in enumerate(counts) if n)
