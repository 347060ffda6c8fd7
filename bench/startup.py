#!/usr/bin/env python3
"""Start-up: `mfd --count 1` from launch to its first table, vs the smallest BCC walker.

Baseline, measured in the same run: a new Python process that imports BCC,
compiles and loads a minimal program on the same getppid tracepoint (it reads
one free-area count through offsets passed as macros), triggers it once and
reads the map: the floor for any BCC-based walker.  Also the peak RSS of
`mfd --count 5`.  Run as root:  .venv/bin/python bench/startup.py [--runs 7]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import median  # noqa: E402

MINIMAL = r'''
import os
from bcc import BPF
prog = """
BPF_ARRAY(out, u64, 1);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    if ((bpf_get_current_pid_tgid() >> 32) != TGID) return 0;
    int zero = 0; u64 *v = out.lookup(&zero); if (!v) return 0;
    struct task_struct *t = (struct task_struct *)bpf_get_current_task();
    u64 p = 0; bpf_probe_read_kernel(&p, 8, (void *)t + OFF); *v = p; return 0;
}
"""
b = BPF(text=prog, cflags=["-DTGID=%d" % os.getpid(), "-DOFF=%d" % OFFSET])
os.getppid()
b[b"out"][0]
print("walked", flush=True)
'''


def time_to_first_output(argv, env, marker: str) -> float:
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                         text=True)
    for line in p.stdout:
        if marker in line:
            t = time.perf_counter() - t0
            break
    else:
        raise SystemExit(f"no {marker!r} from {argv}")
    p.stdout.read()
    p.wait()
    return t


def peak_rss_mb(argv, env) -> float:
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = status
    return usage.ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    from mfd.kernel.btf import BTF
    from mfd.kernel.kheaders import find_header_tree

    env = dict(os.environ)
    tree = find_header_tree()
    if tree.path:
        env["BCC_KERNEL_SOURCE"] = tree.path
    offset = BTF.load().member_offset("task_struct", "cgroups")
    minimal = [sys.executable, "-c", MINIMAL.replace("OFFSET", str(offset))]
    mfd = [sys.executable, "-m", "mfd", "--count", "1"]
    helper = mfd + ["--bpf-loader", "helper"]
    inproc = mfd + ["--bpf-loader", "inprocess"]
    base, ours, theirs = [], [], []
    for _ in range(a.runs):  # interleaved, so noise hits all alike
        base.append(time_to_first_output(minimal, env, "walked"))
        ours.append(time_to_first_output(helper, os.environ, "ORDER"))
        theirs.append(time_to_first_output(inproc, os.environ, "ORDER"))
    # ru_maxrss from wait4 covers the loader helper too: the compile's peak
    five = [sys.executable, "-m", "mfd", "--count", "5", "-d", "0.2", "--bpf-loader", "helper"]
    rss = [peak_rss_mb(five, os.environ) for _ in range(3)]
    print(f"{a.runs} runs, seconds from launch to first output (median, min-max):")
    print(f"  minimal BCC walker:                    {median(base):.3f} "
          f"({min(base):.3f}-{max(base):.3f})")
    print(f"  mfd --count 1 --bpf-loader helper:     {median(ours):.3f} "
          f"({min(ours):.3f}-{max(ours):.3f})")
    print(f"  mfd --count 1 --bpf-loader inprocess:  {median(theirs):.3f} "
          f"({min(theirs):.3f}-{max(theirs):.3f})")
    print(f"ratio helper/minimal: {median(ours) / median(base):.2f}; in-process/minimal "
          f"(what --count 1 takes by default): {median(theirs) / median(base):.2f} "
          f"(target <= 1.3; mfd target <= 1.0 s)")
    print(f"peak RSS of mfd --count 5 -d 0.2 --bpf-loader helper, the helper included: "
          f"median {median(rss):.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
