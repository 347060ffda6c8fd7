"""The Debian package (make deb) and what scripts/gen_docs.py generates for it.

gen_docs: the man page has its sections and every long option of every
parser, so it cannot drift from the code; the bash completion completes the
commands and every option's choices, driven through bash itself.

The package, as root on Debian: make deb builds it (once per module), lintian
finds no error or warning, apt installs it, the installed /usr/bin/mfd runs
from / (procfs, and eBPF from a login shell), man finds mfd(8), bash completes
"mfd rep" from the installed script, the checkout's venv still imports its own
mfd, and apt purge leaves nothing the package listed, nor /var/cache/mfd.  The
machine is restored whatever happens: a finalizer purges the package.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys

import pytest

from mfd import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEM_PYTHON = "/usr/bin/python3"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"


def parsers():
    """mfd's real parsers, by the name the man page gives their section."""
    out = {"mfd": cli.build_parser()}
    for name in cli.COMMANDS:
        out[f"mfd {name}"] = cli.command(name).build_parser()
    return out


def long_options(parser: argparse.ArgumentParser):
    # --help is the one argparse-manpage leaves out (by design: it is a man page).
    return [s for a in parser._actions if a.help != argparse.SUPPRESS
            for s in a.option_strings if s.startswith("--") and s != "--help"]


def run(argv, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("timeout", 120)
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def complete(script: str, words, setup: str = "") -> list:
    """COMPREPLY of mfd's bash completion (``script``) for the command line
    ``words``, the last being the word under the cursor."""
    quoted = " ".join("'%s'" % w for w in words)
    body = f"""
source {BASH_COMPLETION}
{setup or 'source ' + script}
fn=$(complete -p mfd | sed -n 's/.* -F \\([^ ]*\\) .*/\\1/p')
[ -n "$fn" ] || {{ echo "no completion registered for mfd" >&2; exit 3; }}
COMP_WORDS=({quoted}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"; COMP_POINT=${{#COMP_LINE}}
"$fn" mfd "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    p = run(["bash", "--norc", "--noprofile", "-c", body], cwd="/")
    assert p.returncode == 0, p.stderr
    return [w for w in p.stdout.split("\n") if w]


# -- scripts/gen_docs.py ----------------------------------------------------------


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    """OUTDIR of gen_docs.py run as the package build runs it: Debian's python3."""
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip("no /usr/bin/python3")
    out = tmp_path_factory.mktemp("docs")
    p = run([SYSTEM_PYTHON, os.path.join(REPO, "scripts", "gen_docs.py"), str(out)],
            env={"PATH": SYSTEM_PATH, "PYTHONPATH": os.path.join(REPO, "src")})
    if p.returncode != 0 and "No module named" in p.stderr:
        pytest.skip(f"gen_docs.py needs python3-argparse-manpage and python3-shtab: {p.stderr}")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    return out


def test_man_page_sections(docs):
    page = (docs / "mfd.8").read_text()
    assert page.startswith(".TH MFD 8 ")
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", '"MFD REPORT"',
                    '"MFD SERVE"', "EXAMPLES", '"EXIT STATUS"', "FILES", "SECURITY",
                    '"SEE ALSO"'):
        assert f"\n.SH {heading}\n" in page, heading
    for path in ("/var/cache/mfd", "/var/lib/mfd/mfd.db", "/etc/default/mfd"):
        assert path.replace("-", "\\-") in page


def test_man_page_has_every_option(docs):
    """Every long option of every parser, in the section of its command."""
    page = (docs / "mfd.8").read_text()
    sections = {"mfd": page[:page.index('\n.SH "MFD REPORT"')]}
    for name in cli.COMMANDS:
        start = page.index(f'\n.SH "MFD {name.upper()}"')
        sections[f"mfd {name}"] = page[start:page.index("\n.SH ", start + 1)]
    for prog, parser in parsers().items():
        for opt in long_options(parser):
            assert f"\\fB{opt.replace('-', chr(92) + '-')}" in sections[prog], (prog, opt)


def test_man_page_renders_without_warnings(docs):
    if not shutil.which("man"):
        pytest.skip("man-db not installed")
    p = run(["man", "--warnings", "-l", str(docs / "mfd.8")], env={
        "PATH": SYSTEM_PATH, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "", "LANG": "C.UTF-8"})
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert "mfd serve --listen [::1]:9610" in p.stdout     # an example, as typed


