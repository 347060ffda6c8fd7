"""What every subcommand shares: the parser class, option types and groups,
and :func:`finish`, which turns how a command ended into an exit status.

Exit status: 0 normal end (also Ctrl-C, SIGTERM, SIGHUP, a closed pipe),
1 runtime failure, 2 usage error.  No traceback without --debug.
"""
from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from ..durations import parse_duration
from ..errors import MfdError, UsageError
from ..origin import install_hint
from ..safefs import FOLLOW_FLAG, AtomicOutput
from ..sources import SNAPSHOT_SOURCES
from ..term import info, note, one_line, set_quiet


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: end like Ctrl-C.

    A BaseException, like KeyboardInterrupt, so that ``except Exception``
    around a step that may fail (BCC's compile and load, say) lets it through
    instead of taking it for that step's failure and carrying on."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2) that say where help is."""

    def error(self, message):  # one line, then exit 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: {one_line(message)} (see {self.prog} -h)\n")


def parser(prog: str, description: str, epilog: str) -> Parser:
    return Parser(prog=prog, description=description, epilog=epilog,
                  formatter_class=argparse.RawDescriptionHelpFormatter)


# -- option types ---------------------------------------------------------------


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}")
    if not (v > 0) or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return v


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}")
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer: {text!r}")
    return v


def duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def node_id(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"node id must be an integer: {text!r}")
    if v < 0:
        raise argparse.ArgumentTypeError(f"node id must be >= 0: {text!r}")
    return v


def ranged(convert, what: str, lo, hi=None):
    """An argparse type: ``convert(text)`` within ``lo <= v`` (and ``v < hi``)."""
    def parse(text: str):
        try:
            v = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}")
        # not (lo <= v): NaN compares false both ways; inf is never a setting
        if not lo <= v or v == float("inf") or (hi is not None and not v < hi):
            bound = f">= {lo}" if hi is None else f"from {lo} up to (not incl.) {hi}"
            raise argparse.ArgumentTypeError(f"must be {bound}: {text!r}")
        return v
    return parse


# -- option groups ----------------------------------------------------------------

ZONE_HELP = ("only zones named NAME (DMA, DMA32, Normal, HighMem, Movable, Device; any case)")


def add_filter(p: argparse.ArgumentParser, zone_help: str = ZONE_HELP) -> None:
    """-i/-c, the seed's node and zone filter."""
    p.add_argument("-i", "--node", type=node_id, metavar="ID", help="only node ID")
    p.add_argument("-c", "--zone", metavar="NAME", help=zone_help)


def add_source(p: argparse.ArgumentParser) -> None:
    """Where snapshots come from."""
    p.add_argument("--source", choices=SNAPSHOT_SOURCES, default="auto",
                   help="where snapshots come from (default auto: bpf, else procfs)")
    p.add_argument("--pgdat-path", choices=("auto", "kallsyms", "memcg"), default="auto",
                   help="how the eBPF walker finds each node's pglist_data (default auto)")
    p.add_argument("--bpf-loader", choices=("auto", "helper", "inprocess"), default="auto",
                   help="where BCC compiles the eBPF programs: helper, a short-lived child "
                        "that hands the loaded programs over, so the compiler is never "
                        "mapped into mfd; inprocess keeps it mapped (~130 MB) for the whole "
                        "run (default auto: helper, else inprocess)")


def add_span(p: argparse.ArgumentParser) -> None:
    """--since/--until, a part of a recording (pass argv through join_time_args)."""
    p.add_argument("--since", metavar="TIME", help="only samples at or after TIME")
    p.add_argument("--until", metavar="TIME", help="only samples at or before TIME")


def span(since: Optional[str], until: Optional[str],
         last: float) -> Tuple[Optional[float], Optional[float]]:
    """--since/--until as unix times (relative ones count back from ``last``,
    a recording's last sample); UsageError when unreadable or reversed."""
    from ..durations import parse_time
    try:
        start = parse_time(since, last) if since is not None else None
        end = parse_time(until, last) if until is not None else None
    except ValueError as e:
        raise UsageError(str(e))
    if start is not None and end is not None and start > end:
        raise UsageError("--since is after --until")
    return start, end


