"""The command line as users type it: seed-compatible flags, exit codes, clean endings."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, mfd_argv, needs_root, run_mfd
from mfd.cli import build_parser, main

# -- argument validation (no kernel needed: these fail before any collector) --


@pytest.mark.parametrize("args,msg", [
    (["-d", "0"], "positive number"),
    (["-d", "-1"], "positive number"),
    (["-d", "abc"], "not a number"),
    (["-d", "nan"], "positive number"),
    (["-d", "inf"], "positive number"),
    (["--count", "0"], "positive integer"),
    (["--count", "1.5"], "not an integer"),
    (["-i", "x"], "integer"),
    (["-i", "-1"], ">= 0"),
    (["--source", "magic"], "invalid choice"),
    (["--no-such-flag"], "unrecognized"),
])
def test_usage_errors_exit_2_with_one_line(args, msg):
    r = run_mfd(*args)
    assert r.returncode == 2
    assert msg in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") <= 1  # usage line + message at most


def test_help_has_examples():
    r = run_mfd("-h")
    assert r.returncode == 0
    assert "examples:" in r.stdout and "sudo mfd -d 2 -i 1" in r.stdout
    for flag in ("-d", "-n", "-i", "-c", "-z", "-e", "-u", "-b", "-s", "-v", "--count", "--json"):
        assert re.search(r"(^|\s)%s[ ,]" % re.escape(flag), r.stdout), flag


def test_main_returns_int_for_help_and_errors(capsys):
    assert main(["--version"]) == 0
    assert main(["-d", "0"]) == 2


def test_parser_defaults_match_seed():
    args = build_parser().parse_args([])
    assert args.interval == 2.0 and args.count is None and args.source == "auto"


# -- the procfs source: works without root -----------------------------------


def _blocks(text):
    return [b for b in text.strip().split("\n\n") if b.strip()]


def test_procfs_one_sample_table():
    r = run_mfd("--source", "procfs", "--count", "1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  \(procfs\)", lines[0])
    assert lines[1].split() == ["NODE", "ZONE", "ORDER", "NR_FREE", "TOTAL", "SUITABLE",
                                "FREE", "EXTFRAG", "UNUSABLE"]
    assert max(len(line) for line in lines) <= 80


def test_procfs_json_is_one_object_per_sample():
    r = run_mfd("--source", "procfs", "--count", "2", "-d", "0.1", "--json")
    assert r.returncode == 0, r.stderr
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(objs) == 2
    z = objs[0]["nodes"][0]["zones"][0]
    assert len(z["nr_free"]) == objs[0]["nr_orders"] == len(z["extfrag_index"])
    assert objs[0]["source"] == "procfs"


# -- the real thing: root, eBPF -----------------------------------------------


@needs_root
def test_default_run_uses_bpf_and_prints_every_zone():
    r = run_mfd("--count", "1")
    assert r.returncode == 0, r.stderr
    assert "(bpf, pgdat via" in r.stdout
    with open("/proc/buddyinfo") as f:
        zones = {line.split()[3] for line in f}
    rows = [line.split() for line in r.stdout.splitlines()[2:]]
    assert {row[1] for row in rows if len(row) == 9} == zones
    assert "Traceback" not in r.stderr


@needs_root
def test_node_table():
    r = run_mfd("-n", "--count", "1")
    assert r.returncode == 0, r.stderr
    header = r.stdout.splitlines()[1].split()
    assert header[:3] == ["NODE", "NR_ZONES", "START_PFN"]
    assert "PGDAT" not in header  # stdout is a pipe: no kernel address


@needs_root
def test_interval_and_node_filter():
    r = run_mfd("-d", "0.3", "-i", "0", "--count", "2")
    assert r.returncode == 0, r.stderr
    blocks = _blocks(r.stdout)
    assert len(blocks) == 2
    for b in blocks:
        rows = [line.split() for line in b.splitlines()[2:]]
        assert all(row[0] == "0" for row in rows if len(row) == 9)


@needs_root
@pytest.mark.parametrize("name", ["Normal", "normal", "NORMAL"])
def test_zone_filter_any_case(name):
    r = run_mfd("-c", name, "--count", "1")
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()[2:]]
    assert {row[1] for row in rows if len(row) == 9} == {"Normal"}


@needs_root
def test_empty_zone_shown_as_empty():
    with open("/proc/zoneinfo") as f:
        text = f.read()
    if "zone  Movable" not in text:
        pytest.skip("no Movable zone here")
    r = run_mfd("-c", "Movable", "--count", "1")
    assert r.returncode == 0, r.stderr
    assert "empty" in r.stdout


@needs_root
def test_detail_and_single_index_and_bar():
    r = run_mfd("-z", "-c", "dma32", "--count", "1")
    header = r.stdout.splitlines()[1].split()
    assert header[:6] == ["NODE", "ZONE", "ZONE_PFN", "SPANNED", "PRESENT", "MANAGED"]
    r = run_mfd("-e", "--count", "1")
    header = r.stdout.splitlines()[1].split()
    assert "EXTFRAG" in header and "UNUSABLE" not in header
    r = run_mfd("-u", "-b", "--count", "1")
    header = r.stdout.splitlines()[1].split()
    assert header[-2:] == ["UNUSABLE", "BAR"] and "EXTFRAG" not in header


@needs_root
def test_unknown_node_and_zone_list_the_valid_ones():
    r = run_mfd("-i", "99", "--count", "1")
    assert r.returncode == 2 and "no node 99 (nodes: 0" in r.stderr
    r = run_mfd("-c", "Bogus", "--count", "1")
    assert r.returncode == 2 and "no zone 'Bogus' (zones: " in r.stderr and "Normal" in r.stderr
    assert "Traceback" not in r.stderr


@needs_root
def test_json_from_bpf_has_no_kernel_address():
    r = run_mfd("--json", "--count", "1")
    obj = json.loads(r.stdout)
    assert obj["source"] == "bpf" and obj["pgdat_path"] in ("kallsyms", "memcg")
    assert "0xffff" not in r.stdout and "pgdat\"" not in r.stdout


def _as_nobody():
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


@needs_root
def test_not_root_bpf_says_sudo_and_auto_falls_back():
    r = subprocess.run(_as_nobody() + mfd_argv("--source", "bpf", "--count", "1"),
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "sudo" in r.stderr
    r = subprocess.run(_as_nobody() + mfd_argv("--count", "1"),
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0 and "(procfs)" in r.stdout
    assert "sudo" in r.stderr and "Traceback" not in r.stderr


@needs_root
def test_bcc_missing_names_the_packages(tmp_path):
    fake = tmp_path / "bcc"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('No module named bcc')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    r = run_mfd("--source", "bpf", "--count", "1", env=env)
    assert r.returncode == 1
    # The command for the way this mfd was installed (a checkout on an apt
    # machine: the distro's package), never pip: BCC is not on PyPI.
    from mfd.origin import install_hint
    assert install_hint("python3-bpfcc", "python3-bcc") in r.stderr and "pip" not in r.stderr
    r = run_mfd("--count", "1", env=env)
    assert r.returncode == 0 and "(procfs)" in r.stdout and "falling back" in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signals_end_quietly(sig):
    source = [] if ROOT else ["--source", "procfs"]
    p = subprocess.Popen(mfd_argv("-d", "0.2", *source), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    # wait for the first block, so the signal lands in the sampling loop
    first = p.stdout.readline()
    assert first, p.stderr.read()
    time.sleep(0.3)
    p.send_signal(sig)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert "Traceback" not in err


def test_closed_pipe_ends_quietly():
    source = "" if ROOT else "--source procfs"
    r = subprocess.run(["bash", "-c", "set -o pipefail; %s -d 0.1 %s | head -3"
                        % (" ".join(mfd_argv()), source)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 3
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr


@needs_root
def test_ebpf_flag_prints_program_and_offsets():
    r = run_mfd("--ebpf")
    assert r.returncode == 0
    assert "TRACEPOINT_PROBE(syscalls, sys_enter_getppid)" in r.stdout
    assert "-DMFD_OFF_zone_free_area=" in r.stdout


@needs_root
def test_pgdat_address_only_on_a_root_terminal():
    """The seed's PGDAT column: shown on a root tty (via script(1)), never into a pipe."""
    import shlex
    import shutil
    if not shutil.which("script"):
        pytest.skip("script(1) not installed")
    cmd = " ".join(shlex.quote(a) for a in mfd_argv("-n", "--count", "1"))
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PGDAT" in r.stdout and re.search(r"0xffff[0-9a-f]{12}", r.stdout)


