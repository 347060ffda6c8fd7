"""How this mfd was installed, for ``--version`` and for install hints.

mfd is not on PyPI (the ``mfd-*`` names there belong to an unrelated
project), so a hint to pip-install mfd's extras would send users
astray.  It comes from a checkout (scripts/setup.sh: an editable install in
the checkout's .venv, which sees the distribution's packages), from the
Debian package, or from the RPM.  Each hint names the command that works
for the way this copy was installed.
"""
from __future__ import annotations

import os
import shutil
import sys
from typing import Optional

from . import __version__

_HERE = os.path.dirname(os.path.abspath(__file__))

# Where the distributions' own python3 keeps packages their package manager
# installed (Debian: dist-packages; Fedora, RHEL, openEuler: site-packages
# under /usr/lib or /usr/lib64).
_DEB_PREFIX = "/usr/lib/python3/dist-packages" + os.sep
_RPM_PREFIXES = ("/usr/lib/python3.", "/usr/lib64/python3.")


def checkout(here: str = _HERE) -> Optional[str]:
    """The root of the git checkout this package runs from (src/mfd in it), or None."""
    root = os.path.dirname(os.path.dirname(here))
    if os.path.basename(os.path.dirname(here)) == "src" and \
            os.path.exists(os.path.join(root, ".git")) and \
            os.path.isfile(os.path.join(root, "pyproject.toml")):
        return root
    return None


def kind(here: str = _HERE) -> str:
    """"checkout", "deb", "rpm" or "pip"."""
    if checkout(here):
        return "checkout"
    path = here + os.sep
    if path.startswith(_DEB_PREFIX):
        return "deb"
    if path.startswith(_RPM_PREFIXES) and os.sep + "site-packages" + os.sep in path:
        return "rpm"
    return "pip"


def _read(path: str, limit: int = 4096) -> str:
    with open(path, "rb") as f:
        return f.read(limit).decode("ascii", "replace").strip()


def commit(root: str) -> Optional[str]:
    """The checkout's HEAD commit, short, read from .git itself: git may be
    missing, and refuses ("dubious ownership") a user's checkout under sudo."""
    git = os.path.join(root, ".git")
    try:
        if os.path.isfile(git):         # a worktree: "gitdir: <path>"
            text = _read(git)
            if not text.startswith("gitdir: "):
                return None
            git = os.path.join(root, text[len("gitdir: "):])
        head = _read(os.path.join(git, "HEAD"))
        if not head.startswith("ref: "):
            sha = head
        else:
            ref = head[len("ref: "):]
            common = git
            if os.path.isfile(os.path.join(git, "commondir")):
                common = os.path.join(git, _read(os.path.join(git, "commondir")))
            try:
                sha = _read(os.path.join(common, ref))
            except FileNotFoundError:
                sha = ""
                with open(os.path.join(common, "packed-refs"), "rb") as f:
                    for line in f.read(1 << 20).decode("ascii", "replace").splitlines():
                        parts = line.split()
                        if len(parts) == 2 and parts[1] == ref:
                            sha = parts[0]
                            break
    except OSError:
        return None
    sha = sha.strip()
    if len(sha) >= 7 and all(c in "0123456789abcdef" for c in sha):
        return sha[:12]
    return None


def version_text() -> str:
    """What ``--version`` prints: the version, and the commit from a checkout."""
    root = checkout()
    sha = commit(root) if root else None
    return f"mfd {__version__}" + (f" (git {sha})" if sha else "")


def install_hint(deb: str, rpm: str, pip: Optional[str] = None) -> str:
    """The command that installs a dependency for this copy of mfd (``pip``: its
    PyPI name, None when it is not on PyPI)."""
    how = kind()
    if how == "checkout":       # its .venv sees the system's packages: theirs it is
        how = "deb" if shutil.which("apt-get") else "rpm" if shutil.which("dnf") else "pip"
    if how == "deb":
        return f"apt install {deb}"
    if how == "rpm":
        return f"dnf install {rpm}"
    if pip is None:
        return f"apt install {deb}, or dnf install {rpm}"
    return f"{sys.executable} -m pip install {pip}"
