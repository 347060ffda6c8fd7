#!/usr/bin/env python3
"""Run mfd's root tests inside VMs booted with a distro kernel (the kernel matrix).

This machine's kernel has no kprobes, no data symbols in /proc/kallsyms and one
NUMA node.  Debian's kernel has all three, so we boot it with virtme-ng
(``vng``), which shares the host's file system with the guest: the guest runs
this repository's .venv and tests as they are on the host, and writes its
results into a directory the host reads afterwards.

    usage (root): .venv/bin/python tests/vm/run_matrix.py [--topology numa2,uma] [--out DIR]
                  [--kernel VMLINUZ] [--test FILE ...]

Topologies (``--memory 2G --cpus 2`` each; one boot per topology):

    numa2   two NUMA nodes of 1 GiB, one CPU each
    uma     one node

In each guest one pytest process runs GUEST_TESTS, so every eBPF program is
compiled once per boot (about 30 s under emulation).  Nested KVM stalls on
the development machines, so the VM is emulated (``--disable-kvm``).
Exit status: 0 all passed, 1 a test failed or a VM did not boot/finish,
2 something needed is missing (run scripts/setup.sh --test).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# name -> (vng arguments, node ids the guest must have)
TOPOLOGIES: Dict[str, Tuple[List[str], List[int]]] = {
    "numa2": (["--memory", "2G", "--numa", "1G,cpus=0", "--numa", "1G,cpus=1"], [0, 1]),
    "uma": (["--memory", "2G"], [0]),
}

# Run in the guest, relative to the repository.  test_cli.py is left out: its
# root tests assume this host's zones (a Normal zone; a 2 GiB guest has none)
# and compile the walker once per command; guest_checks.py has the CLI runs
# the matrix needs.
GUEST_TESTS = ["tests/test_bpf_live.py", "tests/test_btf.py", "tests/vm/guest_checks.py"]

BOOT_TIMEOUT = 240      # s until the guest has started our command (about 20 s)
RUN_TIMEOUT = 1500      # s for one whole boot, tests included


class Missing(Exception):
    """Something the matrix needs is not installed (exit status 2)."""


def find_vng() -> str:
    """vng from this interpreter's venv (setup.sh installs virtme-ng there), else PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "vng")
    for cand in (here, os.path.join(REPO, ".venv", "bin", "vng"), shutil.which("vng")):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise Missing("no vng (PyPI package virtme-ng): run scripts/setup.sh --test")


def guest_python() -> str:
    """The interpreter the guest runs: the repository's .venv (mfd and BCC are
    there), whatever interpreter started this script."""
    venv = os.path.join(REPO, ".venv", "bin", "python")
    return venv if os.access(venv, os.X_OK) else sys.executable


def find_kernel(path: Optional[str] = None) -> Tuple[str, str]:
    """(vmlinuz, release) of a distro kernel whose own header tree is installed."""
    def version(p):     # 6.1.0-56 after 6.1.0-9
        return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", p)]
    cands = [path] if path else sorted(glob.glob("/boot/vmlinuz-*"), key=version, reverse=True)
    for vmlinuz in cands:
        release = os.path.basename(vmlinuz)[len("vmlinuz-"):]
        if os.path.isfile(os.path.join("/lib/modules", release, "build", "include",
                                       "generated", "utsrelease.h")):
            return vmlinuz, release
    raise Missing("no /boot/vmlinuz-* with matching headers in /lib/modules/<release>/build: "
                  "apt-get install linux-image-amd64 linux-headers-<its release> "
                  "(scripts/setup.sh --test does it)")


def check_tools() -> None:
    for tool, pkg in (("qemu-system-x86_64", "qemu-system-x86"), ("busybox", "busybox-static")):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/bin"):
            raise Missing(f"no {tool}: apt-get install {pkg} (scripts/setup.sh --test does it)")
    if os.geteuid() != 0:
        raise Missing("run as root: the guest loads BPF programs as the host's root user")


