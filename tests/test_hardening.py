"""A root tool among other users: outputs never written through a planted
symlink, caches trusted only when root's alone, and stdout failures at the
edges (issue: hardening).  Attacks are made for real: the symlinks are
planted by user nobody (fs.protected_symlinks is 0 here), in a sticky
world-writable directory such as /tmp."""
from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import tempfile

import pytest

import synth
from conftest import mfd_argv, needs_root, run_mfd

pytestmark = needs_root

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


def as_nobody(*argv: str) -> None:
    subprocess.run(NOBODY + list(argv), check=True, cwd="/")


@pytest.fixture
def shared_dir():
    """A directory like /tmp: root's, mode 1777."""
    d = tempfile.mkdtemp(prefix="mfd-shared-")
    os.chmod(d, 0o1777)
    yield d
    subprocess.run(["rm", "-rf", d], check=False)


@pytest.fixture
def precious(tmp_path):
    """A root-only file an attacker would like mfd to overwrite."""
    os.chmod(tmp_path, 0o700)
    p = tmp_path / "important"
    p.write_text("keep me\n")
    return str(p)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("hardening") / "good.db")
    synth.record(db, 20)
    return db


def _one_line(r):
    assert r.stderr.strip() and r.stderr.strip().count("\n") == 0, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr


# -- 1. outputs and planted symlinks ------------------------------------------------------

@pytest.mark.parametrize("flag", ["--csv", "--json", "--html", "--png"])
def test_report_output_through_a_planted_symlink_is_refused(recording, shared_dir, precious,
                                                            flag):
    if flag in ("--html", "--png"):
        pytest.importorskip("matplotlib")
    out = os.path.join(shared_dir, "r.out")
    as_nobody("ln", "-s", precious, out)
    r = run_mfd("report", recording, flag, out)
    assert r.returncode == 1
    _one_line(r)
    assert "symbolic link" in r.stderr and "--follow-symlinks" in r.stderr
    with open(precious) as f:
        assert f.read() == "keep me\n"
    assert os.path.islink(out)
    assert sorted(os.listdir(shared_dir)) == ["r.out"]     # no temporary file left


def test_report_follows_a_symlink_only_when_told(recording, tmp_path):
    target = tmp_path / "real.csv"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    r = run_mfd("report", recording, "--csv", str(link), "--follow-symlinks")
    assert r.returncode == 0, r.stderr
    assert os.path.islink(link)                               # the link stays a link
    assert target.read_text().startswith("time,timestamp,run")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640     # the file keeps its mode


def test_report_output_replaces_a_planted_file_instead_of_writing_into_it(
        recording, shared_dir):
    """A hard link or an open file descriptor of nobody's on the old name must not
    see root's output: the name is replaced, the old inode untouched."""
    out = os.path.join(shared_dir, "r.csv")
    as_nobody("sh", "-c", f"echo planted > {out}")
    before = os.stat(out)
    r = run_mfd("report", recording, "--csv", out)
    assert r.returncode == 0, r.stderr
    after = os.stat(out)
    assert after.st_ino != before.st_ino and after.st_uid == 0
    with open(out) as f:
        assert f.readline().startswith("time,")


def test_a_failed_report_leaves_the_old_output(recording, tmp_path):
    """Written beside the target and renamed: a report that fails leaves what was there."""
    out = tmp_path / "r.csv"
    out.write_text("previous\n")
    r = run_mfd("report", recording, "--csv", str(out), "--since", "2001-01-01 00:00",
                "--until", "2001-01-02 00:00")
    assert r.returncode == 1
    assert out.read_text() == "previous\n"
    assert sorted(os.listdir(tmp_path)) == ["r.csv"]


