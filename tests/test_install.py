"""Installed like a system tool from a checkout (issue 10): ``sudo mfd`` on
PATH after the set-up, a set-up that is quick to re-run, ``make run`` whose
stdout is mfd's alone, ``--version`` with the commit, ``-q``, and install
hints that name a command that works.

These run the real set-up script, the real launcher it placed in
/usr/local/bin, and mfd as root and as user nobody in login shells.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess

import pytest

from conftest import mfd_argv

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCHER = "/usr/local/bin/mfd"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the set-up runs as root")


def _run(argv, **kw):
    kw.setdefault("timeout", 300)
    return subprocess.run(argv, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def set_up():
    """The README's set-up, run again: quick, and saying nothing on stdout."""
    r = _run(["scripts/setup.sh"], cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r


def test_setup_again_reinstalls_nothing_and_says_nothing_on_stdout(set_up):
    assert set_up.stdout == ""
    r = _run(["scripts/setup.sh"], cwd=ROOT)
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert "installing mfd" not in r.stderr and "apt-get" not in r.stderr, r.stderr


def test_launcher_runs_this_checkout(set_up):
    text = pathlib.Path(LAUNCHER).read_text()
    assert f"exec '{ROOT.resolve()}/.venv/bin/mfd'" in text, text
    assert os.stat(LAUNCHER).st_mode & 0o777 == 0o755


def test_sudo_mfd_from_slash_in_a_login_shell(set_up):
    """root's login shell, from /: `mfd --count 1` (eBPF source) finds the launcher."""
    r = _run(["bash", "-lc", "cd / && command -v mfd && mfd --count 1"])
    assert r.returncode == 0, r.stderr
    path, *table = r.stdout.splitlines()
    assert path == LAUNCHER
    assert any("NODE" in line for line in table), r.stdout


def test_a_normal_user_runs_mfd_from_proc(set_up):
    """User nobody's login shell: `mfd --source procfs` works without root."""
    probe = _run(["su", "nobody", "-s", "/bin/sh", "-c", f"test -r '{ROOT}/src/mfd/cli/__init__.py'"
                  f" && test -x '{ROOT}/.venv/bin/python'"])
    if probe.returncode != 0:
        pytest.skip(f"user nobody cannot read the checkout {ROOT} (its directories' modes)")
    r = _run(["su", "nobody", "-s", "/bin/bash", "-lc",
              "cd / && mfd --source procfs --count 1"])
    assert r.returncode == 0, r.stderr
    assert "NODE" in r.stdout


def test_make_run_stdout_is_mfds_alone(set_up):
    r = _run(["make", "-s", "run", "ARGS=--json --count 1 --source procfs"], cwd=ROOT)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)                  # the whole stdout is one JSON object
    assert doc["source"] == "procfs"
    r = _run(["make", "run", "ARGS=--json --count 1 --source procfs"], cwd=ROOT)
    assert r.returncode == 0 and json.loads(r.stdout)["source"] == "procfs", r.stdout[:500]


def test_version_names_the_commit_of_the_checkout():
    head = _run(["git", "-C", str(ROOT), "-c", f"safe.directory={ROOT}", "rev-parse",
                 "--short=12", "HEAD"])
    r = _run(mfd_argv("--version"))
    assert r.returncode == 0
    if head.returncode == 0:
        assert r.stdout.strip() == f"mfd 0.1.0 (git {head.stdout.strip()})"
    else:
        assert re.fullmatch(r"mfd \S+ \(git [0-9a-f]{12}\)", r.stdout.strip()), r.stdout


def test_version_reads_packed_refs_and_worktrees(tmp_path):
    from mfd.origin import commit
    git = tmp_path / ".git"
    git.mkdir()
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "packed-refs").write_text("# pack-refs with: peeled\n"
                                     "0123456789abcdef0123456789abcdef01234567 refs/heads/main\n")
    assert commit(str(tmp_path)) == "0123456789ab"
    (git / "HEAD").write_text("not a ref\n")
    assert commit(str(tmp_path)) is None


# -- -q/--quiet ---------------------------------------------------------------------

def _notes_without_q():
    r = _run(mfd_argv("--count", "1"))
    assert r.returncode == 0, r.stderr
    return r.stderr.strip().splitlines()


def test_quiet_keeps_the_notes_off_stderr_and_in_json():
    said = _notes_without_q()
    if not said:
        pytest.skip("this kernel takes no fallback: no note to silence")
    r = _run(mfd_argv("-q", "--count", "1"))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = _run(mfd_argv("-q", "--json", "--count", "1"))
    assert r.returncode == 0 and r.stderr == ""
    notes = json.loads(r.stdout)["notes"]
    assert [f"mfd: {n}" for n in notes] == said


def test_quiet_still_prints_errors(tmp_path):
    for argv in (("-q", "report", str(tmp_path / "none.db")),
                 ("report", "-q", str(tmp_path / "none.db")),
                 ("-q", "--source", "bpf", "--pgdat-path", "kallsyms", "--count", "1")):
        r = _run(mfd_argv(*argv))
        assert r.returncode in (1, 2) and r.stderr.startswith("mfd: "), (argv, r.stderr)


def test_quiet_report_says_no_wrote(tmp_path):
    import synth
    db = str(tmp_path / "r.db")
    synth.record(db, 3)
    r = _run(mfd_argv("report", db, "-q", "--html", str(tmp_path / "r.html")))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = _run(mfd_argv("report", db, "--html", str(tmp_path / "r2.html")))
    assert r.returncode == 0 and "wrote" in r.stderr


# -- honest hints ---------------------------------------------------------------------

def test_no_hint_names_a_pip_package_of_mfd():
    """mfd is not on PyPI: no message may say pip install 'mfd...'."""
    for path in (ROOT / "src" / "mfd").rglob("*.py"):
        assert not re.search(r"pip install '?mfd", path.read_text()), path


@pytest.mark.parametrize("here,kind", [
    ("/usr/lib/python3/dist-packages/mfd", "deb"),
    ("/usr/lib/python3.12/site-packages/mfd", "rpm"),
    ("/usr/lib64/python3.9/site-packages/mfd", "rpm"),
    ("/opt/venv/lib/python3.11/site-packages/mfd", "pip"),
])
def test_install_kind(here, kind):
    from mfd import origin
    assert origin.kind(here) == kind


def test_this_checkout_is_a_checkout_and_hints_apt():
    from mfd import origin
    assert origin.kind() == "checkout" and origin.checkout() == str(ROOT)
    assert origin.install_hint("python3-matplotlib", "python3-matplotlib",
                               "matplotlib") == "apt install python3-matplotlib"