@dataclass(frozen=True)
class Selection:
    """The part of an open recording that --since/--until and -i/-c pick."""
    path: str
    since: Optional[float]
    until: Optional[float]
    filter: object          # mfd.model.Filter, with the zone spelt as the file spells it
    first: float            # the whole file's first and last sample
    last: float
    since_text: Optional[str] = None
    until_text: Optional[str] = None

    def nothing(self) -> MfdError:
        """The error for a selection that holds no sample."""
        from ..durations import format_time
        return MfdError(f"no samples in {self.path} between {self.since_text or 'the start'} "
                        f"and {self.until_text or 'the end'} (it spans "
                        f"{format_time(self.first)} .. {format_time(self.last)})")


def select(hist, since: Optional[str], until: Optional[str], flt) -> Selection:
    """The Selection of ``hist`` (an open mfd.recording.History): MfdError
    when it holds no sample, UsageError when the times or -i/-c do not fit it."""
    first, last, count = hist.bounds()
    if not count:
        raise MfdError(f"{hist.path} holds no samples yet")
    start, end = span(since, until, last)
    try:
        flt = flt.resolve(*hist.names(), where=hist.path)
    except UsageError as e:
        raise UsageError(f"no populated zone matches -i/-c in {hist.path}: {e}") from None
    return Selection(hist.path, start, end, flt, first, last, since, until)


def join_time_args(argv) -> List[str]:
    """"--since -15m" as "--since=-15m": argparse would take -15m for an option."""
    argv, joined, i = list(argv), [], 0
    while i < len(argv):
        if argv[i] in ("--since", "--until") and i + 1 < len(argv) and \
                argv[i + 1].startswith("-"):
            joined.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            joined.append(argv[i])
            i += 1
    return joined


def path_arg(text: str) -> str:
    """A file name option: empty is a usage error, not "no file"."""
    if not text:
        raise argparse.ArgumentTypeError("an empty file name")
    return text


def add_follow_symlinks(p: argparse.ArgumentParser) -> None:
    p.add_argument(FOLLOW_FLAG, action="store_true",
                   help="write output files through symbolic links (refused by default: "
                        "as root, a link someone else planted would redirect the write)")


def add_debug(p: argparse.ArgumentParser, what: str = "show tracebacks and BCC's output"):
    p.add_argument("--debug", action="store_true", help=what)
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no notes on stderr (fallbacks taken, files written); errors "
                        "still print, and --json keeps the notes")


# -- ending ---------------------------------------------------------------------------

_END_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _on_signal(signum, frame):
    # The first signal ends mfd; more while it cleans up are ignored (bcc's
    # habit): one arriving inside BCC's detach would leave it half done.
    for sig in _END_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated()


# errno values that mean "stdout cannot take this": the disk (/dev/full), the
# device, or a descriptor that is not writable.  EPIPE is a closed pipe: quiet.
_WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EBADF,
                 errno.EINVAL, errno.EROFS, errno.EACCES)


def sanitise_std_fds() -> frozenset:
    """Put /dev/null on whichever of fds 0, 1 and 2 are closed, as OpenSSH's
    sanitise_stdfd() does: else the next file mfd opens (a recording) would
    become fd 1 and receive the tables.  The fds that were closed."""
    closed = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
    if closed:
        null = os.open(os.devnull, os.O_RDWR)   # takes the lowest closed fd
        for fd in closed - {null}:
            os.dup2(null, fd)
        if null not in closed:
            os.close(null)
    return frozenset(closed)


def require_stdout(what: str) -> None:
    """MfdError when stdout was closed at start (``mfd >&-``)."""
    if sys.stdout is None:
        raise MfdError(f"standard output is closed, and {what} is written there: run mfd "
                       f"with stdout open (> FILE or > /dev/null)")


def _stdout_gone() -> None:
    """Point fd 1 at /dev/null, so Python's flush at exit does not fail again."""
    try:
        if sys.stdout is not None:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
    except (OSError, ValueError):
        pass


