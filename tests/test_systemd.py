"""The systemd units in contrib/systemd: checked by systemd itself, and their
command lines run through mfd's real parser with the defaults they ship.

systemd is not PID 1 here, so no unit is started.  ``systemd-analyze verify``
runs against a scratch root (``--root``) holding the units, a copy of the
distribution's unit directory (for sysinit.target and the tracefs mount) and
an executable at /usr/bin/mfd (verify checks that ExecStart's binary exists);
``--man=no`` because mfd.8 is not installed here.  What the sandbox would do
to mfd is approximated with what can run without PID 1: the capability
bounding set with setpriv, MemoryDenyWriteExecute= with strace.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT, needs_root

HERE = os.path.dirname(os.path.abspath(__file__))
UNITS = os.path.join(HERE, "..", "contrib", "systemd")
NAMES = ("mfd-exporter.service", "mfd-record.service")
ENV_FILE = os.path.join(UNITS, "mfd.default")
MFD = os.path.join(os.path.dirname(sys.executable), "mfd")
# systemd-analyze security --offline=yes, systemd 252 (measured: 2.7 and 2.0).
EXPOSURE_MAX = {"mfd-exporter.service": 3.0, "mfd-record.service": 2.5}

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="needs systemd-analyze (package systemd)")


def service_settings(name: str) -> dict:
    """[Service] key -> list of values, in order (repeated keys accumulate)."""
    out: dict = {}
    section = None
    with open(os.path.join(UNITS, name)) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            key, _, value = line.partition("=")
            if section == "Service":
                out.setdefault(key, []).append(value)
    return out


def unit_defaults(name: str) -> dict:
    env = {}
    for value in service_settings(name).get("Environment", []):
        key, _, val = value.partition("=")
        env[key] = val
    return env


def env_file_defaults() -> dict:
    """The commented-out VAR=value lines of the environment file."""
    env = {}
    with open(ENV_FILE) as f:
        for line in f:
            m = re.match(r"#([A-Z_]+)=(.*)$", line.rstrip("\n"))
            if m:
                env[m.group(1)] = m.group(2)
    return env


def expand(cmdline: str, env: dict) -> list:
    """ExecStart= as systemd expands it: ${VAR} is one word, $VAR is split at
    white space (an empty one is no word at all)."""
    words = []
    for word in shlex.split(cmdline):
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if m:
            words.extend(env[m.group(1)].split())
            continue
        words.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env[m.group(1)], word))
    return words


def command(name: str, env: dict = None) -> list:
    """The unit's ExecStart with its defaults, run with this checkout's mfd."""
    argv = expand(service_settings(name)["ExecStart"][0], env or unit_defaults(name))
    assert argv[0] == "/usr/bin/mfd"
    return [MFD] + argv[1:]


def bounding_set(name: str) -> str:
    caps = " ".join(service_settings(name)["CapabilityBoundingSet"]).split()
    return ",".join(["-all"] + ["+" + c[len("CAP_"):].lower() for c in caps])


@pytest.fixture(scope="module")
def vroot(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    os.makedirs(root / "usr/bin")
    shutil.copy(MFD, root / "usr/bin/mfd")
    os.makedirs(root / "usr/lib/systemd")
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    os.makedirs(root / "etc/systemd/system")
    for name in NAMES:
        shutil.copy(os.path.join(UNITS, name), root / "etc/systemd/system" / name)
    return str(root)


@needs_analyze
def test_verify_is_clean(vroot):
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={vroot}", *NAMES],
                       capture_output=True, text=True, timeout=60)
    # An unknown or misspelt key is only a warning on stderr (exit 0).
    assert r.returncode == 0 and r.stderr == "", r.stderr


@needs_analyze
@pytest.mark.parametrize("name", NAMES)
def test_exposure(vroot, name):
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", f"--root={vroot}",
                        "--no-pager", name], capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    score = float(m.group(1))
    print(f"{name}: exposure {score}")
    assert score <= EXPOSURE_MAX[name]


def test_env_file_documents_the_unit_defaults():
    """Each variable the units use is in the environment file, with the
    unit's default; the units work without the file (Environment= lines)."""
    documented = env_file_defaults()
    for name in NAMES:
        cmd = service_settings(name)["ExecStart"][0]
        used = set(re.findall(r"\$\{?([A-Z_]+)\}?", cmd))
        defaults = unit_defaults(name)
        assert used == set(defaults), name
        for var in used:
            assert documented[var] == defaults[var], var
        files = service_settings(name)["EnvironmentFile"]
        assert files == ["-/etc/default/mfd", "-/etc/sysconfig/mfd"]


