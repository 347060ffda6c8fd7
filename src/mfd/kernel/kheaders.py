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

import glob
import os
import platform
import re
from dataclasses import dataclass
from typing import List, Optional

from ..errors import KernelUnsupported

_KCONFIG = os.path.join("include", "linux", "kconfig.h")
_AUTOCONF = os.path.join("include", "generated", "autoconf.h")

_ARCH = {"x86_64": "x86", "i686": "x86", "aarch64": "arm64", "ppc64le": "powerpc",
         "ppc64": "powerpc", "s390x": "s390", "riscv64": "riscv",
         "loongarch64": "loongarch", "mips64": "mips"}


@dataclass(frozen=True)
class HeaderTree:
    path: Optional[str]      # value for BCC_KERNEL_SOURCE; None: BCC finds its own
    note: Optional[str]      # what to tell the user, once


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
    os.makedirs(dst, exist_ok=True)
    for name in os.listdir(src):
        link = os.path.join(dst, name)
        if not os.path.lexists(link):
            os.symlink(os.path.join(src, name), link)


def _join_debian_tree(flavour: str, common: str, arch: str, cache_dir: str) -> str:
    """Join a Debian flavour dir and its -common sibling under cache_dir."""
    joined = os.path.join(cache_dir, "kheaders", os.path.basename(flavour))
    if os.path.isfile(os.path.join(joined, _KCONFIG)) and \
            os.path.isfile(os.path.join(joined, _AUTOCONF)):
        return joined
    _link_entries(os.path.join(common, "include"), os.path.join(joined, "include"))
    _link_entries(os.path.join(flavour, "include"), os.path.join(joined, "include"))
    arch_inc = os.path.join("arch", arch, "include")
    _link_entries(os.path.join(common, arch_inc), os.path.join(joined, arch_inc))
    _link_entries(os.path.join(flavour, arch_inc), os.path.join(joined, arch_inc))
    return joined


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
            except OSError:
                continue
        return HeaderTree(tree, f"no kernel headers for {release}; compiling against "
                                f"{os.path.basename(cand)} (safe: mfd takes every struct "
                                f"offset from BTF)")
    raise KernelUnsupported(
        f"no kernel headers for {release}: install linux-headers-{release} (apt) or "
        f"kernel-devel-{release} (dnf) (on Debian with a foreign kernel, "
        f"linux-headers-amd64 works too), or use --source procfs")