def write_failed(e: OSError) -> Optional[int]:
    """The exit status for an error writing stdout (a closed pipe: 0, quietly;
    a full disk and the like: 1, one line), or None if ``e`` is not one."""
    if isinstance(e, BrokenPipeError):
        _stdout_gone()
        return 0
    if e.filename is None and e.errno in _WRITE_ERRORS:
        _stdout_gone()
        note(f"cannot write to standard output: {e.strerror}")
        return 1
    return None


def parse(parser: argparse.ArgumentParser, argv):
    """``parser.parse_args(argv)``, or the exit status when parsing ended mfd
    (-h, --version, a usage error) or -h could not be written."""
    try:
        args = parser.parse_args(argv)
        if getattr(args, "quiet", False):   # "mfd -q report ...": before the command too
            set_quiet(True)
        return args
    except SystemExit as e:  # -h, --version, usage errors
        return e.code if isinstance(e.code, int) else 2
    except OSError as e:
        status = write_failed(e)
        if status is None:
            raise
        return status


def fail(e: MfdError) -> int:
    """Say ``e`` in one line; its exit status."""
    note(str(e))
    return e.exit_code


def _forget_interrupt() -> None:
    """Clear CPython's note that a KeyboardInterrupt went unhandled.

    Each exec() of a string (run_eval_code_obj in Python/pythonrun.c, 3.9 to
    3.13) sets _Py_UnhandledKeyboardInterrupt when the interrupt leaves the
    exec'd code, even if a caller catches it; ``python -m`` (pymain_run_module
    then Py_RunMain) looks at the flag after SystemExit and ends the process by
    SIGINT.  dataclasses and namedtuple exec their methods when a module is
    imported, so Ctrl-C during an import made ``python -m mfd`` die by SIGINT
    (exit -2) instead of exiting 0.  An exec() that completes resets the flag:
    run_eval_code_obj clears it before it runs anything."""
    exec("")


def finish(body: Callable[[], int], debug: bool = False) -> int:
    """Run a command's ``body`` and turn how it ends into an exit status."""
    for sig in _END_SIGNALS:
        signal.signal(sig, _on_signal)
    try:
        status = body()
        if sys.stdout is not None:
            sys.stdout.flush()      # a write error shows here, not at exit
        return status
    except (KeyboardInterrupt, Terminated):
        _forget_interrupt()
        return 0
    except OSError as e:
        # The reader went away (mfd | head): end quietly; stdout full or broken:
        # one line.  Either way Python's own flush at exit must not complain.
        status = write_failed(e)
        if status is None:
            if debug:
                raise
            note(f"internal error: {type(e).__name__}: {e} (run with --debug for the "
                 f"traceback)")
            return 1
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        return status
    except MfdError as e:
        if debug:
            raise
        return fail(e)
    except Exception as e:  # a bug: one line, traceback on request
        if debug:
            raise
        note(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)")
        return 1


def command_main(build_parser: Callable[[], argparse.ArgumentParser],
                 body: Callable[[argparse.Namespace], int], argv, debug: bool = False) -> int:
    """A command's ``main(argv, debug)``: parse (the exit status when parsing
    ended mfd: -h, a usage error), then ``body(args)`` through finish()."""
    args = parse(build_parser(), list(argv) + (["--debug"] if debug else []))
    if isinstance(args, int):
        return args
    return finish(lambda: body(args), args.debug)


def write_output(path: str, data: bytes, follow_symlinks: bool) -> None:
    """A whole output file: on stdout for '-', else beside its target and
    renamed onto it (never through a planted symlink: mfd.safefs)."""
    if path == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    with AtomicOutput(path, binary=True, follow_symlinks=follow_symlinks) as f:
        try:
            f.write(data)
        except OSError as e:
            raise MfdError(f"cannot write {path}: {e.strerror}") from None
    info(f"wrote {path}")


def plots(charts: bool):
    """mfd.report.plots when charts are asked for and matplotlib is there."""
    if charts:
        try:
            from ..report import plots
            return plots
        except ImportError:
            pass
    return None


def no_matplotlib() -> MfdError:
    return MfdError("charts need matplotlib: " +
                    install_hint("python3-matplotlib", "python3-matplotlib", "matplotlib"))
