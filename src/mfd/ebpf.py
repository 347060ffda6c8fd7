"""BCC, in one place: the only module that imports :mod:`bcc`.

Every eBPF source goes through :class:`Program`: the root check, the kernel's
BTF, the ``MFD_NR_*`` sizes bpf/mfd.h needs, the header tree, tracefs, one
compile with the compiler's output kept off the terminal, and ``close()``.
By default the compile runs in the loader helper (mfd.handover), so BCC and
its compiler are never mapped into mfd; maps are read through libbpf
(mfd.kernel.bpfmap) either way.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
from importlib import resources
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .errors import KernelUnsupported, MfdError, PermissionDenied, SourceUnavailable
from .kernel import CACHE_DIR, bpfmap, tracefs
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


def header_tree(note: Callable[[str], None]) -> Optional[str]:
    """The kernel header tree BCC should compile against (saying once which,
    if not the kernel's own); None leaves the choice to BCC."""
    tree = find_header_tree(cache_dir=CACHE_DIR)
    for said in (tree.cache_note, tree.note):
        if said:
            note_once(note, said)       # the walker and the events both compile
    return tree.path


def _bpf_class(hint: str = ""):
    try:
        from bcc import BPF
    except ImportError as e:
        from .origin import install_hint     # BCC is not on PyPI: always the distro's
        raise SourceUnavailable("BCC's Python bindings are not installed: "
                                + install_hint("python3-bpfcc", "python3-bcc") + hint) from e
    return BPF


def import_bcc(note: Callable[[str], None], hint: str = ""):
    """(BCC's BPF class, the header tree's path or None), for compiling in
    this process (tests).  Imported late: it costs ~60 ms and maps the
    compiler.  ``hint`` ends the message when BCC is missing."""
    tree = header_tree(note)
    return _bpf_class(hint), tree


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


# -- compiling and attaching, in this process or in the loader helper ---------

LOADERS = ("auto", "helper", "inprocess")

# A kprobe to attach: ("kprobe" | "kretprobe", kernel function, program name).
Kprobe = Tuple[str, str, str]


def _compile(req: dict):
    """A BCC object for one request ({"what", "text", "cflags", "tree",
    "debug", "kprobes", "hint"}), its kprobes attached (tracepoints attach
    themselves).  Compiler output stays off the terminal unless "debug"; its
    first error line ends the message."""
    BPF = _bpf_class(req.get("hint", ""))
    bpf, failure = None, None
    capture = StderrCapture(passthrough=req.get("debug", False))
    with capture, kernel_source(req.get("tree")):
        try:
            bpf = BPF(text=req["text"].encode(), cflags=list(req["cflags"]))
            for kind, event, fn in req.get("kprobes", ()):
                attach = bpf.attach_kretprobe if kind == "kretprobe" else bpf.attach_kprobe
                attach(event=event.encode(), fn_name=fn.encode())
        except Exception as e:  # BCC raises bare Exception for compile/verifier/attach errors
            failure = e
    if failure is not None:
        if bpf is not None:
            bpf.cleanup()
        detail = first_error(capture.text()) or first_line(failure)
        raise SourceUnavailable(f"cannot load {req['what']}: {detail} "
                                "(--debug shows the compiler's output)") from failure
    return bpf


def _describe(bpf) -> Tuple[List[Dict[str, str]], List[int], List[int], List[str]]:
    """What a compiled BCC object holds: its maps ({"name", "key", "leaf"}:
    the C types as BCC describes them), their fds, the perf-event fds its
    programs are attached through, and the tracefs kprobe events BCC made
    where the kernel has no kprobe PMU (named <p|r>_<function>_bcc_<pid>)."""
    from bcc.libbcc import lib
    lib.bpf_num_tables.restype, lib.bpf_num_tables.argtypes = ctypes.c_size_t, [ctypes.c_void_p]
    lib.bpf_table_name.restype = ctypes.c_char_p
    lib.bpf_table_name.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    maps, map_fds = [], []
    for i in range(lib.bpf_num_tables(bpf.module)):
        name = lib.bpf_table_name(bpf.module, i)
        maps.append({"name": name.decode(),
                     "key": lib.bpf_table_key_desc(bpf.module, name).decode(),
                     "leaf": lib.bpf_table_leaf_desc(bpf.module, name).decode()})
        map_fds.append(lib.bpf_table_fd(bpf.module, name))
    attached = [fd for table in (bpf.tracepoint_fds, bpf.kprobe_fds,
                                 getattr(bpf, "raw_tracepoint_fds", {}))
                for fd in _fds_in(table)]
    legacy = []
    if bpf.kprobe_fds:
        made = tracefs.kprobe_event_names()
        legacy = [n for n in (f"{_text(ev)}_bcc_{os.getpid()}" for ev in bpf.kprobe_fds)
                  if n in made]
    return maps, map_fds, attached, legacy


def sweep_legacy_kprobes(kprobes: Sequence[Kprobe]) -> List[str]:
    """Remove tracefs kprobe events BCC made on these functions for a process
    that is gone (an mfd killed with -9 on a kernel without the kprobe PMU,
    before 4.17, cannot remove its own); returns their names.  A live
    process's events are left alone."""
    prefixes = tuple(f"{'r' if kind == 'kretprobe' else 'p'}_{_event_name(fn)}_bcc_"
                     for kind, fn, _prog in kprobes)
    removed = []
    for name in tracefs.kprobe_event_names() if prefixes else ():
        pid = name.rpartition("_bcc_")[2]
        if name.startswith(prefixes) and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            if tracefs.remove_kprobe_event(name):
                removed.append(name)
    return removed


def _event_name(fn: str) -> str:
    """BCC's event name part for a kernel function (attach_kprobe: '+' and '.' become '_')."""
    return fn.replace("+", "_").replace(".", "_")


def _fds_in(table) -> List[int]:
    """The fds of one of BCC's attachment tables: {event: fd}, or for kprobes
    since BCC 0.13 {event: {program: fd}}."""
    out = []
    for v in table.values():
        out += _fds_in(v) if isinstance(v, dict) else [v] if isinstance(v, int) else []
    return out


def _text(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _build_for_handover(req: dict) -> Tuple[dict, List[int]]:
    """In the loader helper: compile, attach, and answer with every fd mfd
    must hold.  The BCC object is never cleaned up: the helper leaves with
    os._exit, and what it built lives on through the fds it sent."""
    try:
        bpf = _compile(req)
    except MfdError as e:
        return {"error": str(e), "kind": type(e).__name__}, []
    maps, map_fds, attached, legacy = _describe(bpf)
    return ({"maps": maps, "attached": len(attached), "legacy_kprobes": legacy},
            map_fds + attached)


_HELPER = None


def _helper():
    global _HELPER
    if _HELPER is None:
        from .handover import Helper
        _HELPER = Helper(_build_for_handover, warm=_bpf_class)
    return _HELPER


def start_loader(loader: str = "auto") -> None:
    """Start the loader helper early: it imports BCC (~100 ms, mapping the
    compiler) while this process reads BTF and prepares the cflags.  A helper
    that cannot start is met again, and said, at the first Program."""
    if loader != "inprocess":
        from .handover import HandoverFailed
        try:
            _helper().start()
        except HandoverFailed:
            pass


def release_loader() -> None:
    """Let the loader helper go once every program is loaded (it would leave
    by itself after handover.IDLE_SECONDS without a request), and give back
    the memory loading took.  Each source parses the kernel's BTF (~11 MB of
    small objects, freed when its cflags are made); whether glibc returns that
    heap to the kernel by itself depends on what was allocated above it
    meanwhile (SQLite's cache, say), so a long-running mfd could keep 10 MB
    it does not use: malloc_trim(3) returns it either way."""
    if _HELPER is not None:
        _HELPER.close()
    import gc
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):   # not glibc (musl has no malloc_trim)
        pass


class Program:
    """One compiled and loaded eBPF module; ``program[name]`` is one of its
    maps (a mfd.kernel.bpfmap.Map).

    ``what`` names it in messages ("the eBPF zone walker"); ``kprobes`` are
    attached with the compile.  ``loader``: "helper" builds it in the loader
    helper (mfd.handover) and keeps only fds, failing if the hand-over fails;
    "inprocess" compiles here, keeping BCC and its compiler mapped; "auto"
    tries the helper and falls back, saying so once.  ``self.loader`` says
    which was used.
    """

    def __init__(self, what: str, text: str, flags: Sequence[str],
                 note: Callable[[str], None], debug: bool = False, hint: str = "",
                 kprobes: Sequence[Kprobe] = (), loader: str = "auto"):
        if loader not in LOADERS:
            raise ValueError(loader)
        self.what = what
        self.bpf = None
        self._fds: List[int] = []
        self._legacy: List[str] = []
        self.maps: Dict[str, bpfmap.Map] = {}
        if kprobes:
            for name in sweep_legacy_kprobes(kprobes):
                note_once(note, f"removed the kprobe event {name} a killed mfd left in tracefs")
        req = {"what": what, "text": text, "cflags": list(flags), "tree": header_tree(note),
               "debug": debug, "hint": hint, "kprobes": [list(k) for k in kprobes]}
        if loader != "inprocess":
            from .handover import HandoverFailed
            try:
                header, fds = _helper().request(req)
            except HandoverFailed as e:
                if loader == "helper":
                    raise SourceUnavailable(f"cannot load {what} through the loader helper "
                                            f"({e}): use --bpf-loader inprocess or auto") from e
                note_once(note, f"the eBPF loader helper failed ({e}): compiling in-process, "
                                "which keeps BCC's compiler in memory (~130 MB)")
            else:
                self.loader = "helper"
                self._take(header, fds)
                return
        self.loader = "inprocess"
        self.bpf = _compile(req)
        try:
            maps, map_fds, _attached, _legacy = _describe(self.bpf)
            self.maps = bpfmap.maps_from(maps, map_fds)
        except BaseException:
            self.close()
            raise

    def _take(self, header: dict, fds: List[int]) -> None:
        self._fds = fds
        if "error" in header:
            self.close()
            kind = KernelUnsupported if header.get("kind") == "KernelUnsupported" \
                else SourceUnavailable
            raise kind(header["error"])
        self._legacy = list(header.get("legacy_kprobes", ()))
        try:
            maps = header["maps"]
            self.maps = bpfmap.maps_from(maps, fds[:len(maps)])
        except BaseException:
            self.close()
            raise

    def __getitem__(self, name: str) -> "bpfmap.Map":
        try:
            return self.maps[name]
        except KeyError:
            raise SourceUnavailable(f"{self.what} has no map {name!r}") from None

    def close(self) -> None:
        """Detach and free: BCC's cleanup in-process; otherwise closing the
        fds frees everything (the kernel keeps a program while a perf event
        holds it), and tracefs kprobe events the helper made are removed."""
        self.maps = {}
        if self.bpf is not None:
            bpf, self.bpf = self.bpf, None
            bpf.cleanup()
        fds, self._fds = self._fds, []
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        legacy, self._legacy = self._legacy, []
        for name in legacy:
            tracefs.remove_kprobe_event(name)


def first_error(text: str) -> str:
    for line in text.splitlines():
        if "error:" in line:
            return line.strip()
    return ""


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


