"""A small reader for the kernel's BTF, just enough to lay out structs for
bpf_probe_read_kernel().

Why our own: mfd needs a dozen member offsets, sizes and enum values from
``/sys/kernel/btf/vmlinux`` and must start in well under a second; pulling in
libbpf bindings or running ``bpftool`` for that is heavier than reading the
format, which is simple (Documentation/bpf/btf.rst, include/uapi/linux/btf.h).

Speed: the blob (~5.5 MB, ~130k type records on 6.18) is only walked once, on
the first question, and then only to find record boundaries and the ids of
named structs/unions/enums/typedefs. Answers can also be kept in a JSON cache
keyed by the SHA-1 of the blob, so a later start with the same kernel build
never walks the types at all.

Only base (vmlinux) BTF is supported; module BTF in /sys/kernel/btf/<module>
is "split" BTF whose ids continue vmlinux's and is not needed by mfd.
"""
from __future__ import annotations

import array
import hashlib
import json
import os
import struct
from typing import Dict, Iterator, List, Optional, Tuple

from ..safefs import UnsafePath, open_trusted, write_private

DEFAULT_PATH = "/sys/kernel/btf/vmlinux"

BTF_MAGIC = 0xEB9F        # stored in the blob's own byte order; tells us the endianness
_HDR = "HBBIIIII"         # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
_HDR_SIZE = 24            # struct btf_header as of BTF version 1; hdr_len may be larger

# BTF kinds, include/uapi/linux/btf.h.
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR, DATASEC = 9, 10, 11, 12, 13, 14, 15
FLOAT = 16                # Linux 5.13
DECL_TAG = 17             # Linux 5.16
TYPE_TAG = 18             # Linux 5.17
ENUM64 = 19               # Linux 6.0; ENUM's kind_flag became "signed" at the same time
_MAX_KIND = ENUM64

# Every record is struct btf_type (3 u32: name_off, info, size/type) followed by
# kind-specific data. Lengths in u32 words: a fixed part plus a part per vlen item.
_FIXED_WORDS = {INT: 1,        # encoding/offset/bits word
                ARRAY: 3,      # struct btf_array: type, index_type, nelems
                VAR: 1,        # struct btf_var: linkage
                DECL_TAG: 1}   # struct btf_decl_tag: component_idx
_PER_VLEN_WORDS = {STRUCT: 3, UNION: 3,  # struct btf_member: name_off, type, offset
                   ENUM: 2,              # struct btf_enum: name_off, val
                   FUNC_PROTO: 2,        # struct btf_param: name_off, type
                   DATASEC: 3,           # struct btf_var_secinfo: type, offset, size
                   ENUM64: 3}            # struct btf_enum64: name_off, val_lo32, val_hi32
# Kinds whose names we index; everything else is reached by type id only.
_NAMED = (INT, STRUCT, UNION, ENUM, TYPEDEF, FLOAT, ENUM64)
# For the scan loop, one tuple per 5-bit kind: (header+fixed words, words per
# vlen item, index the name?). Kind 0 (BTF_KIND_UNKN) and kinds newer than we
# know get a step past any section, which ends the loop and is reported then.
_UNKNOWN_STEP = 1 << 40
_SCAN_TABLE = tuple(
    (3 + _FIXED_WORDS.get(k, 0), _PER_VLEN_WORDS.get(k, 0), k in _NAMED)
    if 1 <= k <= _MAX_KIND else (_UNKNOWN_STEP, 0, False)
    for k in range(32))

# Kinds that only qualify or rename another type: skipped when resolving.
_MODIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)

_CACHE_FORMAT = 1          # bump when the meaning of a cached answer changes
_CACHE_MAX_BYTES = 1 << 20  # a cache file bigger than this is not ours
_MAX_DEPTH = 64            # bound on typedef/modifier chains and anonymous nesting


class BTFError(Exception):
    """Any failure to read BTF or to answer a question from it (one-line message)."""


class _Missing(BTFError):
    """The BTF is fine but has no such struct/member/enum: a cacheable answer."""


