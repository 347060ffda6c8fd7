"""mfd's exceptions.  The CLI turns each into a one-line message and an exit code."""
from __future__ import annotations


class MfdError(Exception):
    """A runtime failure the user can act on: exit status 1, message, no traceback."""

    exit_code = 1


class UsageError(MfdError):
    """Bad command-line input (an unknown node or zone, say): exit status 2."""

    exit_code = 2


class PermissionDenied(MfdError):
    """Not root, or lacking CAP_BPF/CAP_PERFMON."""


class KernelUnsupported(MfdError):
    """The running kernel lacks something a source needs (BTF, a tracepoint, ...)."""


class SourceUnavailable(MfdError):
    """A collector cannot run here; ``--source auto`` falls back to the next one."""