def test_bash_completion_lists_commands_and_choices(docs):
    text = (docs / "mfd.bash").read_text()
    assert "'report' 'serve'" in text
    for parser in parsers().values():
        for action in parser._actions:
            if action.choices and action.option_strings:
                assert "('%s')" % "' '".join(action.choices) in text, action.option_strings


@pytest.mark.parametrize("words,expect", [
    (["mfd", "rep"], ["report"]),
    (["mfd", "-d", "1", "se"], ["serve"]),
    (["mfd", "--source", ""], ["auto", "bpf", "procfs"]),
    (["mfd", "--pgdat-path", "k"], ["kallsyms"]),
    (["mfd", "--alloc-probe", ""], ["auto", "kprobe", "tracepoint"]),
    (["mfd", "--events", "extfrag,co"], ["extfrag,compaction"]),
    (["mfd", "serve", "--source", "p"], ["procfs"]),
    (["mfd", "report", "f.db", "--ht"], ["--html"]),
])
def test_bash_completion_completes(docs, words, expect):
    if not os.path.exists(BASH_COMPLETION):
        pytest.skip("bash-completion not installed")
    assert complete(str(docs / "mfd.bash"), words) == expect


# -- the Debian package --------------------------------------------------------


def _installed(pkg: str = "mfd") -> bool:
    p = run(["dpkg-query", "-W", "-f", "${db:Status-Status}", pkg])
    return p.returncode == 0 and p.stdout == "installed"


def _purge():
    return run(["apt-get", "purge", "-y", "mfd"], env={"PATH": SYSTEM_PATH,
                                                         "DEBIAN_FRONTEND": "noninteractive"})


@pytest.fixture(scope="module")
def deb():
    """dist/mfd_*_all.deb, built once by make deb."""
    if os.geteuid() != 0:
        pytest.skip("needs root (installs the package)")
    for tool in ("dpkg-buildpackage", "dh", "lintian", "apt-get"):
        if not shutil.which(tool, path=SYSTEM_PATH):
            pytest.skip(f"{tool} not installed (scripts/setup.sh --test installs it)")
    if _installed():
        pytest.skip("a package mfd is installed already: not replacing it")
    for old in glob.glob(os.path.join(REPO, "dist", "mfd_*_all.deb")):
        os.unlink(old)
    p = run(["make", "-C", REPO, "deb"], timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    debs = glob.glob(os.path.join(REPO, "dist", "mfd_*_all.deb"))
    assert len(debs) == 1, debs
    # The build ran in a copy: nothing of it in the checkout.
    for left in ("debian/mfd", "debian/generated", ".pybuild", "debian/files"):
        assert not os.path.exists(os.path.join(REPO, left)), left
    return debs[0]


@pytest.fixture(scope="module")
def installed(deb):
    """The package installed; dpkg -L's list.  Purged at the end, whatever happened."""
    cache_existed = os.path.isdir("/var/cache/mfd")
    # No recommends: linux-headers-* would be downloaded, and the test is
    # about the package, not the headers (the running kernel's are found anyway).
    p = run(["apt-get", "install", "-y", "--no-install-recommends", deb],
            env={"PATH": SYSTEM_PATH, "DEBIAN_FRONTEND": "noninteractive"}, timeout=300)
    try:
        assert p.returncode == 0, p.stdout + p.stderr
        files = run(["dpkg", "-L", "mfd"]).stdout.split("\n")
        yield {"files": [f for f in files if f.startswith("/")], "cache_existed": cache_existed}
    finally:
        if _installed() or run(["dpkg", "-s", "mfd"]).returncode == 0:
            _purge()


def test_lintian_clean(deb):
    p = run(["lintian", "--fail-on", "error,warning", deb], env={"PATH": SYSTEM_PATH})
    tags = [line for line in p.stdout.split("\n") if line[:2] in ("E:", "W:")]
    assert p.returncode == 0 and not tags, p.stdout + p.stderr


def test_contents(installed):
    files = set(installed["files"])
    for path in ("/usr/bin/mfd", "/usr/share/man/man8/mfd.8.gz",
                 "/usr/share/bash-completion/completions/mfd",
                 "/usr/share/zsh/vendor-completions/_mfd", "/etc/default/mfd",
                 "/lib/systemd/system/mfd-exporter.service",
                 "/lib/systemd/system/mfd-record.service",
                 "/usr/lib/python3/dist-packages/mfd/bpf/mfd.h",
                 "/usr/lib/python3/dist-packages/mfd/bpf/zonewalk.bpf.c"):
        assert path in files, path
    # Every module of the checkout is in the package: pyproject lists the
    # packages by name, and one left out (mfd.diagnose once) breaks a command.
    src = os.path.join(os.path.dirname(__file__), "..", "src", "mfd")
    for folder, _dirs, names in os.walk(src):
        for name in names:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, name), src)
                assert f"/usr/lib/python3/dist-packages/mfd/{rel}" in files, rel
    # Installed, not enabled: the exporter must not listen after a mere install.
    assert not glob.glob("/etc/systemd/system/*/mfd-*.service")