class BTF:
    """Parsed vmlinux BTF; answers layout questions by name.

    Construct with :meth:`load` (a file) or :meth:`from_bytes` (a blob).
    ``cache_state`` tells what the answer cache did: "off", "hit", "miss"
    (no file yet), "corrupt" (ignored, will be rewritten) or "unwritable".
    """

    def __init__(self, data: bytes, source: str = "<bytes>") -> None:
        self.source = source
        self._data = data
        self._types, self._strs, self._endian = _split_blob(data, source)
        self._w: Optional[array.array] = None   # type section as u32 words
        self._offs: List[int] = []               # type id -> word index of its record
        self._by_name_off: Dict[int, List[int]] = {}
        self._by_name: Optional[Dict[bytes, List[int]]] = None
        self._enum_ids: List[int] = []
        self._ptr_size: Optional[int] = None
        self._answers: Dict[str, dict] = {}
        self._cache_path: Optional[str] = None
        self._cache_key: Optional[str] = None
        self.cache_state = "off"
        self.cache_problem: Optional[str] = None   # why the cache is not used, once

    # ----------------------------------------------------------------- loading

    @classmethod
    def load(cls, path: str = DEFAULT_PATH, cache_dir: Optional[str] = None) -> "BTF":
        """Read a raw BTF file; with ``cache_dir``, reuse/keep answers there.

        The whole file is read even on a cache hit: its SHA-1 is the cache key
        (a few ms for 5.5 MB), which is the only safe way to tell two kernel
        builds with identical header and size apart.
        """
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            hint = ""
            if path.startswith("/sys/kernel/btf/"):
                hint = " (kernel built without CONFIG_DEBUG_INFO_BTF)"
            raise BTFError(f"no BTF at {path}{hint}") from None
        except OSError as e:
            raise BTFError(f"cannot read BTF at {path}: {e.strerror or e}") from None
        btf = cls(data, source=path)
        if cache_dir is not None:
            btf._open_cache(cache_dir)
        return btf

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<bytes>") -> "BTF":
        """Parse a BTF blob already in memory (no cache)."""
        return cls(bytes(data), source=source)

    # ------------------------------------------------------------- public API

    def member_offset(self, struct: str, member: str) -> int:
        """Byte offset of ``member`` (dotted path allowed) inside ``struct``.

        Members of anonymous structs/unions are found as C finds them, with
        their offsets added. A bitfield yields the byte holding its first bit.
        """
        return self._ask("member_offset", (struct, member),
                         lambda: self._member(struct, member)[0])

    def has_member(self, struct: str, member: str) -> bool:
        """False when the member (or the struct itself) is absent: a probe for
        layouts that differ between kernel versions."""
        try:
            self.member_offset(struct, member)
        except _Missing:
            return False
        return True

    def sizeof(self, name: str) -> int:
        """Size in bytes of a struct/union/typedef/int/enum by name.

        ``name`` may carry a C tag ("struct zone", "union x", "enum y") to pick
        the kind; a bare name prefers struct/union, then typedef, int, enum.
        """
        return self._ask("sizeof", (name,), lambda: self._size(self._named_type(name)))

    def member_size(self, struct: str, member: str) -> int:
        """Size in bytes of the member's type (arrays: all elements)."""
        return self._ask("member_size", (struct, member),
                         lambda: self._size(self._member(struct, member)[1]))

    def array_len(self, struct: str, member: str) -> int:
        """Number of elements of an array member (outer dimension)."""
        def compute() -> int:
            tid = self._resolve(self._member(struct, member)[1])
            kind, _kf, _vl, _nm, _st, o = self._rec(tid)
            if kind != ARRAY:
                raise _Missing(f"{struct}.{member} is not an array")
            return self._w[o + 5]
        return self._ask("array_len", (struct, member), compute)

    def enum_value(self, enum: Optional[str], name: str) -> int:
        """Value of enumerator ``name``; with ``enum`` empty/None, search every
        enum (C enumerators share one namespace, anonymous enums included)."""
        if enum:
            def compute() -> int:
                values = self.enum_values(enum)
                if name not in values:
                    raise _Missing(f"enum {_bare(enum)} has no enumerator {name}")
                return values[name]
        else:
            def compute() -> int:
                return self._find_enumerator(name)
        return self._ask("enum_value", (enum or "", name), compute)

    def enum_values(self, enum: str) -> Dict[str, int]:
        """All enumerators of a named enum, in declaration order (ENUM and ENUM64)."""
        return dict(self._ask("enum_values", (enum,),
                              lambda: dict(self._enumerators(self._named_enum(enum)))))

    # ------------------------------------------------------------ the scan

    def _scan(self) -> None:
        """One pass over the type section: record offsets and named ids.

        Decodes only the info word of each record (kind in bits 24-28, vlen in
        bits 0-15) to skip its trailing data; names are not decoded here.
        """
        if self._w is not None:
            return
        w = array.array("I")
        if w.itemsize != 4:            # 'I' is 4 bytes on every Linux ABI; be sure
            w = array.array("L")
            if w.itemsize != 4:
                raise BTFError("no 32-bit array type on this platform")
        w.frombytes(self._types)
        if self._endian != _native_endian():
            w.byteswap()
        n = len(w)
        offs = [0]                     # id 0 is void and has no record
        add = offs.append
        by_off: Dict[int, List[int]] = {}
        get = by_off.get
        table = _SCAN_TABLE
        i = 0
        try:
            while i < n:
                add(i)
                info = w[i + 1]
                step, per, named = table[info >> 24 & 0x1F]
                if named:
                    no = w[i]
                    ids = get(no)
                    if ids is None:
                        by_off[no] = [len(offs) - 1]
                    else:
                        ids.append(len(offs) - 1)
                if per:
                    i += step + per * (info & 0xFFFF)
                else:
                    i += step
        except IndexError:             # header of the last record cut short
            i = n + 1
        if i != n:
            tid = len(offs) - 1
            if offs[-1] + 1 < n:
                kind = w[offs[-1] + 1] >> 24 & 0x1F
                if kind == 0 or kind > _MAX_KIND:
                    raise BTFError(f"corrupt BTF in {self.source}: type #{tid} has unknown kind {kind}")
            raise BTFError(f"corrupt BTF in {self.source}: type #{tid} runs past the end of the type section")
        enums = [tid for ids in by_off.values() for tid in ids
                 if w[offs[tid] + 1] >> 24 & 0x1F in (ENUM, ENUM64)]
        enums.sort()
        self._w, self._offs, self._by_name_off, self._enum_ids = w, offs, by_off, enums

    def _rec(self, tid: int) -> Tuple[int, bool, int, int, int, int]:
        """(kind, kind_flag, vlen, name_off, size_or_type, word offset) of a type id."""
        self._scan()
        if not 0 < tid < len(self._offs):
            raise BTFError(f"corrupt BTF in {self.source}: reference to type #{tid} of {len(self._offs) - 1}")
        o = self._offs[tid]
        w = self._w
        info = w[o + 1]
        return (info >> 24) & 0x1F, bool(info >> 31), info & 0xFFFF, w[o], w[o + 2], o

    def _name(self, off: int) -> str:
        s = self._strs
        if off >= len(s):
            raise BTFError(f"corrupt BTF in {self.source}: name offset {off} past the string section")
        return s[off:s.index(b"\0", off)].decode("utf-8", "replace")

    def _ids_named(self, name: str) -> List[int]:
        """Ids of indexed (named-kind) types called ``name``; builds the index once."""
        if self._by_name is None:
            self._scan()
            s = self._strs
            if any(off >= len(s) for off in self._by_name_off):
                raise BTFError(f"corrupt BTF in {self.source}: name offset past the string section")
            self._by_name = {s[off:s.index(b"\0", off)]: ids for off, ids in self._by_name_off.items()}
        return self._by_name.get(name.encode("utf-8"), [])

    # ----------------------------------------------------------- type helpers

    def _resolve(self, tid: int) -> int:
        """Skip typedef/const/volatile/restrict/type_tag down to the real type."""
        for _ in range(_MAX_DEPTH):
            if tid == 0:
                return 0
            kind, _kf, _vl, _nm, target, _o = self._rec(tid)
            if kind not in _MODIFIERS:
                return tid
            tid = target
        raise BTFError(f"corrupt BTF in {self.source}: typedef/modifier loop at type #{tid}")

    def _size(self, tid: int, depth: int = 0) -> int:
        if depth > _MAX_DEPTH:
            raise BTFError(f"corrupt BTF in {self.source}: array nesting too deep at type #{tid}")
        tid = self._resolve(tid)
        if tid == 0:
            raise _Missing("void has no size")
        kind, _kf, _vl, name_off, size, o = self._rec(tid)
        if kind in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT):
            return size
        if kind == PTR:
            return self._pointer_size()
        if kind == ARRAY:
            return self._w[o + 5] * self._size(self._w[o + 3], depth + 1)
        what = {FWD: "a forward declaration", FUNC: "a function",
                FUNC_PROTO: "a function type"}.get(kind, f"BTF kind {kind}")
        raise _Missing(f"type {self._name(name_off) or '#%d' % tid} is {what} and has no size")

    def _pointer_size(self) -> int:
        """Pointer size of the BTF's target: that of C 'long' (LP64 and ILP32
        alike), falling back to 8."""
        if self._ptr_size is None:
            self._ptr_size = 8
            for name in ("long int", "long unsigned int"):
                for tid in self._ids_named(name):
                    kind, _kf, _vl, _nm, size, _o = self._rec(tid)
                    if kind == INT and size in (4, 8):
                        self._ptr_size = size
                        return size
        return self._ptr_size

    def _candidates(self, name: str, kinds: Tuple[int, ...]) -> List[int]:
        """Ids named ``name`` of the given kinds, complete definitions first.

        vmlinux can hold several records with one name (a struct defined in
        two translation units, an empty placeholder); a STRUCT/UNION/ENUM with
        vlen 0 and size 0 is incomplete and sorts last.
        """
        out = []
        for tid in self._ids_named(name):
            kind, _kf, vlen, _nm, size, _o = self._rec(tid)
            if kind in kinds:
                incomplete = kind in (STRUCT, UNION, ENUM, ENUM64) and vlen == 0 and size == 0
                out.append((incomplete, tid))
        out.sort()
        return [tid for _inc, tid in out]

    def _named_type(self, name: str) -> int:
        tag, bare = _split_tag(name)
        if tag == "struct":
            order: Tuple[Tuple[int, ...], ...] = ((STRUCT,),)
        elif tag == "union":
            order = ((UNION,),)
        elif tag == "enum":
            order = ((ENUM, ENUM64),)
        else:
            order = ((STRUCT, UNION), (TYPEDEF,), (INT, FLOAT), (ENUM, ENUM64))
        for kinds in order:
            ids = self._candidates(bare, kinds)
            if ids:
                return ids[0]
        raise _Missing(f"no type {name} in BTF")

    def _composites(self, name: str) -> List[int]:
        """Struct/union ids for ``name`` (a tag, or a typedef of one)."""
        tag, bare = _split_tag(name)
        kinds = {"struct": (STRUCT,), "union": (UNION,)}.get(tag, (STRUCT, UNION))
        ids = self._of_kinds(bare, kinds, typedefs=tag is None)
        if not ids:
            raise _Missing(f"no struct or union {bare} in BTF")
        return ids

    def _of_kinds(self, bare: str, kinds: Tuple[int, ...], typedefs: bool) -> List[int]:
        """Ids of the types named ``bare`` of these kinds; failing that, and
        with ``typedefs``, the types of those kinds that typedefs of that name
        stand for (``typedef struct {...} name``)."""
        ids = self._candidates(bare, kinds)
        if not ids and typedefs:
            for tid in self._candidates(bare, (TYPEDEF,)):
                real = self._resolve(tid)
                if real and self._rec(real)[0] in kinds:
                    ids.append(real)
        return ids

    def _members(self, tid: int) -> Iterator[Tuple[int, int, int]]:
        """(name_off, type id, bit offset) of each member of a struct/union."""
        _kind, kflag, vlen, _nm, _sz, o = self._rec(tid)
        w = self._w
        for j in range(o + 3, o + 3 + 3 * vlen, 3):
            off = w[j + 2]
            if kflag:                 # offset = bitfield_size << 24 | bit_offset
                off &= 0xFFFFFF
            yield w[j], w[j + 1], off

    def _find_direct(self, tid: int, name: bytes, depth: int = 0) -> Optional[Tuple[int, int]]:
        """(bit offset, type id) of member ``name``, looking through anonymous
        struct/union members as C does; None if absent."""
        if depth > _MAX_DEPTH:
            raise BTFError(f"corrupt BTF in {self.source}: anonymous members nested too deep")
        s = self._strs
        target = name + b"\0"
        anon = []
        for name_off, mtype, bit_off in self._members(tid):
            if name_off == 0:
                anon.append((mtype, bit_off))
            elif s.startswith(target, name_off):
                return bit_off, mtype
        for mtype, bit_off in anon:
            inner = self._resolve(mtype)
            if inner and self._rec(inner)[0] in (STRUCT, UNION):
                hit = self._find_direct(inner, name, depth + 1)
                if hit is not None:
                    return bit_off + hit[0], hit[1]
        return None

    def _member(self, struct: str, member: str) -> Tuple[int, int]:
        """(byte offset, type id) of a dotted member path inside ``struct``."""
        parts = member.split(".")
        if not all(parts):
            raise _Missing(f"bad member path {member!r}")
        err: Optional[str] = None
        for top in self._composites(struct):
            tid, bits, mtype = top, 0, 0
            where = self._name(self._rec(top)[3]) or _bare(struct)
            for k, part in enumerate(parts):
                if k:
                    tid = self._resolve(mtype)
                    if not tid or self._rec(tid)[0] not in (STRUCT, UNION):
                        err = (f"{_bare(struct)}.{'.'.join(parts[:k])} is not a struct or union"
                               " (pointers must be followed with a separate read)")
                        break
                    where = self._name(self._rec(tid)[3]) or "(anon)"
                hit = self._find_direct(tid, part.encode("utf-8"))
                if hit is None:
                    kw = "union" if self._rec(tid)[0] == UNION else "struct"
                    err = f"{kw} {where} has no member {part}"
                    break
                bits += hit[0]
                mtype = hit[1]
            else:
                return bits // 8, mtype
        raise _Missing(err or f"no struct or union {struct} in BTF")

    def _named_enum(self, enum: str) -> int:
        tag, bare = _split_tag(enum)
        if tag not in (None, "enum"):
            raise _Missing(f"no enum {enum} in BTF")
        ids = self._of_kinds(bare, (ENUM, ENUM64), typedefs=tag is None)
        if not ids:
            raise _Missing(f"no enum {bare} in BTF")
        return ids[0]

    def _enumerators(self, tid: int) -> Iterator[Tuple[str, int]]:
        """(name, value) of each enumerator. Since Linux 6.0 the kind_flag says
        signed (1) or unsigned (0); older pahole left it 0 for all enums."""
        kind, kflag, vlen, _nm, _sz, o = self._rec(tid)
        w = self._w
        if kind == ENUM:
            for j in range(o + 3, o + 3 + 2 * vlen, 2):
                v = w[j + 1]
                if kflag and v & 0x80000000:
                    v -= 1 << 32
                yield self._name(w[j]), v
        else:
            for j in range(o + 3, o + 3 + 3 * vlen, 3):
                v = w[j + 2] << 32 | w[j + 1]
                if kflag and v & (1 << 63):
                    v -= 1 << 64
                yield self._name(w[j]), v

    def _find_enumerator(self, name: str) -> int:
        """First enum (lowest id) declaring ``name``. Two translation units
        may each have a private enum with the same enumerator; then the
        caller should name the enum."""
        self._scan()
        s = self._strs
        target = name.encode("utf-8") + b"\0"
        w = self._w
        for tid in self._enum_ids:
            kind, _kf, vlen, _nm, _sz, o = self._rec(tid)
            step = 2 if kind == ENUM else 3
            for j in range(o + 3, o + 3 + step * vlen, step):
                if s.startswith(target, w[j]):
                    return dict(self._enumerators(tid))[name]
        raise _Missing(f"no enumerator {name} in BTF")

    # ------------------------------------------------------------------ cache

    def _ask(self, what: str, args: Tuple[str, ...], compute):
        """Answer from the cache, else compute and remember (errors included:
        an absent member stays absent for this exact blob)."""
        key = "|".join((what,) + args)
        hit = self._answers.get(key)
        if hit is not None:
            if "error" in hit and isinstance(hit["error"], str):
                raise _Missing(hit["error"])
            if "value" in hit and _valid_answer(what, hit["value"]):
                return hit["value"]
        try:
            value = compute()
        except _Missing as e:
            self._remember(key, {"error": str(e)})
            raise
        self._remember(key, {"value": value})
        return value

    def _open_cache(self, cache_dir: str) -> None:
        digest = hashlib.sha1(self._data, usedforsecurity=False).hexdigest()
        self._cache_key = f"{digest}-{len(self._data)}"
        self._cache_path = os.path.join(cache_dir, f"btf-{digest}.json")
        try:
            raw = open_trusted(self._cache_path, _CACHE_MAX_BYTES)
        except FileNotFoundError:
            self.cache_state = "miss"
            return
        except UnsafePath as e:
            # Not ours alone (umask 000, a planted file): answers from it could steer
            # what root compiles and reads.  Go on without a cache, and say so once.
            self._cache_path = None
            self.cache_state = "untrusted"
            self.cache_problem = f"not using the BTF cache: {e}"
            return
        try:
            doc = json.loads(raw.decode("utf-8")) if len(raw) <= _CACHE_MAX_BYTES else None
        except ValueError:
            doc = None
        if (isinstance(doc, dict) and doc.get("format") == _CACHE_FORMAT
                and doc.get("key") == self._cache_key and isinstance(doc.get("answers"), dict)):
            self._answers = {k: v for k, v in doc["answers"].items() if isinstance(v, dict)}
            self.cache_state = "hit"
        else:
            self.cache_state = "corrupt"

    def _remember(self, key: str, entry: dict) -> None:
        self._answers[key] = entry
        if self._cache_path is None:
            return
        doc = {"format": _CACHE_FORMAT, "key": self._cache_key, "source": self.source,
               "answers": self._answers}
        if not _write_atomic(self._cache_path, json.dumps(doc, indent=1)):
            self._cache_path = None     # stop trying; the cache is only an optimisation
            self.cache_state = "unwritable"