def prerequisites(kernel: Optional[str] = None) -> Tuple[str, str, str]:
    """(vng, vmlinuz, release), or Missing naming what to install."""
    check_tools()
    vng = find_vng()
    vmlinuz, release = find_kernel(kernel)
    return vng, vmlinuz, release


_HEADER_PROGRAM = """\
#include <linux/kbuild.h>
#include <linux/mmzone.h>
#include <linux/memcontrol.h>
#include <linux/sched.h>
#include <linux/cgroup-defs.h>

void mfd_offsets(void);
void mfd_offsets(void)
{
%s
}
"""


def header_values(build_dir: str, work: str) -> Dict[str, int]:
    """Every offset, size and count mfd takes from BTF, as the kernel's own headers
    give them: compiled with kbuild's flags to assembly, the way the kernel's
    asm-offsets.c is, and read back from the ``->NAME VALUE`` markers.  Names are
    collectors/bpf.py's MFD_OFF_* suffixes plus sizeof_*, nr_* and memory_cgrp_id."""
    from mfd.sources.zonewalk import _OFFSETS
    lines = ["\tOFFSET(%s, %s, %s);" % (macro, st, member) for macro, st, member in _OFFSETS]
    lines += ["\tDEFINE(sizeof_zone, sizeof(struct zone));",
              "\tDEFINE(sizeof_free_area, sizeof(struct free_area));",
              "\tDEFINE(sizeof_pglist_data, sizeof(struct pglist_data));",
              "\tDEFINE(nr_free_area, ARRAY_SIZE(((struct zone *)0)->free_area));",
              "\tDEFINE(nr_node_zones, ARRAY_SIZE(((struct pglist_data *)0)->node_zones));",
              "\tDEFINE(memory_cgrp_id, memory_cgrp_id);"]
    with open(os.path.join(work, "mfd_offsets.c"), "w") as f:
        f.write(_HEADER_PROGRAM % "\n".join(lines))
    with open(os.path.join(work, "Kbuild"), "w") as f:
        f.write("obj-m += mfd_offsets.o\n")
    r = subprocess.run(["make", "-s", "-C", build_dir, "M=" + work, "mfd_offsets.s"],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"kbuild failed on {build_dir}: {r.stderr[-2000:]}")
    values = {m.group(1): int(m.group(2))
              for m in re.finditer(r'"->(\w+) \$?(-?\d+)',
                                   _read(os.path.join(work, "mfd_offsets.s")))}
    if not values:
        raise RuntimeError("no ->NAME VALUE markers in the compiler's output")
    return values


def save_header_values(release: str, out: str) -> Optional[str]:
    """header_values() for ``release`` into out/headers-<release>.json; None (the
    guest then compiles them itself) when that fails here."""
    path = os.path.join(out, f"headers-{release}.json")
    if os.path.exists(path):
        return path
    try:
        with tempfile.TemporaryDirectory() as work:
            values = header_values(os.path.join("/lib/modules", release, "build"), work)
    except (ImportError, OSError, RuntimeError, subprocess.SubprocessError):
        return None
    with open(path, "w") as f:
        json.dump(values, f, indent=1, sort_keys=True)
    return path


@dataclass
class Result:
    topology: str
    ok: bool = False
    problem: str = ""                       # why a boot failed (not a test failure)
    passed: int = 0
    failed: List[Tuple[str, str]] = field(default_factory=list)   # (test, message)
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (test, reason)
    boot_s: float = 0.0                     # vng start -> guest command running
    total_s: float = 0.0
    outdir: str = ""
    summary: str = ""                       # pytest's closing line

    def report(self) -> str:
        head = (f"{self.topology}: {'ok' if self.ok else 'FAILED'}  "
                f"{self.passed} passed, {len(self.failed)} failed, {len(self.skipped)} skipped  "
                f"(boot {self.boot_s:.0f} s, total {self.total_s:.0f} s; logs in {self.outdir})")
        lines = [head]
        if self.problem:
            lines.append("  " + self.problem)
        for name, msg in self.failed:
            lines.append(f"  FAILED {name}: {msg}")
        for name, msg in self.skipped:
            lines.append(f"  skipped {name}: {msg}")
        return "\n".join(lines)


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _tail(path: str, n: int = 25) -> str:
    return "\n".join(_read(path).splitlines()[-n:])


