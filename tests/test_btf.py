"""Tests for mfd.kernel.btf: a hand-built BTF blob for the format corner cases, the
running kernel's BTF checked against bpftool, and the answer cache."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess

import pytest

import mfd.kernel.btf
from mfd.kernel.btf import BTF, BTFError

VMLINUX = "/sys/kernel/btf/vmlinux"


# --------------------------------------------------------------------------
# A tiny BTF writer (include/uapi/linux/btf.h layout), enough for the tests.

class Blob:
    """Builds a raw BTF blob; each add method returns the new type id."""

    def __init__(self) -> None:
        self.strs = bytearray(b"\0")
        self.str_off = {"": 0}
        self.recs: list = []

    def s(self, name: str) -> int:
        if name not in self.str_off:
            self.str_off[name] = len(self.strs)
            self.strs += name.encode() + b"\0"
        return self.str_off[name]

    def add(self, kind, name="", vlen=0, kflag=0, size_type=0, extra=()) -> int:
        info = (kflag << 31) | (kind << 24) | vlen
        self.recs.append([self.s(name), info, size_type] + [x & 0xFFFFFFFF for x in extra])
        return len(self.recs)

    def int_(self, name, size, signed=True):
        return self.add(1, name, size_type=size, extra=[((1 if signed else 0) << 24) | size * 8])

    def ptr(self, t):
        return self.add(2, size_type=t)

    def array(self, elem, n, index_type=1):
        return self.add(3, extra=[elem, index_type, n])

    def struct(self, name, size, members, union=False, kflag=False):
        extra = []
        for m in members:
            mname, mtype, bit_off = m[:3]
            bits = m[3] if len(m) > 3 else 0
            extra += [self.s(mname), mtype, (bits << 24 | bit_off) if kflag else bit_off]
        return self.add(5 if union else 4, name, len(members), int(kflag), size, extra)

    def enum(self, name, values, signed=False, size=4):
        extra = []
        for n, v in values:
            extra += [self.s(n), v]
        return self.add(6, name, len(values), int(signed), size, extra)

    def enum64(self, name, values, signed=False, size=8):
        extra = []
        for n, v in values:
            v &= (1 << 64) - 1
            extra += [self.s(n), v, v >> 32]
        return self.add(19, name, len(values), int(signed), size, extra)

    def fwd(self, name, union=False):
        return self.add(7, name, kflag=int(union))

    def typedef(self, name, t):
        return self.add(8, name, size_type=t)

    def modifier(self, kind, t):          # 9 volatile, 10 const, 11 restrict
        return self.add(kind, size_type=t)

    def build(self, endian="<", magic=0xEB9F, version=1) -> bytes:
        words = [w for rec in self.recs for w in rec]
        types = struct.pack(f"{endian}{len(words)}I", *words)
        hdr = struct.pack(endian + "HBBIIIII", magic, version, 0, 24,
                          0, len(types), len(types), len(self.strs))
        return hdr + types + bytes(self.strs)


def build_kernel(long_size=8):
    """The test kernel. Every BTF kind appears, so a wrong record length for
    any kind shifts the ids after it and breaks the lookups."""
    b = Blob()
    t_int = b.int_("int", 4)
    t_long = b.int_("long int", long_size)
    t_ulong = b.int_("long unsigned int", long_size, signed=False)
    t_char = b.int_("char", 1, signed=False)
    fwd_zone = b.fwd("zone")                          # forward declaration first
    b.struct("zone", 0, [])                           # and an empty duplicate
    # Fillers of the kinds mfd never asks about.
    proto = b.add(13, vlen=2, size_type=t_int, extra=[b.s("a"), t_int, b.s("b"), t_long])
    func = b.add(12, "some_func", size_type=proto)
    var = b.add(14, "some_var", size_type=t_int, extra=[1])
    b.add(15, ".data", vlen=1, size_type=4, extra=[var, 0, 4])      # DATASEC
    b.add(16, "double", size_type=8)                                # FLOAT
    b.add(17, "a_tag", size_type=func, extra=[0xFFFFFFFF])          # DECL_TAG
    b.add(18, "user", size_type=t_int)                              # TYPE_TAG
    b.modifier(11, b.ptr(t_int))                                    # RESTRICT
    b.modifier(9, t_int)                                            # VOLATILE
    b.enum("", [("ANON_A", 42)])                                    # anonymous enum

    free_area = b.struct("free_area", 24, [("free_list", b.array(t_ulong, 2), 0),
                                           ("nr_free", t_ulong, 128)])
    anon_s = b.struct("", 16, [("c", t_long, 0), ("d", t_long, 64)])
    anon_u = b.struct("", 16, [("b", t_int, 0), ("", anon_s, 0)], union=True)
    atomic = b.typedef("atomic_long_t", b.struct("", 8, [("counter", t_long, 0)]))
    zone = b.struct("zone", 352, [
        ("a", t_int, 0),
        ("", anon_u, 64),                                           # union { b; struct { c; d; }; }
        ("e", b.array(t_long, 4), 192),
        ("ce", b.modifier(10, t_long), 448),                        # const long
        ("managed_pages", atomic, 512),
        ("free_area", b.array(free_area, 11), 576),
        ("next", b.ptr(fwd_zone), 2688),
        ("name2", b.array(b.array(t_char, 3), 2), 2752),            # char [2][3]
    ])
    b.struct("bits", 100008, [("x", t_int, 0, 3), ("y", t_int, 3, 5), ("z", t_int, 32),
                              ("far", t_int, 800000)], kflag=True)
    b.struct("wide", (1 << 22) + 8, [("w", t_long, 1 << 25)])      # no kind_flag: plain bit offset
    pglist = b.struct("pglist_data", 3 * 352 + 8,
                      [("node_zones", b.array(zone, 3), 0), ("nr_zones", t_int, 3 * 352 * 8)])
    pg_data_t = b.typedef("pg_data_t", pglist)
    b.fwd("pglist_data")
    lruvec = b.struct("lruvec", 16, [("x", t_long, 0), ("pgdat", b.ptr(pg_data_t), 64)])
    b.struct("mem_cgroup_per_node", 104, [("pad", b.array(t_long, 9), 0),
                                          ("lruvec", lruvec, 576),
                                          ("cnt", atomic, 704)])
    zt = b.enum("zone_type", [("ZONE_DMA", 0), ("ZONE_NORMAL", 1), ("__MAX_NR_ZONES", 2)])
    b.typedef("zone_type_t", zt)
    b.enum("sgn", [("NEG", -1), ("POS", 7)], signed=True)
    b.enum("uns", [("ALL_ONES", 0xFFFFFFFF)])
    b.enum64("big", [("BIG", 1 << 40), ("HUGE", (1 << 64) - 1)])
    b.enum64("big_signed", [("NEG64", -(1 << 40))], signed=True)
    return b


@pytest.fixture
def kernel():
    return BTF.from_bytes(build_kernel().build())


# --------------------------------------------------------------- unit tests

def test_nested_anonymous_members(kernel):
    assert kernel.member_offset("zone", "a") == 0
    assert kernel.member_offset("zone", "b") == 8
    assert kernel.member_offset("zone", "c") == 8
    assert kernel.member_offset("zone", "d") == 16
    assert kernel.has_member("zone", "d")
    assert kernel.member_size("zone", "d") == 8


def test_bitfield_offsets_with_kind_flag(kernel):
    assert kernel.member_offset("bits", "x") == 0
    assert kernel.member_offset("bits", "y") == 0
    assert kernel.member_offset("bits", "z") == 4
    assert kernel.member_offset("bits", "far") == 100000


def test_plain_offsets_use_all_32_bits(kernel):
    assert kernel.member_offset("wide", "w") == 1 << 22


def test_typedef_to_struct(kernel):
    size = 3 * 352 + 8
    assert kernel.sizeof("pglist_data") == size
    assert kernel.sizeof("struct pglist_data") == size
    assert kernel.sizeof("pg_data_t") == size
    assert kernel.member_offset("pg_data_t", "nr_zones") == 3 * 352
    assert kernel.member_offset("pglist_data", "nr_zones") == 3 * 352


def test_arrays(kernel):
    assert kernel.array_len("zone", "e") == 4
    assert kernel.member_size("zone", "e") == 32
    assert kernel.array_len("zone", "free_area") == 11
    assert kernel.member_size("zone", "free_area") == 11 * 24
    assert kernel.member_offset("zone", "free_area") == 72
    assert kernel.array_len("pglist_data", "node_zones") == 3
    assert kernel.array_len("zone", "name2") == 2
    assert kernel.member_size("zone", "name2") == 6
    with pytest.raises(BTFError, match="zone.a is not an array"):
        kernel.array_len("zone", "a")


def test_sizes_through_modifiers(kernel):
    assert kernel.member_size("zone", "ce") == 8            # const long
    assert kernel.member_size("zone", "managed_pages") == 8  # typedef of anon struct
    assert kernel.member_size("zone", "next") == 8          # pointer to a FWD
    assert kernel.sizeof("int") == 4
    assert kernel.sizeof("atomic_long_t") == 8
    assert kernel.sizeof("enum zone_type") == 4
    assert kernel.sizeof("free_area") == 24


def test_pointer_size_follows_long():
    btf = BTF.from_bytes(build_kernel(long_size=4).build())
    assert btf.member_size("zone", "next") == 4


def test_forward_declaration_and_empty_duplicate_are_skipped(kernel):
    assert kernel.sizeof("zone") == 352
    assert kernel.sizeof("struct zone") == 352
    assert kernel.member_offset("struct zone", "managed_pages") == 64


def test_dotted_paths(kernel):
    assert kernel.member_offset("mem_cgroup_per_node", "lruvec") == 72
    assert kernel.member_offset("mem_cgroup_per_node", "lruvec.pgdat") == 80
    assert kernel.member_offset("mem_cgroup_per_node", "cnt.counter") == 88
    assert kernel.member_size("mem_cgroup_per_node", "lruvec.pgdat") == 8
    with pytest.raises(BTFError, match=r"lruvec.pgdat is not a struct or union"):
        kernel.member_offset("mem_cgroup_per_node", "lruvec.pgdat.nr_zones")


def test_enums(kernel):
    assert kernel.enum_values("zone_type") == {"ZONE_DMA": 0, "ZONE_NORMAL": 1, "__MAX_NR_ZONES": 2}
    assert list(kernel.enum_values("zone_type")) == ["ZONE_DMA", "ZONE_NORMAL", "__MAX_NR_ZONES"]
    assert kernel.enum_values("enum zone_type") == kernel.enum_values("zone_type_t")
    assert kernel.enum_value("zone_type", "__MAX_NR_ZONES") == 2
    assert kernel.enum_value("sgn", "NEG") == -1
    assert kernel.enum_value("uns", "ALL_ONES") == 0xFFFFFFFF
    assert kernel.enum_value(None, "ANON_A") == 42
    assert kernel.enum_value("", "POS") == 7


def test_enum64(kernel):
    assert kernel.enum_values("big") == {"BIG": 1 << 40, "HUGE": (1 << 64) - 1}
    assert kernel.enum_value("big_signed", "NEG64") == -(1 << 40)
    assert kernel.enum_value(None, "HUGE") == (1 << 64) - 1
    assert kernel.sizeof("big") == 8


def test_returned_dict_is_a_copy(kernel):
    kernel.enum_values("zone_type")["ZONE_DMA"] = 99
    assert kernel.enum_value("zone_type", "ZONE_DMA") == 0


def test_missing_things(kernel):
    with pytest.raises(BTFError) as e:
        kernel.member_offset("zone", "nope")
    assert str(e.value) == "struct zone has no member nope"
    with pytest.raises(BTFError, match="^struct lruvec has no member nope$"):
        kernel.member_offset("mem_cgroup_per_node", "lruvec.nope")
    with pytest.raises(BTFError, match="^no struct or union nosuch in BTF$"):
        kernel.member_offset("nosuch", "a")
    with pytest.raises(BTFError, match="^no type nosuch in BTF$"):
        kernel.sizeof("nosuch")
    with pytest.raises(BTFError, match="^enum zone_type has no enumerator NOPE$"):
        kernel.enum_value("zone_type", "NOPE")
    with pytest.raises(BTFError, match="^no enumerator NOPE in BTF$"):
        kernel.enum_value(None, "NOPE")
    with pytest.raises(BTFError, match="^no enum nosuch in BTF$"):
        kernel.enum_values("nosuch")
    assert not kernel.has_member("zone", "nope")
    assert not kernel.has_member("nosuch", "a")


def test_big_endian_blob_reads_the_same():
    be = BTF.from_bytes(build_kernel().build(endian=">"))
    assert be.member_offset("zone", "d") == 16
    assert be.member_offset("bits", "far") == 100000
    assert be.array_len("zone", "free_area") == 11
    assert be.enum_value("sgn", "NEG") == -1
    assert be.enum_value("big", "BIG") == 1 << 40


def _load_all(data):
    """Parse and ask enough questions to walk every record."""
    btf = BTF.from_bytes(data)
    btf.sizeof("zone")
    btf.enum_value(None, "NEG64")
    return btf


def test_truncated_blob_raises():
    data = build_kernel().build()
    for cut in (0, 3, 23, 24, 100, len(data) // 2, len(data) - 1):
        with pytest.raises(BTFError):
            _load_all(data[:cut])


def test_corrupt_records_raise():
    b = build_kernel()
    b.recs[-1][1] = (b.recs[-1][1] & ~0xFFFF) | 500          # vlen far past the end
    with pytest.raises(BTFError, match="runs past the end"):
        _load_all(b.build())
    b = build_kernel()
    b.recs[3][1] = 25 << 24                                  # a kind from the future
    with pytest.raises(BTFError, match="unknown kind 25"):
        _load_all(b.build())
    b = build_kernel()
    b.add(8, "loop_t", size_type=len(b.recs) + 1)            # typedef of itself
    with pytest.raises(BTFError, match="loop"):
        BTF.from_bytes(b.build()).sizeof("loop_t")
    b = build_kernel()
    b.add(8, "dangling_t", size_type=10 ** 6)                # reference past the last id
    with pytest.raises(BTFError, match="reference to type"):
        BTF.from_bytes(b.build()).sizeof("dangling_t")
    data = bytearray(build_kernel().build())
    data[-1] = ord("x")                                      # string section not NUL-terminated
    with pytest.raises(BTFError, match="string section"):
        BTF.from_bytes(bytes(data))


def test_wrong_magic_and_version():
    with pytest.raises(BTFError, match="^not BTF: .*expected 0xeb9f$"):
        BTF.from_bytes(build_kernel().build(magic=0x7F45))
    with pytest.raises(BTFError, match="unsupported BTF version 2"):
        BTF.from_bytes(build_kernel().build(version=2))


def test_missing_file(tmp_path):
    path = str(tmp_path / "vmlinux")
    with pytest.raises(BTFError) as e:
        BTF.load(path)
    assert str(e.value) == f"no BTF at {path}"
    with pytest.raises(BTFError) as e:
        BTF.load("/sys/kernel/btf/mfd-test-no-such-file")
    msg = str(e.value)
    assert "\n" not in msg and "CONFIG_DEBUG_INFO_BTF" in msg
    with pytest.raises(BTFError, match="^cannot read BTF at"):
        BTF.load(str(tmp_path))                              # a directory


def test_load_from_file(tmp_path):
    path = tmp_path / "vmlinux"
    path.write_bytes(build_kernel().build())
    btf = BTF.load(str(path))
    assert btf.cache_state == "off"
    assert btf.member_offset("zone", "free_area") == 72


# ---------------------------------------------------------------- the cache

QUESTIONS = [
    ("member_offset", ("zone", "d")),
    ("member_offset", ("mem_cgroup_per_node", "lruvec.pgdat")),
    ("has_member", ("zone", "nope")),
    ("sizeof", ("pg_data_t",)),
    ("member_size", ("zone", "managed_pages")),
    ("array_len", ("zone", "free_area")),
    ("enum_value", ("zone_type", "ZONE_NORMAL")),
    ("enum_value", (None, "NEG64")),
    ("enum_values", ("zone_type",)),
]


def _answers(btf):
    return [getattr(btf, what)(*args) for what, args in QUESTIONS]


@pytest.fixture
def blob_file(tmp_path):
    path = tmp_path / "vmlinux"
    path.write_bytes(build_kernel().build())
    return str(path)


def _cache_files(d):
    return sorted(p for p in os.listdir(d))


def test_cache_round_trip(blob_file, tmp_path):
    cache = str(tmp_path / "cache")                  # created on demand
    cold = BTF.load(blob_file, cache_dir=cache)
    assert cold.cache_state == "miss"
    expected = _answers(cold)
    files = _cache_files(cache)
    assert len(files) == 1 and files[0].startswith("btf-") and files[0].endswith(".json")

    warm = BTF.load(blob_file, cache_dir=cache)
    assert warm.cache_state == "hit"
    assert _answers(warm) == expected
    assert warm._w is None, "a warm load must not scan the type section"
    with pytest.raises(BTFError, match="^struct zone has no member nope$"):
        warm.member_offset("zone", "nope")           # cached negative answer
    assert _cache_files(cache) == files              # no stray temporary files


def test_cache_is_per_blob(blob_file, tmp_path):
    cache = str(tmp_path / "cache")
    BTF.load(blob_file, cache_dir=cache).sizeof("zone")
    other = tmp_path / "other"
    other.write_bytes(build_kernel(long_size=4).build())
    btf = BTF.load(str(other), cache_dir=cache)
    assert btf.cache_state == "miss"
    assert btf.member_size("zone", "next") == 4
    assert len(_cache_files(cache)) == 2


@pytest.mark.parametrize("garbage", [
    b"{not json",
    b"",
    b"\xff\xfe\x00",
    b"[1, 2]",
    json.dumps({"format": 999, "key": "x", "answers": {}}).encode(),
])
def test_corrupt_cache_is_ignored_and_rewritten(blob_file, tmp_path, garbage):
    cache = str(tmp_path / "cache")
    expected = _answers(BTF.load(blob_file, cache_dir=cache))
    (name,) = _cache_files(cache)
    with open(os.path.join(cache, name), "wb") as f:
        f.write(garbage)
    btf = BTF.load(blob_file, cache_dir=cache)
    assert btf.cache_state == "corrupt"
    assert _answers(btf) == expected
    with open(os.path.join(cache, name)) as f:
        doc = json.load(f)
    assert doc["format"] == mfd.kernel.btf._CACHE_FORMAT
    assert BTF.load(blob_file, cache_dir=cache).cache_state == "hit"


def test_cache_with_foreign_key_or_bad_values(blob_file, tmp_path):
    cache = str(tmp_path / "cache")
    expected = _answers(BTF.load(blob_file, cache_dir=cache))
    (name,) = _cache_files(cache)
    path = os.path.join(cache, name)
    with open(path) as f:
        doc = json.load(f)
    doc["answers"] = {k: {"value": "bogus"} for k in doc["answers"]}
    with open(path, "w") as f:
        json.dump(doc, f)
    btf = BTF.load(blob_file, cache_dir=cache)
    assert btf.cache_state == "hit"
    assert _answers(btf) == expected                  # bad values recomputed
    doc["key"] = "0" * 40
    with open(path, "w") as f:
        json.dump(doc, f)
    btf = BTF.load(blob_file, cache_dir=cache)
    assert btf.cache_state == "corrupt"
    assert _answers(btf) == expected


def test_unwritable_cache_dir_does_not_fail(blob_file, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("a file where a directory should be")
    btf = BTF.load(blob_file, cache_dir=str(blocker / "cache"))   # fails even for root
    assert _answers(btf) == _answers(BTF.load(blob_file))
    assert btf.cache_state == "unwritable"


# ------------------------------------------------- the running kernel vs bpftool

BPFTOOL = shutil.which("bpftool") or ("/usr/sbin/bpftool" if os.access("/usr/sbin/bpftool", os.X_OK) else None)

# What mfd asks; (struct, member path).
MEMBERS = [
    ("task_struct", "cgroups"), ("css_set", "subsys"), ("mem_cgroup", "css"),
    ("mem_cgroup", "nodeinfo"), ("mem_cgroup_per_node", "lruvec"), ("lruvec", "pgdat"),
    ("mem_cgroup_per_node", "lruvec.pgdat"),
    ("pglist_data", "node_zones"), ("pglist_data", "nr_zones"), ("pglist_data", "node_start_pfn"),
    ("pglist_data", "node_present_pages"), ("pglist_data", "node_spanned_pages"),
    ("pglist_data", "node_id"),
    ("zone", "zone_pgdat"), ("zone", "zone_start_pfn"), ("zone", "managed_pages"),
    ("zone", "spanned_pages"), ("zone", "present_pages"), ("zone", "name"), ("zone", "free_area"),
    ("free_area", "nr_free"),
]
ARRAYS = [("css_set", "subsys"), ("pglist_data", "node_zones"), ("zone", "free_area")]
SIZES = ["pglist_data", "zone", "free_area"]
ENUMS = ["cgroup_subsys_id", "migratetype", "zone_type"]
STRUCTS = sorted({s for s, _m in MEMBERS})

# bpftool kinds whose header line we keep (the rest, mostly FUNC and
# FUNC_PROTO, is skipped unparsed).
_KEEP = {"STRUCT", "UNION", "TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG",
         "ARRAY", "PTR", "INT", "ENUM", "ENUM64", "FLOAT", "FWD"}


class BpftoolDump:
    """Reference layout read from `bpftool btf dump file` raw output, e.g.

        [773] STRUCT 'zone' size=1984 vlen=44
        \t'watermark' type_id=772 bits_offset=0
        [772] ENUM 'zone_type' encoding=UNSIGNED size=4 vlen=6
        \t'ZONE_DMA' val=0
    """

    def __init__(self, lines, struct_names, enum_names):
        self.types = {}      # id -> (kind, name, attrs)
        self.members = {}    # id -> [(name, attrs)] for wanted and anonymous blocks
        self.by_name = {}    # name -> [ids] for STRUCT/UNION/ENUM/ENUM64
        current = None
        for line in lines:
            if line.startswith("\t"):
                if current is not None:
                    name, _q, rest = line[2:].rstrip("\n").partition("' ")
                    current.append((name, _attrs(rest)))
                continue
            current = None
            if not line.startswith("["):
                continue
            idx, kind, rest = line.split(" ", 2)
            if kind not in _KEEP:
                continue
            name, _q, attrs = rest[1:].rstrip("\n").partition("'")
            tid = int(idx[1:-1])
            self.types[tid] = (kind, name, _attrs(attrs))
            if kind in ("STRUCT", "UNION", "ENUM", "ENUM64"):
                self.by_name.setdefault(name, []).append(tid)
                wanted = struct_names if kind in ("STRUCT", "UNION") else enum_names
                if name in wanted or name == "(anon)":
                    current = self.members[tid] = []

    def find(self, name, kinds=("STRUCT", "UNION")):
        for tid in self.by_name.get(name, []):
            kind, _n, attrs = self.types[tid]
            if kind in kinds and int(attrs.get("vlen", "0")) > 0:
                return tid
        raise KeyError(name)

    def resolve(self, tid):
        while self.types[tid][0] in ("TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"):
            tid = int(self.types[tid][2]["type_id"])
        return tid

    def size(self, tid):
        if tid == 0:
            return 0
        tid = self.resolve(tid)
        kind, _n, attrs = self.types[tid]
        if kind == "PTR":
            return 8
        if kind == "ARRAY":
            return int(attrs["nr_elems"]) * self.size(int(attrs["type_id"]))
        return int(attrs["size"])

    def _lookup(self, tid, name):
        for mname, attrs in self.members[tid]:
            if mname == name:
                return int(attrs["bits_offset"]), int(attrs["type_id"])
        for mname, attrs in self.members[tid]:
            if mname == "(anon)":
                inner = self.resolve(int(attrs["type_id"]))
                if inner in self.members:
                    hit = self._lookup(inner, name)
                    if hit:
                        return int(attrs["bits_offset"]) + hit[0], hit[1]
        return None

    def member(self, struct_name, path):
        """(byte offset, type id) of a dotted member path."""
        tid, bits, mtype = self.find(struct_name), 0, None
        for k, part in enumerate(path.split(".")):
            if k:
                tid = self.resolve(mtype)
            off, mtype = self._lookup(tid, part)
            bits += off
        return bits // 8, mtype

    def enum(self, name):
        tid = self.find(name, ("ENUM", "ENUM64"))
        return {n: int(a["val"].rstrip("LU")) for n, a in self.members[tid]}


def _attrs(text):
    return dict(kv.split("=", 1) for kv in text.split() if "=" in kv)


@pytest.fixture(scope="module")
def live():
    if not os.path.exists(VMLINUX):
        pytest.skip(f"{VMLINUX} absent: kernel without CONFIG_DEBUG_INFO_BTF")
    if not os.access(VMLINUX, os.R_OK):
        pytest.skip(f"{VMLINUX} not readable")
    return BTF.load(VMLINUX)


@pytest.fixture(scope="module")
def dump(live):
    if BPFTOOL is None:
        pytest.skip("bpftool not installed (Debian package bpftool)")
    proc = subprocess.Popen([BPFTOOL, "btf", "dump", "file", VMLINUX],
                            stdout=subprocess.PIPE, text=True)
    try:
        ref = BpftoolDump(proc.stdout, set(STRUCTS), set(ENUMS))
    finally:
        proc.stdout.close()
        rc = proc.wait()
    if rc != 0:
        pytest.skip(f"bpftool btf dump failed with status {rc}")
    return ref


@pytest.mark.parametrize("struct_name,path", MEMBERS, ids=[f"{s}.{m}" for s, m in MEMBERS])
def test_live_member_offsets(live, dump, struct_name, path):
    off, mtype = dump.member(struct_name, path)
    assert live.member_offset(struct_name, path) == off
    assert live.member_size(struct_name, path) == dump.size(mtype)
    assert live.has_member(struct_name, path)


@pytest.mark.parametrize("struct_name", STRUCTS)
def test_live_every_member_of_the_structs_we_use(live, dump, struct_name):
    tid = dump.find(struct_name)
    for name, attrs in dump.members[tid]:
        if name == "(anon)":
            continue
        assert live.member_offset(struct_name, name) == int(attrs["bits_offset"]) // 8, name
        if "bitfield_size" not in attrs:
            assert live.member_size(struct_name, name) == dump.size(int(attrs["type_id"])), name


@pytest.mark.parametrize("struct_name,member", ARRAYS)
def test_live_array_len(live, dump, struct_name, member):
    _off, mtype = dump.member(struct_name, member)
    kind, _n, attrs = dump.types[dump.resolve(mtype)]
    assert kind == "ARRAY"
    assert live.array_len(struct_name, member) == int(attrs["nr_elems"])


def test_live_node_zones_is_max_nr_zones(live):
    assert live.array_len("pglist_data", "node_zones") == \
        live.enum_value("zone_type", "__MAX_NR_ZONES")


@pytest.mark.parametrize("name", SIZES + STRUCTS)
def test_live_sizeof(live, dump, name):
    tid = dump.find(name)
    assert live.sizeof(name) == int(dump.types[tid][2]["size"])


def test_live_pg_data_t(live):
    assert live.sizeof("pg_data_t") == live.sizeof("pglist_data")


@pytest.mark.parametrize("enum", ENUMS)
def test_live_enums(live, dump, enum):
    expected = dump.enum(enum)
    assert live.enum_values(enum) == expected
    assert list(live.enum_values(enum)) == list(expected)
    for name, value in expected.items():
        assert live.enum_value(enum, name) == value
        assert live.enum_value(None, name) == value


def test_live_memory_cgrp_id(live, dump):
    assert live.enum_value("cgroup_subsys_id", "memory_cgrp_id") == \
        dump.enum("cgroup_subsys_id")["memory_cgrp_id"]


def _mfd_queries(btf):
    for s, m in MEMBERS:
        btf.member_offset(s, m)
    for s, m in ARRAYS:
        btf.array_len(s, m)
    for n in SIZES:
        btf.sizeof(n)
    btf.member_size("zone", "managed_pages")
    btf.enum_value("cgroup_subsys_id", "memory_cgrp_id")
    for e in ENUMS:
        btf.enum_values(e)


def test_live_cache_answers_all_mfd_queries(live, tmp_path):
    """A second start answers every query mfd makes from the cache (speed is in bench/)."""
    _mfd_queries(BTF.load(VMLINUX, cache_dir=str(tmp_path)))
    warm_btf = BTF.load(VMLINUX, cache_dir=str(tmp_path))
    _mfd_queries(warm_btf)
    assert warm_btf.cache_state == "hit"
