"""The kernel matrix: mfd's root tests inside VMs running Debian's distro kernel.

This machine's kernel lacks kprobes, data symbols in /proc/kallsyms and a
second NUMA node.  tests/vm/run_matrix.py boots Debian's kernel (which has
them) with virtme-ng, once per topology, and runs tests/vm/guest_checks.py
with the root tests of test_bpf_live.py and test_btf.py inside; each boot
takes 3-5 minutes under emulation.

Run only this with ``sudo make test-vm`` (or ``pytest -m vm``); leave it out
with ``-m "not vm"`` or ``MFD_VM=0``.  Missing prerequisites skip with what to
install, except under CI (``CI`` set), where scripts/setup.sh --test has
installed them and a skip would hide a broken set-up.
"""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "vm"))
import run_matrix  # noqa: E402

pytestmark = pytest.mark.vm

_did_not_boot = []


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    if os.environ.get("MFD_VM") == "0":
        pytest.skip("MFD_VM=0: the kernel matrix is skipped on request")
    try:
        run_matrix.prerequisites()
    except run_matrix.Missing as e:
        if os.environ.get("CI"):
            pytest.fail(f"the kernel matrix cannot run: {e}")
        pytest.skip(str(e))
    return str(tmp_path_factory.mktemp("vm"))


@pytest.mark.parametrize("topology", list(run_matrix.TOPOLOGIES))
def test_kernel_matrix(results_dir, topology):
    if _did_not_boot:
        pytest.fail(f"not tried: the {_did_not_boot[0]} VM did not boot")
    r = run_matrix.run_topology(topology, results_dir)
    if r.problem and not r.boot_s:
        _did_not_boot.append(topology)
    print(r.report())
    if r.summary:
        print(f"guest pytest: {r.summary}")
    assert r.ok, r.report()