def parse_junit(path: str, result: Result) -> None:
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        name = "%s::%s" % (case.get("classname", "").rsplit(".", 1)[-1], case.get("name"))
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        skip = case.find("skipped")
        if bad is not None:
            msg = (bad.get("message") or bad.text or "").strip().splitlines()
            result.failed.append((name, msg[0][:300] if msg else ""))
        elif skip is not None:
            result.skipped.append((name, (skip.get("message") or "").strip()[:300]))
        else:
            result.passed += 1


def run_topology(topology: str, out: str, kernel: Optional[str] = None,
                 tests: Optional[List[str]] = None, echo=None) -> Result:
    """Boot one VM, run the guest tests in it, collect the results."""
    vng, vmlinuz, release = prerequisites(kernel)
    vng_args, _ = TOPOLOGIES[topology]
    outdir = os.path.join(out, topology)
    os.makedirs(outdir, exist_ok=True)
    for stale in ("started", "rc", "junit.xml", "pytest.log"):
        if os.path.exists(os.path.join(outdir, stale)):
            os.unlink(os.path.join(outdir, stale))
    result = Result(topology, outdir=outdir)
    guest = [guest_python(), os.path.abspath(__file__), "--guest", topology, "--out", out]
    headers = save_header_values(release, out)
    if headers:
        guest += ["--headers", headers]
    for t in tests or []:
        guest += ["--test", t]
    cmd = [vng, "--run", vmlinuz, "--disable-kvm", "--cpus", "2", *vng_args,
           "--rwdir", out, "--exec", " ".join(_quote(a) for a in guest)]
    env = dict(os.environ, PATH=os.path.dirname(vng) + ":" + os.environ.get("PATH", ""))
    console = os.path.join(outdir, "console.log")
    start = time.monotonic()
    with open(console, "w") as log:
        log.write("$ " + " ".join(_quote(a) for a in cmd) + "\n")
        log.flush()
        # A pipe, not the file: vng reopens its stdout through /proc/self/fd/1,
        # which truncates a file.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                start_new_session=True)
        copier = threading.Thread(target=_copy, args=(proc.stdout, log), daemon=True)
        copier.start()
        started = os.path.join(outdir, "started")
        try:
            while proc.poll() is None:
                now = time.monotonic() - start
                if not result.boot_s and os.path.exists(started):
                    result.boot_s = now
                    if echo:
                        echo(f"{topology}: guest up after {now:.0f} s ({release})")
                if not result.boot_s and now > BOOT_TIMEOUT:
                    result.problem = f"the VM did not start the tests within {BOOT_TIMEOUT} s"
                    break
                if now > RUN_TIMEOUT:
                    result.problem = f"the VM did not finish within {RUN_TIMEOUT} s"
                    break
                time.sleep(1)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            copier.join(10)
    result.total_s = time.monotonic() - start
    if not result.boot_s and os.path.exists(os.path.join(outdir, "started")):
        result.boot_s = result.total_s
    rc_text = _read(os.path.join(outdir, "rc")).strip()
    junit = os.path.join(outdir, "junit.xml")
    if os.path.exists(junit):
        parse_junit(junit, result)
    log_text = _read(os.path.join(outdir, "pytest.log"))
    closing = [line for line in log_text.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    result.summary = closing[-1].strip("= ") if closing else ""
    if not result.problem and not rc_text:
        result.problem = ("the VM did not boot or the guest runner did not finish "
                          f"(vng exit status {proc.returncode}); console:\n" + _tail(console))
    elif not result.problem and rc_text not in ("0",) and not result.failed:
        result.problem = f"guest pytest exit status {rc_text}:\n" + _tail(
            os.path.join(outdir, "pytest.log"))
    result.ok = not result.problem and not result.failed and rc_text == "0"
    return result


def _copy(src, log) -> None:
    for chunk in iter(lambda: src.read1(65536), b""):
        log.write(chunk.decode("utf-8", "replace"))
        log.flush()


def _quote(arg: str) -> str:
    import shlex
    return shlex.quote(arg)


# -- inside the guest --------------------------------------------------------------


def guest_main(topology: str, out: str, tests: List[str], headers: Optional[str]) -> int:
    """Runs in the VM: pytest over the guest tests, results into out/<topology>/."""
    outdir = os.path.join(out, topology)
    uname = os.uname()
    with open(os.path.join(outdir, "started"), "w") as f:
        f.write(f"{uname.release} {uname.version}\n")
    for fstype, path in (("tracefs", "/sys/kernel/tracing"), ("debugfs", "/sys/kernel/debug")):
        if not os.path.ismount(path):
            subprocess.run(["mount", "-t", fstype, "nodev", path], check=False)
    _, nodes = TOPOLOGIES[topology]
    env = dict(os.environ, MFD_VM_TOPOLOGY=topology, MFD_VM_NODES=",".join(map(str, nodes)),
               PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    if headers:
        env["MFD_VM_HEADERS"] = headers
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q",
           "--durations=12",
           "--junitxml", os.path.join(outdir, "junit.xml"), *(tests or GUEST_TESTS)]
    with open(os.path.join(outdir, "pytest.log"), "w") as log:
        log.write(f"# {uname.release} {uname.version}, topology {topology}\n$ {' '.join(cmd)}\n")
        log.flush()
        rc = subprocess.run(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT).returncode
    with open(os.path.join(outdir, "rc"), "w") as f:
        f.write(f"{rc}\n")
    return rc


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--topology", default=",".join(TOPOLOGIES),
                   help="comma-separated, from: %s (default: all)" % ", ".join(TOPOLOGIES))
    p.add_argument("--out", help="results directory (default: a new one under /tmp)")
    p.add_argument("--kernel", help="guest kernel image (default: newest /boot/vmlinuz-* "
                                    "with its headers installed)")
    p.add_argument("--test", action="append", help="guest test file (repeatable; default: %s)"
                   % " ".join(GUEST_TESTS))
    p.add_argument("--guest", metavar="TOPOLOGY", help=argparse.SUPPRESS)
    p.add_argument("--headers", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.guest:
        return guest_main(args.guest, args.out, args.test, args.headers)
    topologies = [t.strip() for t in args.topology.split(",") if t.strip()]
    bad = [t for t in topologies if t not in TOPOLOGIES]
    if bad or not topologies:
        p.error(f"unknown topology {bad[0] if bad else ''!r} (valid: {', '.join(TOPOLOGIES)})")
    try:
        _, vmlinuz, release = prerequisites(args.kernel)
    except Missing as e:
        print(f"run_matrix: {e}", file=sys.stderr)
        return 2
    out = os.path.abspath(args.out or tempfile.mkdtemp(prefix="mfd-vm-"))
    os.makedirs(out, exist_ok=True)
    echo = lambda msg: print(f"run_matrix: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    echo(f"guest kernel {vmlinuz}; topologies {', '.join(topologies)}; results in {out}")
    start = time.monotonic()
    results = []
    for t in topologies:
        r = run_topology(t, out, args.kernel, args.test, echo)
        print(r.report(), flush=True)
        results.append(r)
        if r.problem and not r.boot_s:
            break       # a VM that cannot boot will not boot for the next topology either
    passed = sum(r.passed for r in results)
    failed = sum(len(r.failed) for r in results) + sum(1 for r in results if r.problem)
    skipped = sum(len(r.skipped) for r in results)
    print(f"matrix: {len(results)} boots in {time.monotonic() - start:.0f} s")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 0 if len(results) == len(topologies) and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