# -- commands and modes (one pipeline, issue 8) -------------------------------------


def test_help_lists_the_commands():
    r = run_mfd("-h")
    assert "commands:" in r.stdout
    for line in ("report FILE.db", "serve [--listen HOST:PORT]"):
        assert line in r.stdout


@pytest.mark.parametrize("args,msg", [
    (["reprot", "x.db"], "did you mean report?"),
    (["srve"], "did you mean serve?"),
    (["nonsense"], "unknown command 'nonsense'"),
    (["-n", "report", "x.db"], "-n before 'report' is a monitor option"),
])
def test_commands_misspelt_or_misplaced(args, msg):
    r = run_mfd(*args)
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1


@pytest.mark.parametrize("args,flag", [
    (["-n", "-z"], "-z does nothing with -n"),
    (["-n", "-c", "dma32"], "-c does nothing with -n"),
    (["-n", "-b"], "-b does nothing with -n"),
    (["-s", "-n"], "-n does nothing with -s"),
    (["-s", "-z"], "-z does nothing with -s"),
    (["-s", "-c", "Normal"], "-c does nothing with -s alone"),
    (["-v", "-n"], "-n does nothing with -v"),
    (["-v", "-b"], "-b does nothing with -v"),
    (["--json", "-z"], "-z does nothing with --json"),
    (["--json", "-n"], "-n does nothing with --json"),
    (["--alloc-probe", "kprobe"], "--alloc-probe does nothing without the alloc group"),
    (["--source", "procfs", "--pgdat-path", "memcg"], "--pgdat-path does nothing"),
    (["--prometheus", "9", "-d", "5"], "does not go with --count, -d"),
])
def test_flags_that_do_nothing_are_refused(args, flag):
    r = run_mfd("--source", "procfs", "--count", "1", *args)
    assert r.returncode == 2, r.stdout
    assert flag in r.stderr and r.stderr.count("\n") == 1 and not r.stdout


def test_modes_that_do_something_still_run():
    for args in (["-n", "-i", "0"], ["-z", "-c", "normal"], ["-u", "-b"], ["-e", "-u"],
                 ["--json", "-c", "Normal"]):
        r = run_mfd("--source", "procfs", "--count", "1", *args)
        assert r.returncode == 0, (args, r.stderr)


def test_serve_is_a_command(tmp_path):
    r = run_mfd("serve", "--listen", "nonsense")
    assert r.returncode == 2 and "--listen wants [HOST:]PORT" in r.stderr
    r = run_mfd("serve", "-h")
    assert r.returncode == 0 and "--listen" in r.stdout and "127.0.0.1:9610" in r.stdout


@pytest.mark.parametrize("args", [["--by", "cgroup", "--count", "1"],
                                  ["-s", "--by", "cgroup", "--json", "--count", "1"],
                                  ["--prometheus", "19999", "--by", "cgroup"],
                                  ["-s", "--by", "pod"]])
def test_by_cgroup_where_it_does_nothing_is_a_usage_error(args):
    r = run_mfd(*args)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
