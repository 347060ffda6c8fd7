"""BCC, in one place: the only module that imports :mod:`bcc`.

Every eBPF source goes through :class:`Program`: the root check, the kernel's
BTF, the ``MFD_NR_*`` sizes bpf/mfd.h needs, the header tree, tracefs, one
compile with the compiler's output kept off the terminal, and ``close()``.
Map access that BCC's table classes do badly (batch reads, the kernel's own
idea of a map's sizes) goes through :func:`libbcc`.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import struct
from importlib import resources
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .errors import KernelUnsupported, PermissionDenied, SourceUnavailable
from .kernel import CACHE_DIR
from .kernel.btf import BTF, BTFError
from .kernel import facts
from .kernel.kheaders import find_header_tree
from .kernel.tracefs import ensure_tracefs, mount_hint, tracepoint_exists
from .term import StderrCapture, note_once
from .term import note as stderr_note

BTF_PATH = "/sys/kernel/btf/vmlinux"


def bpf_dir() -> str:
    """Directory of the shipped eBPF sources (package data, see pyproject.toml)."""
    return str(resources.files("mfd.bpf"))


def require_root(what: str, hint: str = "") -> None:
    if os.geteuid() != 0:
        raise PermissionDenied(f"{what} needs root: run with sudo{hint}")


def load_btf(path: Optional[str] = None, hint: str = "",
             note: Callable[[str], None] = stderr_note) -> BTF:
    """The running kernel's BTF (answers cached per build under CACHE_DIR);
    ``path`` another file (tests)."""
    try:
        btf = BTF.load(path or BTF_PATH, cache_dir=CACHE_DIR)
    except BTFError as e:
        raise KernelUnsupported(f"{e}{hint}") from e
    if btf.cache_problem:
        note_once(note, btf.cache_problem)
    return btf


def sizes(btf: BTF, nodes: Optional[Sequence[int]] = None) -> Dict[str, int]:
    """The sizes bpf/mfd.h lays its records out with; every program includes it."""
    return {"MFD_NR_ORDERS": btf.array_len("zone", "free_area"),
            "MFD_NR_ZONES": btf.array_len("pglist_data", "node_zones"),
            "MFD_NR_NODES": len(facts.memory_nodes() if nodes is None else nodes)}


def cflags(defines: Dict[str, object]) -> List[str]:
    return ["-I" + bpf_dir()] + ["-D%s=%s" % kv for kv in defines.items()]


def source_text(programs: Iterable[str]) -> str:
    """The named bpf/ files, concatenated: what is compiled, as one unit."""
    parts = []
    names = list(programs)
    for name in names:
        with open(os.path.join(bpf_dir(), name)) as f:
            text = f.read()
        parts.append(text if len(names) == 1 else f"/* ---- {name} ---- */\n" + text)
    return "\n".join(parts)


def require_tracepoints(points: Sequence[Tuple[str, str]], note: Callable[[str], None],
                        hint: str = "", why: Optional[Callable[[str], str]] = None) -> None:
    """tracefs mounted (mounting it if need be) and every (category, event) there."""
    if not ensure_tracefs(note):
        raise KernelUnsupported(mount_hint() + hint)
    missing = [f"{c}:{e}" for c, e in points if not tracepoint_exists(c, e)]
    if missing:
        extra = why(missing[0]) if why else ""
        raise KernelUnsupported(f"this kernel has no {', '.join(missing)} tracepoint{extra}{hint}")


def import_bcc(note: Callable[[str], None], hint: str = ""):
    """Find a kernel header tree for BCC (saying once which, if not the
    kernel's own) and import it: (BCC's BPF class, the tree's path or None).
    Imported late: it costs ~60 ms and needs tracefs.  ``hint`` ends the
    message when BCC is missing."""
    tree = find_header_tree(cache_dir=CACHE_DIR)
    for said in (tree.cache_note, tree.note):
        if said:
            note_once(note, said)       # the walker and the events both compile
    try:
        from bcc import BPF
    except ImportError as e:
        from .origin import install_hint     # BCC is not on PyPI: always the distro's
        raise SourceUnavailable("BCC's Python bindings are not installed: "
                                + install_hint("python3-bpfcc", "python3-bcc") + hint) from e
    return BPF, tree.path


@contextlib.contextmanager
def kernel_source(path: Optional[str]):
    """BCC_KERNEL_SOURCE set to ``path`` for one compile only (BCC reads it
    when a BPF object is built).  Left set, it would be inherited by every
    child and later load, and find_header_tree takes the variable as the
    user's word: a tree checked once would never be checked again."""
    if not path:
        yield
        return
    before = os.environ.get("BCC_KERNEL_SOURCE")
    os.environ["BCC_KERNEL_SOURCE"] = path
    try:
        yield
    finally:
        if before is None:
            del os.environ["BCC_KERNEL_SOURCE"]
        else:
            os.environ["BCC_KERNEL_SOURCE"] = before


def libbcc():
    """libbcc's C functions (bpf_lookup_elem, the batch calls, obj_get_info)."""
    from bcc.libbcc import lib
    return lib


class Program:
    """One compiled and loaded BCC module.

    ``what`` names it in messages ("the eBPF zone walker").  ``attach`` is
    called with the BPF object inside the same error handling as the compile
    (kprobes are attached there).  The compiler's output stays off the
    terminal unless ``debug``; its first error line ends the message.
    """

    def __init__(self, what: str, text: str, flags: Sequence[str],
                 note: Callable[[str], None], debug: bool = False, hint: str = "",
                 attach: Optional[Callable[[object], None]] = None):
        self.what = what
        self.bpf = None
        BPF, tree = import_bcc(note, hint)
        failure = None
        capture = StderrCapture(passthrough=debug)
        with capture, kernel_source(tree):
            try:
                self.bpf = BPF(text=text.encode(), cflags=list(flags))
                if attach is not None:
                    attach(self.bpf)
            except Exception as e:  # BCC raises bare Exception for compile/verifier/attach errors
                failure = e
        if failure is not None:
            self.close()
            detail = first_error(capture.text()) or first_line(failure)
            raise SourceUnavailable(f"cannot load {what}: {detail} "
                                    "(--debug shows the compiler's output)") from failure

    def __getitem__(self, name: str):
        return self.bpf[name.encode()]

    def close(self) -> None:
        if self.bpf is not None:
            bpf, self.bpf = self.bpf, None
            bpf.cleanup()


def first_error(text: str) -> str:
    for line in text.splitlines():
        if "error:" in line:
            return line.strip()
    return ""


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def map_sizes(fd: int) -> Tuple[int, int]:
    """(key_size, value_size) of a BPF map, from the kernel (BPF_OBJ_GET_INFO_BY_FD).

    Reads only the head of the UAPI struct bpf_map_info (type, id, key_size,
    value_size, ...: u32 each, stable since 4.13); the kernel copies no more
    than the length we pass.
    """
    buf = ctypes.create_string_buffer(24)
    size = ctypes.c_uint32(len(buf))
    if libbcc().bpf_obj_get_info(fd, buf, ctypes.byref(size)) != 0:
        raise SourceUnavailable("cannot read a BPF map's description from the kernel")
    _type, _id, key_size, value_size = struct.unpack_from("=4I", buf.raw)
    return key_size, value_size
