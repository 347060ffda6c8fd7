"""Messages on stderr, and what other code writes on file descriptor 2.

Every line mfd says goes through :func:`note`: one line, prefixed ``mfd:``,
with control characters escaped, because messages quote strings from the
kernel, from files and from the command line.
"""
from __future__ import annotations

import os
import sys
import tempfile
from typing import Optional


def one_line(text: str) -> str:
    """``text`` with control characters escaped: a message quoting user input
    (an argument holding a newline or a terminal escape) stays one plain line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def note(msg: str) -> None:
    """One line on stderr: ``mfd: msg``."""
    if sys.stderr is None:      # started with fd 2 closed: print() would use stdout
        return
    try:
        print(f"mfd: {one_line(msg)}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass        # stderr closed or gone (SIGHUP): nowhere to say it


_SAID: set = set()

# -q/--quiet: informational notes (a fallback taken, a file written) stay off
# stderr; errors still print.  What was noted is kept for --json either way.
_QUIET = [False]
_NOTED: list = []
MAX_NOTED = 32      # distinct notes kept for --json (a run says two or three)


def set_quiet(on: bool) -> None:
    _QUIET[0] = bool(on)


def info(msg: str) -> None:
    """A note that -q silences: the facts a run says once (which path it took,
    which header tree it compiles against).  Kept for :func:`noted`."""
    if msg not in _NOTED and len(_NOTED) < MAX_NOTED:
        _NOTED.append(msg)
    if not _QUIET[0]:
        note(msg)


def noted() -> list:
    """What :func:`info` was told this run, in order (escaped: it is data)."""
    return [one_line(m) for m in _NOTED]


def note_once(say, msg: str) -> None:
    """``say(msg)`` unless this process already said it (a fallback that two
    sources both take is one line, not two)."""
    if msg not in _SAID:
        _SAID.add(msg)
        say(msg)


def quiet(msg: str) -> None:
    """A ``note`` that says nothing (tests, benchmarks)."""


class StderrCapture:
    """Collect what is written on file descriptor 2 (by libbcc and clang, or
    by mfd's own notes while curses owns the terminal) into a temporary file.

    ``new_text()`` returns what arrived since its last call; ``stop()``
    restores fd 2 and returns everything.  ``passthrough`` captures nothing
    (--debug: the compiler's output goes straight to the terminal).
    """

    def __init__(self, passthrough: bool = False):
        self.passthrough = passthrough
        self._tmp = None
        self._saved: Optional[int] = None
        self._read = 0
        self.data = b""

    def start(self) -> "StderrCapture":
        if not self.passthrough and self._saved is None:
            sys.stderr.flush()
            self._tmp = tempfile.TemporaryFile()
            self._saved = os.dup(2)
            os.dup2(self._tmp.fileno(), 2)
        return self

    def new_text(self) -> str:
        if self._tmp is None:
            return ""
        sys.stderr.flush()
        data = os.pread(self._tmp.fileno(), 65536, self._read)
        self._read += len(data)
        return data.decode("utf-8", "replace")

    def stop(self) -> bytes:
        """Restore fd 2 and return everything captured; b"" when already
        stopped (``text()`` still has it)."""
        if self._saved is None:
            return b""
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._saved = None
        self._tmp.seek(0)
        self.data = self._tmp.read()
        self._tmp.close()
        self._tmp = None
        return self.data

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    def __enter__(self) -> "StderrCapture":
        return self.start()

    def __exit__(self, *exc) -> bool:
        self.stop()
        return False
