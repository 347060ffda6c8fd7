"""Find a kernel header tree for BCC's compiler.

BCC compiles eBPF C at run time against a kernel header tree, normally
/lib/modules/$(uname -r)/build.  Custom and cloud kernels often ship none.
mfd reads no struct through those headers (every offset comes from BTF), so
another kernel's tree is safe for what mfd compiles: it only supplies the
basic types and helper declarations.  When the running kernel has no tree we
look for one under /usr/src and tell the user which one we took.

Debian splits a header package in two directories,
linux-headers-<ver>-<flavour> (generated files, config) and
linux-headers-<ver>-common (the rest); BCC_KERNEL_SOURCE names a single
directory, so we join the two with symlinks in a private directory.
"""
from __future__ import annotations

import atexit
import glob
import os
import platform
import re
import shutil
import tempfile
from dataclasses import dataclass
from typing import List, Optional, Tuple

from ..errors import KernelUnsupported
from ..safefs import UnsafePath, make_dirs, untrusted_reason

_KCONFIG = os.path.join("include", "linux", "kconfig.h")
_AUTOCONF = os.path.join("include", "generated", "autoconf.h")

_ARCH = {"x86_64": "x86", "i686": "x86", "aarch64": "arm64", "ppc64le": "powerpc",
         "ppc64": "powerpc", "s390x": "s390", "riscv64": "riscv",
         "loongarch64": "loongarch", "mips64": "mips"}


@dataclass(frozen=True)
class HeaderTree:
    path: Optional[str]      # value for BCC_KERNEL_SOURCE; None: BCC finds its own
    note: Optional[str]      # what to tell the user, once
    cache_note: Optional[str] = None    # why the cache was not used, if it was not


def kernel_arch(machine: Optional[str] = None) -> str:
    machine = machine or platform.machine()
    return _ARCH.get(machine, machine)


def _version_key(path: str):
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", os.path.basename(path))]


def _own_tree(release: str, modules: str, sysfs: str) -> bool:
    kdir = os.path.join(modules, release)
    for sub in ("build", "source"):
        if os.path.isfile(os.path.join(kdir, sub, _KCONFIG)):
            return True
    # CONFIG_IKHEADERS: BCC unpacks /sys/kernel/kheaders.tar.xz by itself.
    return os.path.exists(os.path.join(sysfs, "kernel", "kheaders.tar.xz"))


def _candidates(usr_src: str) -> List[str]:
    dirs = glob.glob(os.path.join(usr_src, "linux-headers-*")) + \
        glob.glob(os.path.join(usr_src, "kernels", "*"))
    return sorted((d for d in dirs if os.path.isdir(d)), key=_version_key, reverse=True)


def _common_of(flavour_dir: str) -> Optional[str]:
    """The -common sibling of a Debian flavour directory, if it is complete."""
    m = re.match(r"(.*linux-headers-\d+\.\d+\.\d+-\d+)-", flavour_dir)
    if not m:
        return None
    common = m.group(1) + "-common"
    return common if os.path.isfile(os.path.join(common, _KCONFIG)) else None


def _link_entries(src: str, dst: str) -> None:
    make_dirs(dst)
    for name in os.listdir(src):
        link = os.path.join(dst, name)
        if not os.path.lexists(link):
            os.symlink(os.path.join(src, name), link)


def _joined_parts(flavour: str, common: str, arch: str) -> List[Tuple[str, List[str]]]:
    """(directory in the joined tree, the source directories it links into)."""
    arch_inc = os.path.join("arch", arch, "include")
    return [("include", [os.path.join(common, "include"), os.path.join(flavour, "include")]),
            (arch_inc, [os.path.join(common, arch_inc), os.path.join(flavour, arch_inc)])]