def test_installed_mfd_runs_from_root_dir(installed):
    p = run([SYSTEM_PYTHON, "-c", "import mfd; print(mfd.__file__)"], cwd="/",
            env={"PATH": SYSTEM_PATH})
    assert p.stdout.strip() == "/usr/lib/python3/dist-packages/mfd/__init__.py", p
    p = run(["/usr/bin/mfd", "--source", "procfs", "--count", "1"], cwd="/",
            env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"})
    assert p.returncode == 0, p.stderr
    assert "(procfs" in p.stdout and "UNUSABLE" in p.stdout


def test_installed_mfd_in_login_shell_ebpf(installed):
    # scripts/setup.sh puts a launcher of the checkout in /usr/local/bin, which
    # comes first in PATH: left out here, this test is about the package's mfd.
    script = ("PATH=$(printf %s \"$PATH\" | tr : '\\n' | grep -vx /usr/local/bin | paste -sd:); "
              "hash -r; command -v mfd; mfd --count 1")
    p = run(["bash", "-lc", script], cwd="/", env={"PATH": SYSTEM_PATH, "HOME": "/root",
                                                    "TERM": "dumb", "LANG": "C.UTF-8"})
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.split("\n")[0] == "/usr/bin/mfd"
    assert "(bpf" in p.stdout, p.stdout + p.stderr


def test_man_finds_page(installed):
    p = run(["man", "-w", "mfd"], env={"PATH": SYSTEM_PATH})
    assert p.stdout.strip() == "/usr/share/man/man8/mfd.8.gz", p


def test_installed_bash_completion(installed):
    script = "/usr/share/bash-completion/completions/mfd"
    assert complete(script, ["mfd", "rep"]) == ["report"]
    # bash-completion's on-demand loader finds it by the command's name.
    assert complete(script, ["mfd", "serve", "--source", "b"],
                    setup="_completion_loader mfd") == ["bpf"]


def test_installed_zsh_completion(installed):
    if not shutil.which("zsh"):
        pytest.skip("zsh not installed")
    p = run(["zsh", "-fc", "autoload -U compinit && compinit -u && "
             "source /usr/share/zsh/vendor-completions/_mfd"])
    assert p.returncode == 0, p.stderr


def test_venv_keeps_its_own_mfd(installed):
    """The venv sees system site-packages; its editable mfd must still win."""
    p = run([sys.executable, "-c", "import mfd; print(mfd.__file__)"], cwd="/")
    assert p.stdout.strip() == os.path.join(REPO, "src", "mfd", "__init__.py"), p


def test_purge_leaves_nothing(installed):
    """Last in the file: purges the package and checks what is left."""
    made_state = not os.path.exists("/var/lib/mfd")
    if made_state:
        os.mkdir("/var/lib/mfd")    # as mfd-record.service's StateDirectory= would
    # The eBPF run above filled /var/cache/mfd (BTF answers); purge removes it.
    p = _purge()
    assert p.returncode == 0, p.stdout + p.stderr
    assert not _installed()
    left = [f for f in installed["files"] if os.path.lexists(f) and not os.path.isdir(f)]
    assert left == []
    # Directories of mfd's own (not /usr/bin, /etc/default, ...).
    left = [f for f in installed["files"] if "mfd" in os.path.basename(f) and os.path.lexists(f)]
    assert left == []
    assert not os.path.exists("/var/cache/mfd")
    if made_state:
        assert not os.path.exists("/var/lib/mfd")
    p = run([sys.executable, "-c", "import mfd; print(mfd.__file__)"], cwd="/")
    assert p.stdout.strip() == os.path.join(REPO, "src", "mfd", "__init__.py"), p
