"""Header-tree discovery for BCC, on directory trees built in the test."""
from __future__ import annotations

import os

import pytest

from mfd.errors import KernelUnsupported
from mfd.kernel.kheaders import find_header_tree, kernel_arch


def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("/* test */\n")


@pytest.fixture
def roots(tmp_path, monkeypatch):
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    d = {k: tmp_path / k for k in ("usr_src", "modules", "sys", "cache")}
    for p in d.values():
        p.mkdir()
    return d


def _find(roots, release="9.9.9-test"):
    return find_header_tree(release=release, cache_dir=str(roots["cache"]),
                            usr_src=str(roots["usr_src"]), modules=str(roots["modules"]),
                            sysfs=str(roots["sys"]))


def test_running_kernel_tree_is_left_to_bcc(roots):
    _touch(roots["modules"] / "9.9.9-test" / "build" / "include" / "linux" / "kconfig.h")
    assert _find(roots).path is None and _find(roots).note is None


def test_ikheaders_is_left_to_bcc(roots):
    _touch(roots["sys"] / "kernel" / "kheaders.tar.xz")
    assert _find(roots).path is None


def test_debian_split_tree_is_joined_and_announced(roots):
    arch = kernel_arch()
    flavour = roots["usr_src"] / "linux-headers-6.1.0-56-amd64"
    common = roots["usr_src"] / "linux-headers-6.1.0-56-common"
    _touch(common / "include" / "linux" / "kconfig.h")
    _touch(common / "arch" / arch / "include" / "asm" / "page.h")
    _touch(flavour / "include" / "generated" / "autoconf.h")
    _touch(flavour / "arch" / arch / "include" / "generated" / "asm" / "x.h")
    tree = _find(roots)
    assert tree.path.startswith(str(roots["cache"]))
    for rel in ("include/linux/kconfig.h", "include/generated/autoconf.h",
                f"arch/{arch}/include/asm/page.h", f"arch/{arch}/include/generated/asm/x.h"):
        assert os.path.isfile(os.path.join(tree.path, rel)), rel
    assert "9.9.9-test" in tree.note and "linux-headers-6.1.0-56-amd64" in tree.note
    assert "BTF" in tree.note
    assert _find(roots).path == tree.path  # second start reuses the joined tree


def test_complete_tree_is_used_directly_newest_first(roots):
    for v in ("5.14.0-1", "5.14.0-2"):
        base = roots["usr_src"] / "kernels" / v
        _touch(base / "include" / "linux" / "kconfig.h")
        _touch(base / "include" / "generated" / "autoconf.h")
    assert _find(roots).path == str(roots["usr_src"] / "kernels" / "5.14.0-2")


def test_unconfigured_half_is_not_taken(roots):
    _touch(roots["usr_src"] / "linux-headers-6.1.0-56-common" / "include" / "linux" / "kconfig.h")
    with pytest.raises(KernelUnsupported) as e:
        _find(roots)
    msg = str(e.value)
    assert "linux-headers-9.9.9-test" in msg and "kernel-devel-9.9.9-test" in msg
    assert "--source procfs" in msg and "\n" not in msg


def test_env_override_wins(roots, monkeypatch):
    monkeypatch.setenv("BCC_KERNEL_SOURCE", "/somewhere")
    assert _find(roots).path == "/somewhere"