# ------------------------------------------------------------------- helpers

def _native_endian() -> str:
    return "<" if array.array("H", [1]).tobytes() == b"\x01\x00" else ">"


def _split_blob(data: bytes, source: str) -> Tuple[bytes, bytes, str]:
    """Validate the header; return (type section, string section, '<' or '>')."""
    if len(data) < _HDR_SIZE:
        raise BTFError(f"not BTF: {source} is {len(data)} bytes, too short for a BTF header")
    for endian in ("<", ">"):
        if struct.unpack_from(endian + "H", data)[0] == BTF_MAGIC:
            break
    else:
        raise BTFError(f"not BTF: {source} has magic 0x{data[0]:02x}{data[1]:02x}, expected 0xeb9f")
    _m, version, _fl, hdr_len, type_off, type_len, str_off, str_len = \
        struct.unpack_from(endian + _HDR, data)
    if version != 1:
        raise BTFError(f"unsupported BTF version {version} in {source}")
    body = len(data) - hdr_len
    if hdr_len < _HDR_SIZE or body < 0:
        raise BTFError(f"corrupt BTF in {source}: header length {hdr_len}")
    if type_off % 4 or type_len % 4:
        raise BTFError(f"corrupt BTF in {source}: type section not 4-byte aligned")
    if type_off + type_len > body or str_off + str_len > body:
        raise BTFError(f"truncated BTF in {source}: sections need "
                       f"{hdr_len + max(type_off + type_len, str_off + str_len)} bytes, file has {len(data)}")
    strs = data[hdr_len + str_off:hdr_len + str_off + str_len]
    # The kernel's own check: the string section starts and ends with NUL.
    if not strs or strs[0] != 0 or strs[-1] != 0:
        raise BTFError(f"corrupt BTF in {source}: bad string section")
    return data[hdr_len + type_off:hdr_len + type_off + type_len], strs, endian


def _split_tag(name: str) -> Tuple[Optional[str], str]:
    """'struct zone' -> ('struct', 'zone'); 'zone' -> (None, 'zone')."""
    head, _sp, rest = name.strip().partition(" ")
    if head in ("struct", "union", "enum") and rest.strip():
        return head, rest.strip()
    return None, name.strip()


def _bare(name: str) -> str:
    return _split_tag(name)[1]


def _valid_answer(what: str, value) -> bool:
    if what == "enum_values":
        return isinstance(value, dict) and all(
            isinstance(k, str) and type(v) is int for k, v in value.items())
    return type(value) is int


def _write_atomic(path: str, text: str) -> bool:
    """Write the cache file (0644 in 0755 directories, whatever the umask)
    through a new file renamed into place, so readers never see half a file."""
    try:
        write_private(path, text.encode("utf-8"))
        return True
    except (OSError, UnsafePath):
        return False
