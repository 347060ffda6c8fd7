"""BPF maps by file descriptor, through libbpf's C API (ctypes), without BCC.

mfd reads its maps here whichever process compiled the programs: BCC in this
process, or the loader helper (mfd.handover) that handed the fds over.  BCC
itself is never needed to read: loading libbcc maps libLLVM and libclang
(~85 MB) into the process for its whole life.

Key and value types are ctypes built from BCC's JSON description of the C
types (``bpf_table_key_desc``), which the compiler wrote: the C in bpf/ stays
the one definition of every record.  Sizes are checked against the kernel's
own map description before the first read.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import struct
from typing import Dict, Iterator, List, Sequence, Tuple, Union

from ..errors import SourceUnavailable

# enum bpf_map_type (include/uapi/linux/bpf.h)
BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_ARRAY = 1, 2
BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY = 5, 6
BPF_MAP_TYPE_LRU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH = 9, 10
PERCPU_TYPES = {BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY,
                BPF_MAP_TYPE_LRU_PERCPU_HASH}

ENOTSUPP = 524  # the kernel's internal "operation not supported", which bpf() can leak

# The C scalar types BCC's descriptions name (x86-64 and arm64: LP64).
_SCALARS = {
    "_Bool": ctypes.c_bool, "char": ctypes.c_char, "signed char": ctypes.c_byte,
    "unsigned char": ctypes.c_ubyte, "short": ctypes.c_short,
    "unsigned short": ctypes.c_ushort, "int": ctypes.c_int, "unsigned int": ctypes.c_uint,
    "long": ctypes.c_long, "unsigned long": ctypes.c_ulong, "long long": ctypes.c_longlong,
    "unsigned long long": ctypes.c_ulonglong, "float": ctypes.c_float,
    "double": ctypes.c_double, "void *": ctypes.c_void_p,
}
_MAX_DEPTH = 16


def decode_type(desc, depth: int = 0):
    """A ctypes type from BCC's JSON description of a C type: a scalar's name,
    or [name, [[field, type], [field, type, [dims]], [field, type, bits]], kind]
    with kind "struct", "struct_packed" or "union".  Multi-dimensional arrays
    keep every dimension (BCC 0.26's own decoder drops all but the first)."""
    if depth > _MAX_DEPTH:
        raise ValueError("BPF type description nested too deeply")
    if isinstance(desc, str):
        if desc not in _SCALARS:
            raise ValueError(f"unknown C type {desc!r} in a BPF map description")
        return _SCALARS[desc]
    if not (isinstance(desc, list) and len(desc) >= 2 and isinstance(desc[1], list)):
        raise ValueError(f"unreadable BPF type description {desc!r:.80}")
    kind = desc[2] if len(desc) > 2 else "struct"
    fields, anon = [], []
    for f in desc[1]:
        if len(f) == 2:
            fields.append((f[0], decode_type(f[1], depth + 1)))
        elif len(f) == 3 and isinstance(f[2], list):
            t = decode_type(f[1], depth + 1)
            for n in reversed(f[2]):
                t = t * int(n)
            fields.append((f[0], t))
        elif len(f) == 3 and isinstance(f[2], int):
            fields.append((f[0], decode_type(f[1], depth + 1), f[2]))
        elif len(f) == 3 and f[2] in ("struct", "struct_packed", "union"):
            name = f[0] or "__anon%d" % len(anon)
            if not f[0]:
                anon.append(name)
            fields.append((name, decode_type(f, depth + 1)))
        else:
            raise ValueError(f"unreadable BPF field description {f!r:.80}")
    base = ctypes.Union if kind == "union" else ctypes.Structure
    body = {"_anonymous_": anon, "_fields_": fields}
    if kind == "struct_packed":
        body["_pack_"] = 1
    return type(str(desc[0]) or "anon", (base,), body)


# -- libbpf -------------------------------------------------------------------

_LIB = None


def libbpf():
    """libbpf (Debian libbpf1, Fedora libbpf), loaded once.  BCC needs it too
    (libbcc links it), so it is there wherever BCC is."""
    global _LIB
    if _LIB is None:
        # find_library runs ldconfig -p (a process): only when the sonames fail
        names = ("libbpf.so.1", "libbpf.so.0", lambda: ctypes.util.find_library("bpf"))
        for name in names:
            name = name() if callable(name) else name
            if not name:
                continue
            try:
                lib = ctypes.CDLL(name, use_errno=True)
                break
            except OSError:
                continue
        else:
            from ..origin import install_hint
            raise SourceUnavailable("libbpf is not installed: " +
                                    install_hint("libbpf1", "libbpf"))
        c_p, c_int, c_u32p = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_uint32)
        for fn, args in (("bpf_map_lookup_elem", [c_int, c_p, c_p]),
                         ("bpf_map_update_elem", [c_int, c_p, c_p, ctypes.c_uint64]),
                         ("bpf_map_delete_elem", [c_int, c_p]),
                         ("bpf_map_get_next_key", [c_int, c_p, c_p]),
                         ("bpf_map_lookup_and_delete_batch",
                          [c_int, c_p, c_p, c_p, c_p, c_u32p, c_p]),
                         ("bpf_obj_get_info_by_fd", [c_int, c_p, c_u32p])):
            f = getattr(lib, fn)
            f.argtypes, f.restype = args, c_int
        _LIB = lib
    return _LIB


def _err(res: int) -> int:
    """The errno of a failed libbpf call: libbpf 1.x returns -errno, 0.x -1 and errno."""
    return -res if res < -1 else ctypes.get_errno()