def _untrusted_tree(joined: str, parts) -> Optional[str]:
    """Why a joined tree cannot be compiled from, or None.  BCC compiles what
    it finds there as root, so the tree, every directory above it and every
    directory it links into must be root's alone, and every entry must be the
    link mfd made (pointing into one of its two source directories)."""
    reason = untrusted_reason(joined, leaf_is_dir=True)
    if reason:
        return reason
    for rel, sources in parts:
        d = os.path.join(joined, rel)
        reason = untrusted_reason(d, leaf_is_dir=True)
        if reason:
            return reason
        for src in sources:
            reason = untrusted_reason(src, leaf_is_dir=True)
            if reason:
                return reason
        for name in os.listdir(d):
            entry = os.path.join(d, name)
            try:
                target = os.readlink(entry)
            except OSError:
                if any(entry == os.path.join(joined, r) or
                       os.path.join(joined, r).startswith(entry + os.sep) for r, _ in parts):
                    continue        # "arch": a directory on the way to arch/<arch>/include
                return f"{entry} is not a link mfd made"
            if target not in (os.path.join(src, name) for src in sources):
                return f"{entry} points to {target}, not into {' or '.join(sources)}"
    return None


def _join_debian_tree(flavour: str, common: str, arch: str, cache_dir: str) -> str:
    """Join a Debian flavour dir and its -common sibling under cache_dir."""
    joined = os.path.join(cache_dir, "kheaders", os.path.basename(flavour))
    parts = _joined_parts(flavour, common, arch)
    if not os.path.lexists(joined):
        for rel, sources in parts:
            for src in sources:
                _link_entries(src, os.path.join(joined, rel))
    reason = _untrusted_tree(joined, parts)
    if reason:
        raise UnsafePath(reason)
    if not (os.path.isfile(os.path.join(joined, _KCONFIG)) and
            os.path.isfile(os.path.join(joined, _AUTOCONF))):
        raise UnsafePath(f"{joined} is incomplete")
    return joined


def _join_for_this_run(flavour: str, common: str, arch: str) -> str:
    """The joined tree in a new private directory, removed when mfd exits: for
    when the cache cannot be written or trusted."""
    tmp = tempfile.mkdtemp(prefix="mfd-kheaders-")
    atexit.register(shutil.rmtree, tmp, True)
    return _join_debian_tree(flavour, common, arch, tmp)


def find_header_tree(release: Optional[str] = None, cache_dir: str = "/var/cache/mfd",
                     usr_src: str = "/usr/src", modules: str = "/lib/modules",
                     sysfs: str = "/sys") -> HeaderTree:
    """Where BCC should look for kernel headers.

    Raises KernelUnsupported, with the package to install, when there is no tree.
    """
    release = release or os.uname().release
    if os.environ.get("BCC_KERNEL_SOURCE"):
        return HeaderTree(os.environ["BCC_KERNEL_SOURCE"], None)
    if _own_tree(release, modules, sysfs):
        return HeaderTree(None, None)
    arch = kernel_arch()
    cache_note = None
    for cand in _candidates(usr_src):
        if not os.path.isfile(os.path.join(cand, _AUTOCONF)):
            continue  # not configured (a Debian -common half, a bare source tree)
        if os.path.isfile(os.path.join(cand, _KCONFIG)):
            tree = cand
        else:
            common = _common_of(cand)
            if not common:
                continue
            try:
                tree = _join_debian_tree(cand, common, arch, cache_dir)
            except (OSError, UnsafePath) as e:
                # A read-only or untrusted cache is no reason to say "install the
                # headers": they are here.  Join them privately for this run.
                why = e.strerror if isinstance(e, OSError) else str(e)
                cache_note = (f"not using the header cache in {cache_dir}: {why} "
                              f"(joined the headers in a private directory for this run)")
                try:
                    tree = _join_for_this_run(cand, common, arch)
                except (OSError, UnsafePath):
                    continue
        return HeaderTree(tree, f"no kernel headers for {release}; compiling against "
                                f"{os.path.basename(cand)} (safe: mfd takes every struct "
                                f"offset from BTF)", cache_note)
    raise KernelUnsupported(
        f"no kernel headers for {release}: install linux-headers-{release} (apt) or "
        f"kernel-devel-{release} (dnf) (on Debian with a foreign kernel, "
        f"linux-headers-amd64 works too), or use --source procfs")