def test_hardening_settings():
    for name in NAMES:
        s = service_settings(name)
        for key, want in (("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                          ("PrivateTmp", "yes"), ("NoNewPrivileges", "yes"),
                          ("Restart", "on-failure"), ("Type", "simple"),
                          ("CacheDirectoryMode", "0755")):
            assert s[key] == [want], (name, key)
        assert "User" not in s and "AmbientCapabilities" not in s
        assert "CAP_SYS_ADMIN" not in s["CapabilityBoundingSet"][0]
    assert service_settings("mfd-record.service")["RestrictAddressFamilies"] == ["AF_UNIX"]
    assert service_settings("mfd-record.service")["StateDirectory"] == ["mfd"]


def test_cache_mode_is_trusted(tmp_path):
    """A directory made as systemd makes CacheDirectory= (root's, the unit's
    mode) is one mfd trusts for its BTF and header caches."""
    from mfd.safefs import untrusted_reason
    mode = int(service_settings("mfd-exporter.service")["CacheDirectoryMode"][0], 8)
    os.chmod(tmp_path, 0o755)
    d = tmp_path / "mfd"
    d.mkdir()
    os.chmod(d, mode)
    assert untrusted_reason(str(d), leaf_is_dir=True) is None
    os.chmod(d, mode | 0o020)
    assert untrusted_reason(str(d), leaf_is_dir=True) is not None


def _record(tmp_path, extra, env=None, wrap=()):
    db = str(tmp_path / "mfd.db")
    argv = [db if a == "/var/lib/mfd/mfd.db" else a
            for a in command("mfd-record.service", env)] + list(extra)
    assert db in argv
    r = subprocess.run(list(wrap) + argv, capture_output=True, text=True, timeout=120)
    return r, db


def _samples(db):
    with sqlite3.connect(db) as con:
        return con.execute("SELECT count(*) FROM sample").fetchone()[0], \
            con.execute("SELECT source FROM run").fetchone()[0]


def test_recorder_command_line(tmp_path):
    """The recorder's ExecStart with its defaults (and the env file's, the
    same) is a valid mfd command line that writes the database."""
    assert expand(service_settings("mfd-record.service")["ExecStart"][0],
                  unit_defaults("mfd-record.service"))[1:] == \
        ["--record", "/var/lib/mfd/mfd.db", "--retain", "7d", "-d", "10"]
    r, db = _record(tmp_path, ["--count", "1", "--source", "procfs"])
    assert r.returncode == 0, r.stderr
    assert _samples(db) == (1, "procfs")
    # mfd prints a table per sample: the unit must send stdout nowhere, or
    # the journal fills with tables.
    quiet = service_settings("mfd-record.service").get("StandardOutput") == ["null"]
    assert r.stdout == "" or quiet, r.stdout[:200]


def test_recorder_args_are_split(tmp_path):
    """$MFD_RECORD_ARGS is split into words: two options work."""
    env = dict(unit_defaults("mfd-record.service"), MFD_RECORD_ARGS="--count 1 -q",
               MFD_RECORD_INTERVAL="0.5", MFD_RECORD_RETAIN="12h")
    r, db = _record(tmp_path, ["--source", "procfs"], env)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert _samples(db)[0] == 1


def test_recorder_bad_value_is_a_usage_error(tmp_path):
    """A bad MFD_RECORD_RETAIN exits 2, which the unit does not restart on."""
    env = dict(unit_defaults("mfd-record.service"), MFD_RECORD_RETAIN="soon")
    r, _ = _record(tmp_path, ["--count", "1", "--source", "procfs"], env)
    assert r.returncode == 2
    assert service_settings("mfd-record.service")["RestartPreventExitStatus"] == ["2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(env, wrap=()):
    """Run the exporter's command line, scrape it once, stop it (SIGTERM)."""
    port = int(env["MFD_EXPORTER_LISTEN"].rsplit(":", 1)[1])
    p = subprocess.Popen(list(wrap) + command("mfd-exporter.service", env),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as u:
                    body = u.read().decode()
                break
            except OSError:
                if p.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(p.communicate()[1])
                time.sleep(0.1)
    finally:
        p.terminate()
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    return body


def test_exporter_command_line():
    """The exporter's ExecStart, its default 127.0.0.1 with another port
    (9610 may be taken here) and --source procfs through MFD_EXPORTER_ARGS."""
    assert expand(service_settings("mfd-exporter.service")["ExecStart"][0],
                  unit_defaults("mfd-exporter.service"))[1:] == \
        ["serve", "--listen", "127.0.0.1:9610"]
    env = dict(unit_defaults("mfd-exporter.service"),
               MFD_EXPORTER_LISTEN=f"127.0.0.1:{_free_port()}",
               MFD_EXPORTER_ARGS="--source procfs -q")
    body = _serve(env)
    assert 'source="procfs"' in body and "mfd_zone_free_blocks{" in body


def _bcc():
    try:
        import bcc  # noqa: F401
    except ImportError:
        pytest.skip("needs BCC (python3-bpfcc)")


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_bounding_set_suffices_for_bpf(tmp_path):
    """Root cut down to the units' CapabilityBoundingSet loads the eBPF walker
    and every event group (the recorder), and serves from eBPF (the exporter)."""
    _bcc()
    caps = bounding_set("mfd-record.service")
    r, db = _record(tmp_path, ["--count", "1", "--source", "bpf", "--events", "all"],
                    wrap=["setpriv", f"--bounding-set={caps}"])
    assert r.returncode == 0, r.stderr
    assert _samples(db) == (1, "bpf")
    # The set is not larger than needed for this: without CAP_PERFMON it fails.
    less = caps.replace(",+perfmon", "")
    r, _ = _record(tmp_path, ["--count", "1", "--source", "bpf"],
                   wrap=["setpriv", f"--bounding-set={less}"])
    assert r.returncode != 0
    env = dict(unit_defaults("mfd-exporter.service"),
               MFD_EXPORTER_LISTEN=f"127.0.0.1:{_free_port()}", MFD_EXPORTER_ARGS="--source bpf")
    body = _serve(env, wrap=["setpriv",
                             f"--bounding-set={bounding_set('mfd-exporter.service')}"])
    assert 'source="bpf"' in body


@needs_root
@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_bcc_compile_needs_no_writable_executable_memory(tmp_path):
    """MemoryDenyWriteExecute=yes (systemd 252: a seccomp filter) refuses
    mmap with PROT_WRITE|PROT_EXEC and any mprotect adding PROT_EXEC.  BCC's
    compile of every program does neither."""
    _bcc()
    assert service_settings("mfd-record.service")["MemoryDenyWriteExecute"] == ["yes"]
    trace = str(tmp_path / "trace")
    r, _ = _record(tmp_path, ["--count", "1", "--source", "bpf", "--events", "all"],
                   wrap=["strace", "-f", "-qq", "-o", trace,
                         "-e", "trace=mmap,mprotect,pkey_mprotect,shmat"])
    assert r.returncode == 0, r.stderr
    with open(trace) as f:
        calls = f.read()
    assert "mmap(" in calls       # the trace did record
    bad = [line for line in calls.splitlines()
           if ("mprotect(" in line and "PROT_EXEC" in line)
           or ("PROT_WRITE|PROT_EXEC" in line or "PROT_EXEC|PROT_WRITE" in line)
           or "SHM_EXEC" in line]
    assert bad == []
