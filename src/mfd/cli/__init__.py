"""The ``mfd`` command line.  ``main()`` picks the command: the monitor
(no command, the seed's flags), or one of :data:`COMMANDS`, each a module
here with its own parser, typed configuration and ``main(argv, debug)``.

Nothing imports this package: it is the top of mfd's one-way imports
(cli -> sinks/report -> derive -> model; cli -> sources -> kernel/ebpf -> model).
"""
from __future__ import annotations

import difflib
import importlib
import sys
from typing import List, Optional

from ..errors import UsageError
from . import common, monitor

__all__ = ["main", "build_parser", "COMMANDS"]

# A new command is a module in this package (with main(argv, debug)) and one line
# here: its usage and its line in mfd -h.  The module is imported only when its
# command runs, so the monitor does not pay for the report's or exporter's imports.
COMMANDS = {
    "doctor": ("doctor [--window S] [FILE.db]", "findings on physical memory in plain lines, "
               "from two looks at /proc or from a recording (mfd doctor -h)"),
    "can": ("can [COUNT@SIZE]", "can the allocator give COUNT blocks of SIZE, now and after "
            "compaction? (mfd can -h)"),
    "map": ("map [--json]", "physical memory one pageblock per cell: free, compactable, "
            "pinned, huge, and who pins it (root; mfd map -h)"),
    "report": ("report FILE.db [--compare B.db]", "summary, charts and exports of a "
               "recording, or two side by side (mfd report -h)"),
    "serve": ("serve [--listen HOST:PORT]",
              "Prometheus metrics: a snapshot per scrape, event counters, the "
              "diagnosis gauges (mfd serve -h)"),
}


def command(name: str):
    """The module of command *name* (one of COMMANDS)."""
    return importlib.import_module(f"{__name__}.{name}")


def build_parser():
    """The monitor's parser, its -h listing every command."""
    return monitor.build_parser(list(COMMANDS.values()))


# Monitor flags that do nothing when serving metrics (--prometheus).
_NOT_WITH_SERVE = (("record", "--record"), ("map_interval", "--map-interval"),
                   ("visual", "-v"), ("json", "--json"),
                   ("nodes", "-n"), ("count", "--count"), ("retain", "--retain"),
                   ("follow_symlinks", "--follow-symlinks"), ("detail", "-z"),
                   ("extfrag", "-e"), ("unusable", "-u"), ("bar", "-b"))


def _unknown_command(name: str) -> UsageError:
    close = difflib.get_close_matches(name, list(COMMANDS), n=1, cutoff=0.6)
    hint = f": did you mean {close[0]}?" if close else \
        f" (commands: {', '.join(COMMANDS)}; the monitor takes no arguments)"
    return UsageError(f"unknown command {name!r}{hint}")


def _options_before(args, parser) -> List[str]:
    """Monitor options given before a command (they would be lost): their flags."""
    out = []
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "version", "debug", "quiet"):
            continue
        if getattr(args, action.dest, None) != action.default:
            out.append(action.option_strings[0])
    return out


def _monitor(args) -> int:
    if args.prometheus is not None:      # '' too: parse_listen says it is empty
        if args.extfrag_events:
            raise UsageError("-s does not go with --prometheus (it serves counters; "
                             "--events picks their groups)")
        clash = [flag for dest, flag in _NOT_WITH_SERVE if getattr(args, dest)]
        # -d, --by: given other than their defaults (one snapshot per scrape)
        clash += [flag for flag, on in (("-d", args.interval != 2.0),
                                        ("--by", args.by != "process")) if on]
        if clash:
            raise UsageError(f"--prometheus serves metrics until stopped; it does not go "
                             f"with {', '.join(clash)}")
        serve = command("serve")
        return serve.run(serve.config(args, "--prometheus"))
    common.require_stdout("the monitor's output")
    cfg = monitor.config(args)
    if args.ebpf:
        return monitor.print_programs(cfg)
    return monitor.run(cfg)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    common.sanitise_std_fds()
    parser = build_parser()
    args = common.parse(parser, argv)
    if isinstance(args, int):
        return args
    if args.command is not None:
        if args.command not in COMMANDS:
            return common.fail(_unknown_command(args.command))
        before = _options_before(args, parser)
        if before:
            return common.fail(UsageError(
                f"{before[0]} before {args.command!r} is a monitor option: give "
                f"{args.command}'s options after it (mfd {args.command} -h)"))
        return command(args.command).main(args.args, debug=args.debug)
    return common.finish(lambda: _monitor(args), args.debug)
