"""mfd's imports run one way, and stay that way: walked with ast over src/mfd.

    cli -> sinks/report -> derive -> model
    cli -> sources -> kernel/ebpf -> model

Nothing imports the CLI; only mfd.ebpf imports bcc.  Function-level imports
count too: a lazy import is still a dependency.
"""
from __future__ import annotations

import ast
import os

import pytest

SRC = os.path.join(os.path.dirname(__file__), "..", "src", "mfd")

# What each part of mfd may import of mfd (besides itself and the top-level
# package, which holds __version__).  Everything not named here is refused.
BASE = {"mfd.errors"}
ALLOWED = {
    "mfd.errors": set(),
    "mfd.term": set(),
    "mfd.durations": set(),
    "mfd.fragindex": set(),
    "mfd.compaction": {"mfd.fragindex"},   # the kernel's compaction rules, pure
    "mfd.safefs": BASE,
    "mfd.origin": BASE,             # how mfd was installed: for hints and --version
    "mfd.model": BASE,
    "mfd.pageblocks": set(),        # the pageblock classification rules, pure (numpy)
    "mfd.derive": BASE | {"mfd.model", "mfd.fragindex"},
    "mfd.kernel": BASE | {"mfd.safefs", "mfd.origin"},
    "mfd.handover": BASE,           # the loader helper: knows nothing of BCC
    "mfd.ebpf": BASE | {"mfd.kernel", "mfd.term", "mfd.origin", "mfd.handover"},
    "mfd.recording": BASE | {"mfd.model"},
    "mfd.diagnose": BASE | {"mfd.model", "mfd.compaction", "mfd.fragindex", "mfd.durations",
                            "mfd.pageblocks"},
    "mfd.sources": BASE | {"mfd.model", "mfd.kernel", "mfd.ebpf", "mfd.term", "mfd.pageblocks"},
    "mfd.sinks": BASE | {"mfd.model", "mfd.derive", "mfd.fragindex", "mfd.term", "mfd.safefs",
                         "mfd.recording", "mfd.durations", "mfd.origin", "mfd.pageblocks"},
    "mfd.report": BASE | {"mfd.model", "mfd.derive", "mfd.fragindex", "mfd.recording", "mfd.safefs",
                          "mfd.sinks", "mfd.durations", "mfd.term", "mfd.pageblocks"},
    "mfd.cli": None,            # the top: anything
    "mfd.__main__": None,
}


def _modules():
    for folder, _dirs, files in os.walk(SRC):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, os.path.join(SRC, "..")).replace(os.sep, ".")[:-3]
            is_pkg = rel.endswith(".__init__")
            yield (rel[:-len(".__init__")] if is_pkg else rel), is_pkg, path


def _imports(module: str, is_pkg: bool, path: str):
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    package = module if is_pkg else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, node.lineno
            for a in node.names:      # "from . import ebpf" names a module
                yield f"{target}.{a.name}", node.lineno


def _part(name: str) -> str:
    """The part of mfd a module belongs to (mfd.sources.events.alloc -> mfd.sources)."""
    parts = name.split(".")
    return ".".join(parts[:2])


MODULES = sorted(_modules())


def test_the_walk_sees_every_part():
    parts = {_part(m) for m, _, _ in MODULES if m != "mfd"}
    assert parts <= set(ALLOWED), parts - set(ALLOWED)
    assert {"mfd.cli", "mfd.sources", "mfd.sinks", "mfd.model", "mfd.ebpf"} <= parts


@pytest.mark.parametrize("module,is_pkg,path", MODULES, ids=[m for m, _, _ in MODULES])
def test_imports_run_one_way(module, is_pkg, path):
    mine = _part(module)
    allowed = ALLOWED.get(mine, set()) if module != "mfd" else set()
    known = {m for m, _, _ in MODULES}
    for target, line in _imports(module, is_pkg, path):
        where = f"{os.path.relpath(path)}:{line} imports {target}"
        if target == "bcc" or target.startswith("bcc."):
            assert module == "mfd.ebpf", where + " (only mfd.ebpf imports bcc)"
        if not (target == "mfd" or target.startswith("mfd.")):
            continue
        if target not in known and target.rpartition(".")[0] in known:
            target = target.rpartition(".")[0]     # "from .x import name": the module x
        theirs = _part(target)
        if theirs == "mfd.cli":
            assert mine == "mfd.cli" or module == "mfd.__main__", where + " (nothing imports the CLI)"
        if allowed is None or target == "mfd" or theirs == mine:
            continue
        assert theirs in allowed, where + f" ({mine} may import only {sorted(allowed)})"


def test_a_cycle_would_be_caught():
    """The rule has teeth: a sink importing a source is refused."""
    assert "mfd.sources" not in ALLOWED["mfd.sinks"]
    assert "mfd.cli" not in ALLOWED["mfd.report"]