def test_html_dash_is_stdout(recording, tmp_path):
    pytest.importorskip("matplotlib")
    r = subprocess.run(mfd_argv("report", recording, "--html", "-"), capture_output=True,
                       text=True, timeout=120, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.lstrip().lower().startswith("<!doctype html")
    assert not os.path.exists(tmp_path / "-")


def test_record_refuses_a_dangling_symlink_into_a_root_only_directory(shared_dir, tmp_path):
    os.chmod(tmp_path, 0o700)
    victim = tmp_path / "created-by-root.db"
    link = os.path.join(shared_dir, "x.db")
    as_nobody("ln", "-s", str(victim), link)
    r = run_mfd("--source", "procfs", "--count", "1", "--record", link)
    assert r.returncode == 1
    _one_line(r)
    assert "symbolic link" in r.stderr
    assert not victim.exists()
    assert sorted(os.listdir(shared_dir)) == ["x.db"]       # no -wal, -shm, -journal


def test_record_refuses_a_symlink_to_an_empty_root_file(shared_dir, precious):
    open(precious, "w").close()
    link = os.path.join(shared_dir, "x.db")
    as_nobody("ln", "-s", precious, link)
    r = run_mfd("--source", "procfs", "--count", "1", "--record", link)
    assert r.returncode == 1 and "symbolic link" in r.stderr
    assert os.path.getsize(precious) == 0
    assert not any(os.path.exists(precious + s) for s in ("-wal", "-shm", "-journal"))


@pytest.mark.parametrize("path", ["/dev/null", "/dev/zero"])
def test_record_refuses_devices(path):
    strays = [path + s for s in ("-wal", "-shm", "-journal")]
    for p in strays:        # left by an mfd before the fix, if any
        if os.path.lexists(p):
            os.unlink(p)
    r = run_mfd("--source", "procfs", "--count", "1", "--record", path)
    assert r.returncode == 1
    _one_line(r)
    assert "not a regular file" in r.stderr
    assert not any(os.path.lexists(p) for p in strays)


def test_record_refuses_a_fifo_without_hanging(tmp_path):
    fifo = tmp_path / "f.db"
    os.mkfifo(fifo)
    r = run_mfd("--source", "procfs", "--count", "1", "--record", str(fifo), timeout=30)
    assert r.returncode == 1 and "not a regular file" in r.stderr


def test_a_failed_record_open_leaves_no_stray_files(tmp_path):
    """(Also true before the fix for this case; the symlink and device cases above
    are the ones that left files behind.)"""
    bad = tmp_path / "not.db"
    bad.write_text("this is not an SQLite database, and it is long enough to show it\n" * 20)
    r = run_mfd("--source", "procfs", "--count", "1", "--record", str(bad))
    assert r.returncode == 1
    _one_line(r)
    assert sorted(os.listdir(tmp_path)) == ["not.db"]


def test_record_checks_the_file_sqlite_opened_is_the_one_checked(tmp_path, monkeypatch):
    """The name swapped between mfd's check and SQLite's open (the race a planted
    symlink would win): caught by comparing the open file's identity."""
    from mfd.errors import MfdError
    from mfd.sinks import recorder as recorder_mod

    db, other = tmp_path / "r.db", tmp_path / "elsewhere.db"
    other.write_bytes(b"")
    real_connect = sqlite3.connect

    def swapping_connect(path, *a, **kw):     # the attacker's move, at the worst moment
        os.unlink(path)
        os.symlink(other, path)
        return real_connect(path, *a, **kw)

    monkeypatch.setattr(recorder_mod.sqlite3, "connect", swapping_connect)
    with pytest.raises(MfdError, match="changed while it was opened"):
        recorder_mod.Recorder(str(db), interval=1.0, note=lambda m: None)
    assert other.read_bytes() == b""


def test_record_creates_its_file_with_the_umask(tmp_path):
    db = tmp_path / "new.db"
    r = subprocess.run(["sh", "-c", 'umask 077; exec "$@"', "sh"]
                       + mfd_argv("--source", "procfs", "--count", "1", "--record", str(db)),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600


# -- 2. caches: created 0755/0644, trusted only when root's alone ----------------------------

@pytest.fixture
def btf_blob(tmp_path):
    """The running kernel's BTF, copied (the cache is keyed by its hash)."""
    src = "/sys/kernel/btf/vmlinux"
    if not os.path.exists(src):
        pytest.skip("no kernel BTF")
    dst = tmp_path / "vmlinux"
    with open(src, "rb") as f:
        dst.write_bytes(f.read())
    return str(dst)


def _in_umask_000(code: str) -> subprocess.CompletedProcess:
    # BCC_KERNEL_SOURCE is the user's word to find_header_tree: with it set, the
    # child would look at that tree, not the one the test builds.
    env = {k: v for k, v in os.environ.items() if k != "BCC_KERNEL_SOURCE"}
    return subprocess.run([sys.executable, "-c", "import os; os.umask(0)\n" + code],
                          capture_output=True, text=True, timeout=60, env=env)


def test_btf_cache_under_umask_000_is_0755_and_0644(btf_blob, tmp_path):
    cache = tmp_path / "cache" / "mfd"
    r = _in_umask_000(f"from mfd.kernel.btf import BTF\n"
                      f"b = BTF.load({btf_blob!r}, cache_dir={str(cache)!r})\n"
                      f"b.member_offset('zone', 'free_area')\n")
    assert r.returncode == 0, r.stderr
    for d in (tmp_path / "cache", cache):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o755, d
    (name,) = os.listdir(cache)
    assert stat.S_IMODE(os.stat(cache / name).st_mode) == 0o644


def _cached(btf_blob, cache):
    from mfd.kernel.btf import BTF
    b = BTF.load(btf_blob, cache_dir=str(cache))
    b.member_offset("zone", "free_area")
    (name,) = os.listdir(cache)
    return cache / name


@pytest.mark.parametrize("tamper", ["chown", "chmod", "dir", "fifo", "symlink"])
def test_a_doctored_btf_cache_is_not_trusted(btf_blob, tmp_path, tamper):
    import json

    from mfd.kernel.btf import BTF
    cache = tmp_path / "cache"
    path = _cached(btf_blob, cache)
    truth = BTF.load(btf_blob).member_offset("zone", "free_area")
    doc = json.loads(path.read_text())
    for entry in doc["answers"].values():
        if "value" in entry and isinstance(entry["value"], int):
            entry["value"] = 4242            # doctored offsets
    path.write_text(json.dumps(doc))
    if tamper == "chown":
        os.chown(path, 65534, 65534)
    elif tamper == "chmod":
        os.chmod(path, 0o666)
    elif tamper == "dir":
        os.chmod(cache, 0o777)
    elif tamper == "fifo":
        path.unlink()
        os.mkfifo(path)
    elif tamper == "symlink":
        real = tmp_path / "elsewhere.json"
        path.rename(real)
        path.symlink_to(real)
    # In a child with a timeout: a FIFO opened for reading would block forever.
    r = subprocess.run([sys.executable, "-c",
                        f"from mfd.kernel.btf import BTF\n"
                        f"b = BTF.load({btf_blob!r}, cache_dir={str(cache)!r})\n"
                        f"print(b.member_offset('zone', 'free_area'), b.cache_state)\n"
                        f"print(b.cache_problem)"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    value, state = r.stdout.split("\n")[0].split()
    assert int(value) == truth and state == "untrusted", r.stdout
    assert "not using the BTF cache" in r.stdout


def _debian_split(usr_src):
    """A Debian-style split header pair (flavour + common), as test_kheaders builds."""
    from mfd.kernel.kheaders import kernel_arch
    arch = kernel_arch()
    common = usr_src / "linux-headers-6.1.0-56-common"
    flavour = usr_src / "linux-headers-6.1.0-56-amd64"
    for rel in ("include/linux/kconfig.h", f"arch/{arch}/include/asm/x.h"):
        (common / rel).parent.mkdir(parents=True, exist_ok=True)
        (common / rel).write_text("/* common */\n")
    for rel in ("include/generated/autoconf.h", f"arch/{arch}/include/generated/y.h"):
        (flavour / rel).parent.mkdir(parents=True, exist_ok=True)
        (flavour / rel).write_text("/* flavour */\n")
    return flavour


def _find_tree(root, cache):
    """find_header_tree in a child under umask 000: (path, cache_note, kconfig.h as
    read there; a private tree is gone once the child exits)."""
    r = _in_umask_000(
        "import os\n"
        "from mfd.kernel.kheaders import find_header_tree\n"
        f"t = find_header_tree(release='9.9.9-test', cache_dir={str(cache)!r}, "
        f"usr_src={str(root / 'usr_src')!r}, modules={str(root / 'modules')!r}, "
        f"sysfs={str(root / 'sys')!r})\n"
        "print(t.path); print(t.cache_note)\n"
        "print(open(os.path.join(t.path, 'include/linux/kconfig.h')).read().strip())")
    assert r.returncode == 0, r.stderr
    return r.stdout.split("\n")[:3]


def test_header_cache_under_umask_000_is_0755(tmp_path):
    (tmp_path / "usr_src").mkdir()
    _debian_split(tmp_path / "usr_src")
    cache = tmp_path / "var_cache_mfd"
    path, cache_note, _ = _find_tree(tmp_path, cache)
    assert path.startswith(str(cache)) and cache_note == "None"
    for folder, dirs, _files in os.walk(cache):
        for d in [folder] + [os.path.join(folder, x) for x in dirs]:
            if not os.path.islink(d):
                assert stat.S_IMODE(os.stat(d).st_mode) == 0o755, d


def test_a_swapped_header_in_the_cache_is_not_compiled(tmp_path, shared_dir):
    """The attack of the issue: nobody swaps include/linux in a cache that others
    can write.  mfd must not compile from it, and still find the headers."""
    (tmp_path / "usr_src").mkdir()
    _debian_split(tmp_path / "usr_src")
    cache = os.path.join(shared_dir, "var_cache_mfd")
    joined = _find_tree(tmp_path, cache)[0]
    assert joined.startswith(cache + os.sep), joined      # never spoil a real cache
    os.chmod(os.path.join(joined, "include"), 0o777)   # as an old mfd made it under umask 000
    evil = os.path.join(shared_dir, "evil")
    as_nobody("sh", "-c", f"mkdir -p {evil}/linux && echo '#error owned' > "
                          f"{evil}/linux/kconfig.h")
    link = os.path.join(joined, "include", "linux")
    as_nobody("sh", "-c", f"rm -f {link} && ln -s {evil}/linux {link}")
    path, cache_note, kconfig = _find_tree(tmp_path, cache)
    assert not path.startswith(cache), path                 # a private tree for this run
    assert "not using the header cache" in cache_note and "writable by others" in cache_note
    assert kconfig == "/* common */"


def test_the_header_tree_is_not_left_in_the_environment():
    """BCC_KERNEL_SOURCE is set for the compile only.  Left set, every later load
    and every child took it as the user's word and skipped the trust checks on
    the cache: one test that spoilt the cache broke every load after it."""
    r = subprocess.run([sys.executable, "-c",
                        "import os\n"
                        "from mfd.sources.zonewalk import ZonewalkSource\n"
                        "s = ZonewalkSource(note=lambda m: None)\n"
                        "s.snapshot(); s.close()\n"
                        "print(os.environ.get('BCC_KERNEL_SOURCE'))"],
                       capture_output=True, text=True, timeout=120,
                       env={k: v for k, v in os.environ.items() if k != "BCC_KERNEL_SOURCE"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "None", r.stdout


def test_a_read_only_cache_does_not_say_install_headers(tmp_path):
    (tmp_path / "usr_src").mkdir()
    _debian_split(tmp_path / "usr_src")
    blocker = tmp_path / "afile"
    blocker.write_text("a file where the cache directory should be")
    path, cache_note, kconfig = _find_tree(tmp_path, blocker / "cache")
    assert kconfig == "/* common */" and "not using the header cache" in cache_note


# -- 7. the edges: stdout that fails, empty values --------------------------------------------

@pytest.mark.parametrize("argv", [
    ("-n", "--source", "procfs", "--count", "1"),
    ("--help",),
    ("--version",),
    ("report", "-h"),
    ("report", "RECORDING", "--csv", "-"),
    ("report", "RECORDING"),
])
def test_stdout_on_a_full_disk_is_one_line_and_exit_1(argv, recording):
    argv = [recording if a == "RECORDING" else a for a in argv]
    with open("/dev/full", "w") as full:
        r = subprocess.run(mfd_argv(*argv), stdout=full, stderr=subprocess.PIPE, text=True,
                           timeout=60)
    assert r.returncode == 1
    _one_line(r)
    assert "cannot write to standard output: No space left on device" in r.stderr


@pytest.mark.parametrize("argv", [("-n", "--source", "procfs", "--count", "1"),
                                  ("--source", "procfs", "--count", "1", "--record", "DB"),
                                  ("report", "RECORDING")])
def test_stdout_closed_is_one_line_and_exit_1(argv, recording, tmp_path):
    """fd 1 closed (mfd >&-): said, and nothing else opened as fd 1 (a recording
    opened there would receive the tables: OpenSSH's sanitise_stdfd)."""
    db = tmp_path / "r.db"
    argv = [recording if a == "RECORDING" else str(db) if a == "DB" else a for a in argv]
    r = subprocess.run(mfd_argv(*argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, timeout=60, preexec_fn=lambda: os.close(1))
    assert r.returncode == 1
    _one_line(r)
    assert "standard output is closed" in r.stderr
    assert not db.exists()


def test_help_into_a_closed_pipe_is_quiet():
    p = subprocess.Popen(mfd_argv("--help"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()                      # the reader is gone before mfd writes
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 0
    assert err == ""


@pytest.mark.parametrize("argv, msg", [
    (("--record", ""), "--record: an empty file name"),
    (("report", "RECORDING", "--csv", ""), "--csv: an empty file name"),
    (("report", "RECORDING", "--html", ""), "--html: an empty file name"),
    (("--follow-symlinks",), "--follow-symlinks needs --record"),
    (("report", "RECORDING", "--follow-symlinks"), "--follow-symlinks needs an output"),
    (("--record", "x.db", "--retain", "0s"), "'0s' is zero: give a duration above zero"),
    (("report", "RECORDING", "--since", "-5x"), "not a time: '-5x'"),
    (("report", "RECORDING", "--order", "11"), "--order 11: the recording has orders 0-10"),
])
def test_usage_errors_say_what_is_wrong(argv, msg, recording):
    """Empty values and flags that would do nothing are refused, and each
    message names the real problem."""
    argv = [recording if a == "RECORDING" else a for a in argv]
    r = run_mfd(*argv)
    assert r.returncode == 2
    _one_line(r)
    assert msg in r.stderr


# -- 4. strings from the kernel are data ----------------------------------------------------

def test_table_cells_escape_c0_c1_and_bidi_controls():
    from mfd.sinks.table import table
    hostile = ["\x1b]0;pwn\x07X", "x\n4242  systemd", "a\x9b31mb", "evil\u202eexe.txt"]
    out = table([[i, s] for i, s in enumerate(hostile)], ["N", "S"])
    assert out.count("\n") == len(hostile)              # one line per row, no forged row
    for c in ("\x1b", "\x07", "\x9b", "\u202e", "\r"):
        assert c not in out
    assert "\\x1b]0;pwn\\x07X" in out and "x\\n4242  systemd" in out and "\\u202e" in out


@pytest.mark.parametrize("comm", ["\x1b]0;pwn\x07X", "x\n4242  systemd"])
def test_hostile_comm_from_an_unprivileged_process_is_escaped(comm):
    """User nobody names its process with a terminal escape, or a newline and a
    forged row, and really makes pageblock steals: mfd -s prints it escaped,
    on its own row under its own pid."""
    import time

    import workloads
    p = subprocess.Popen(mfd_argv("-s", "-d", "1"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    seen, pid = [], None
    try:
        seen.append(p.stdout.readline())                # attached by the first table
        assert seen[0], p.stderr.read()
        for gib in (800, 1600, 3200):
            child = workloads.Child("--comm", comm, "page-tables", "--gib", str(gib),
                                    prefix=NOBODY)
            child.run()
            pid = str(child.pid)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                seen.append(p.stdout.readline())
                if seen[-1].split()[:1] == [pid]:
                    break
            if any(line.split()[:1] == [pid] for line in seen):
                break
    finally:
        p.send_signal(2)
        rest, err = p.communicate(timeout=20)
    text = "".join(seen) + rest
    assert p.returncode == 0, err
    rows = [line for line in text.splitlines() if line.split()[:1] == [pid]]
    assert rows, "the workload made no extfrag event"
    escaped = comm.encode("unicode_escape").decode()
    assert all(escaped in row for row in rows), rows
    assert "\x1b" not in text and "\x07" not in text
    assert not any(line.split()[:2] == ["4242", "systemd"] for line in text.splitlines())


def test_too_few_file_descriptors_names_the_cause(tmp_path):
    """SQLite alone says "unable to open database file": with one, two or three
    descriptors left, the recorder fails naming EMFILE and the limit, or works."""
    failed = 0
    for spare in (1, 2, 3):
        db = tmp_path / f"r{spare}.db"
        code = f"""
import os, resource
from mfd.sinks.recorder import Recorder
top = max(int(n) for n in os.listdir("/proc/self/fd"))
resource.setrlimit(resource.RLIMIT_NOFILE, (top + 1 + {spare}, top + 1 + {spare}))
try:
    Recorder({str(db)!r}, interval=1.0, note=print).close()
except Exception as e:
    print(e)
"""
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=60)
        if r.stdout:
            failed += 1
            assert "Too many open files (RLIMIT_NOFILE is" in r.stdout, r.stdout + r.stderr
            assert not os.path.exists(db) and not os.path.exists(f"{db}-wal")
    assert failed


def test_a_forced_pgdat_path_fails_instead_of_falling_back():
    from mfd.kernel import facts
    if facts.kallsyms_lookup(["node_data", "contig_page_data"]):
        pytest.skip("this kernel has data symbols in /proc/kallsyms: kallsyms works")
    r = run_mfd("--pgdat-path", "kallsyms", "--count", "1", "-n")
    assert r.returncode == 1
    _one_line(r)
    assert "--pgdat-path kallsyms" in r.stderr and "memcg" in r.stderr
    assert r.stdout == ""


def _memory_cgroup_v1(limit: int):
    from mfd.kernel import cgroupmem
    v1 = [top for _d, top, v2 in cgroupmem.memory_cgroup_dirs() if not v2]
    if not v1:
        pytest.skip("no cgroup v1 memory hierarchy here")
    d = os.path.join(v1[0], f"mfd-test-{os.getpid()}")
    os.mkdir(d)
    with open(os.path.join(d, "memory.limit_in_bytes"), "w") as f:
        f.write(str(limit))
    return d


def test_a_small_memory_cgroup_makes_auto_read_proc_and_say_why():
    """64 MB: BCC's compile would be OOM-killed without a word.  Real cgroup."""
    d = _memory_cgroup_v1(64 << 20)
    try:
        r = subprocess.run(["sh", "-c", f'echo $$ > {d}/cgroup.procs; exec "$@"', "sh"]
                           + mfd_argv("--count", "1", "-n"),
                           capture_output=True, text=True, timeout=60)
    finally:
        os.rmdir(d)
    assert r.returncode == 0, r.stderr
    assert "(procfs)" in r.stdout
    assert "memory cgroup lets mfd use" in r.stderr and "reading /proc instead" in r.stderr


def test_cgroup_v2_limits_are_read_up_the_hierarchy(tmp_path):
    from mfd.kernel import cgroupmem
    proc, fs = tmp_path / "proc", tmp_path / "cg"
    proc.mkdir()
    (proc / "cgroup").write_text("0::/a/b\n")
    (proc / "mountinfo").write_text(
        f"30 1 0:26 / {fs} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n")
    for rel, limit, usage in (("a", "300000000", "250000000"), ("a/b", "max", "1000")):
        (fs / rel).mkdir(parents=True)
        (fs / rel / "memory.max").write_text(limit + "\n")
        (fs / rel / "memory.current").write_text(usage + "\n")
    assert cgroupmem.headroom(str(proc)) == 50_000_000
