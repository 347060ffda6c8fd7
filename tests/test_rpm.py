"""contrib/mfd.spec builds with plain rpmbuild (Debian's rpm 4.18, no
Fedora macros) from a tarball of the working tree, and the package holds
what an installed mfd needs.  Installing it on Fedora/openEuler is not
tested here.  --nodeps: the build dependencies come from dpkg, which rpm
does not see."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, ".."))
SPEC = os.path.join(TOP, "contrib", "mfd.spec")
DOCS = os.path.exists(os.path.join(TOP, "scripts", "gen_docs.py"))

pytestmark = pytest.mark.skipif(shutil.which("rpmbuild") is None,
                                reason="needs rpmbuild (Debian package rpm)")


def _version(path, pattern):
    with open(path) as f:
        return re.search(pattern, f.read(), re.M).group(1)


def test_spec_version_is_pyproject_version():
    assert _version(SPEC, r"^Version:\s*(\S+)") == \
        _version(os.path.join(TOP, "pyproject.toml"), r'^version = "([^"]+)"')


@pytest.fixture(scope="module")
def rpm(tmp_path_factory):
    top = tmp_path_factory.mktemp("rpmbuild")
    os.makedirs(top / "SOURCES")
    version = _version(SPEC, r"^Version:\s*(\S+)")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=TOP,
                           capture_output=True, check=True).stdout
    tarball = top / "SOURCES" / f"mfd-{version}.tar.gz"
    subprocess.run(["tar", "--null", "-T", "-", f"--transform=s,^,mfd-{version}/,",
                    "-czf", str(tarball)], cwd=TOP, input=files, check=True)
    argv = ["rpmbuild", "-bb", "--nodeps", "--define", f"_topdir {top}", SPEC]
    if not DOCS:
        argv[2:2] = ["--without", "docs"]
    start = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    took = time.monotonic() - start
    assert r.returncode == 0, r.stderr[-3000:]
    print(f"rpmbuild took {took:.1f} s")
    assert took < 60
    (path,) = (top / "RPMS" / "noarch").glob("mfd-*.noarch.rpm")
    return str(path)


def _query(rpm, *args):
    return subprocess.run(["rpm", "-qp", *args, rpm], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def test_files(rpm):
    files = _query(rpm, "-l")
    for want in ("/usr/bin/mfd", "/usr/lib/systemd/system/mfd-exporter.service",
                 "/usr/lib/systemd/system/mfd-record.service", "/etc/sysconfig/mfd"):
        assert want in files
    for src in ("zonewalk.bpf.c", "extfrag.bpf.c", "alloc.bpf.c", "compaction.bpf.c", "mfd.h"):
        assert any(f.endswith("/mfd/bpf/" + src) for f in files), src
    assert any(f.endswith("/mfd/cli/monitor.py") for f in files)


def test_config_file_is_noreplace(rpm):
    lines = _query(rpm, "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]")
    assert "/etc/sysconfig/mfd cn" in lines


def test_docs(rpm):
    if not DOCS:
        pytest.skip("scripts/gen_docs.py is not in this tree (built --without docs)")
    files = _query(rpm, "-l")
    assert any(re.fullmatch(r"/usr/share/man/man8/mfd\.8(\.gz)?", f) for f in files)
    assert "/usr/share/bash-completion/completions/mfd" in files
    assert "/usr/share/zsh/site-functions/_mfd" in files


def test_requires(rpm):
    req = {r.split()[0] for r in _query(rpm, "--requires")}
    assert {"python3-bcc", "python3-tabulate", "python3-prometheus_client"} <= req
    rec = set(_query(rpm, "--recommends"))
    assert {"python3-matplotlib", "kernel-devel"} <= rec
    assert _query(rpm, "--qf", "%{ARCH}\n") == ["noarch"]