def possible_cpus() -> int:
    """Possible CPUs: how many values a per-CPU map's lookup returns
    (/sys/devices/system/cpu/possible, "0-3,8-11")."""
    with open("/sys/devices/system/cpu/possible") as f:
        text = f.read().strip()
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n = max(n, int(hi or lo) + 1)
    return n


def map_info(fd: int) -> Tuple[int, int, int, int]:
    """(type, id, key_size, value_size) of a BPF map, from the kernel
    (BPF_OBJ_GET_INFO_BY_FD).  Reads only the head of the UAPI struct
    bpf_map_info (u32 each, stable since 4.13); the kernel copies no more than
    the length passed."""
    buf = ctypes.create_string_buffer(24)
    size = ctypes.c_uint32(len(buf))
    res = libbpf().bpf_obj_get_info_by_fd(fd, buf, ctypes.byref(size))
    if res != 0:
        raise SourceUnavailable("cannot read a BPF map's description from the kernel: "
                                + os.strerror(_err(res)))
    return struct.unpack_from("=4I", buf.raw)


class Map:
    """One BPF map: ``Key`` and ``Leaf`` ctypes (for per-CPU maps ``sLeaf`` is
    one CPU's value and ``Leaf`` the array of all of them, as in BCC), lookups,
    updates, deletes, iteration and batch drains.  Does not own ``fd``."""

    def __init__(self, name: str, fd: int, key_desc, leaf_desc):
        self.name, self.map_fd = name, fd
        self.map_type, self.map_id, key_size, value_size = map_info(fd)
        self.Key = decode_type(key_desc)
        self.sLeaf = decode_type(leaf_desc)
        self.percpu = self.map_type in PERCPU_TYPES
        self.Leaf = self.sLeaf
        if (ctypes.sizeof(self.Key), ctypes.sizeof(self.sLeaf)) != (key_size, value_size):
            raise SourceUnavailable(
                f"map {name}: the compiler laid out key/value as {ctypes.sizeof(self.Key)}/"
                f"{ctypes.sizeof(self.sLeaf)} bytes, the kernel as {key_size}/{value_size}")
        if self.percpu:
            if value_size % 8:
                raise SourceUnavailable(f"map {name}: per-CPU value of {value_size} bytes "
                                        "is not a multiple of 8")
            self.Leaf = self.sLeaf * possible_cpus()
        self._lib = libbpf()

    def _key(self, key):
        return key if isinstance(key, self.Key) else self.Key(key)

    def lookup(self, key, leaf) -> bool:
        """Fill ``leaf`` (a Leaf) with the value at ``key``; False when there is none."""
        res = self._lib.bpf_map_lookup_elem(self.map_fd, ctypes.byref(self._key(key)),
                                            ctypes.byref(leaf))
        if res == 0:
            return True
        err = _err(res)
        if err == errno.ENOENT:
            return False
        raise OSError(err, f"reading BPF map {self.name}: {os.strerror(err)}")

    def __getitem__(self, key):
        leaf = self.Leaf()
        if not self.lookup(key, leaf):
            raise KeyError(key)
        return leaf

    def __setitem__(self, key, leaf) -> None:
        res = self._lib.bpf_map_update_elem(self.map_fd, ctypes.byref(self._key(key)),
                                            ctypes.byref(leaf), 0)
        if res != 0:
            err = _err(res)
            raise OSError(err, f"writing BPF map {self.name}: {os.strerror(err)}")

    def __delitem__(self, key) -> None:
        res = self._lib.bpf_map_delete_elem(self.map_fd, ctypes.byref(self._key(key)))
        if res != 0:
            err = _err(res)
            if err == errno.ENOENT:
                raise KeyError(key)
            raise OSError(err, f"deleting from BPF map {self.name}: {os.strerror(err)}")

    def keys(self) -> Iterator:
        """Every key, as the kernel walks them (BPF_MAP_GET_NEXT_KEY)."""
        prev, key = None, self.Key()
        while True:
            res = self._lib.bpf_map_get_next_key(
                self.map_fd, None if prev is None else ctypes.byref(prev), ctypes.byref(key))
            if res != 0:
                err = _err(res)
                if err == errno.ENOENT:
                    return
                raise OSError(err, f"walking BPF map {self.name}: {os.strerror(err)}")
            yield type(key).from_buffer_copy(key)
            prev = type(key).from_buffer_copy(key)

    def items(self) -> List[Tuple[object, object]]:
        out = []
        for k in list(self.keys()):
            leaf = self.Leaf()
            if self.lookup(k, leaf):
                out.append((k, leaf))
        return out

    def lookup_and_delete_batch(self, in_batch, out_batch, keys, values,
                                count: "ctypes.c_uint32") -> int:
        """BPF_MAP_LOOKUP_AND_DELETE_BATCH (Linux 5.6+): 0, or the errno."""
        res = self._lib.bpf_map_lookup_and_delete_batch(
            self.map_fd, in_batch, out_batch, keys, values, ctypes.byref(count), None)
        return 0 if res == 0 else _err(res)


def maps_from(described: Sequence[Dict], fds: Sequence[int]) -> Dict[str, Map]:
    """Maps from the loader's descriptions ({"name", "key", "leaf"}: the
    JSON texts BCC wrote) and their fds, in the same order."""
    out = {}
    for d, fd in zip(described, fds):
        out[d["name"]] = Map(d["name"], fd, _json(d["key"]), _json(d["leaf"]))
    return out


def _json(text: Union[str, bytes]):
    return json.loads(text) if isinstance(text, (str, bytes)) else text


