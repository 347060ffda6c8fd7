#!/usr/bin/python3
"""Write mfd's man page and shell completions from its own argparse parsers.

    scripts/gen_docs.py OUTDIR      writes OUTDIR/mfd.8, OUTDIR/mfd.bash, OUTDIR/_mfd

Run at package build time (debian/rules), so the page and the completions
list exactly the options that the mfd being packaged parses: they cannot
drift from the code.  The options, their help and the subcommands come from
the parsers through Debian's argparse-manpage (build_manpages) and shtab; the
sections those cannot produce (EXAMPLES, EXIT STATUS, FILES, SECURITY, SEE
ALSO) are written here in roff.

mfd itself parses argv as a monitor parser plus a free positional command
(mfd.cli.main); the tools here want one parser with subparsers, so this
script builds one out of the very same argparse actions, for documentation
only.  It needs the standard library, argparse-manpage, shtab and tabulate
(mfd.cli imports it); not BCC, which mfd imports only to load a program.
"""
import argparse
import datetime
import os
import re
import sys

# The tree this script sits in, not an installed mfd: the docs describe the
# code being built.
_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if os.path.isdir(os.path.join(_SRC, "mfd")):
    sys.path.insert(0, _SRC)

import shtab                                    # noqa: E402  (Debian: python3-shtab)
from build_manpages.manpage import Manpage      # noqa: E402  (python3-argparse-manpage)

from mfd import __version__, cli                # noqa: E402
from mfd.cli import common                      # noqa: E402
from mfd.model.events import GROUPS             # noqa: E402

# --events takes a comma-separated list, which argparse cannot express as
# choices: complete each element.  bash: shtab calls this with the word typed.
_BASH_PREAMBLE = """\
_mfd_event_groups() {
  # shtab calls this with IFS set to a newline: -W needs spaces back.
  local cur="$1" pre="" IFS=$' \\t\\n'
  [[ $cur == *,* ]] && pre="${cur%,*},"
  compgen -P "$pre" -W "GROUPS" -- "${cur##*,}"
}""".replace("GROUPS", " ".join(GROUPS + ("all",)))
_EVENTS_COMPLETE = {"bash": "_mfd_event_groups",
                    "zsh": "_values -s , groups " + " ".join(GROUPS + ("all",))}


def combined_parser() -> argparse.ArgumentParser:
    """mfd as one parser: the monitor's options, then report and serve as
    subparsers holding their own parsers' actions (the same objects)."""
    monitor = cli.build_parser()
    root = argparse.ArgumentParser(prog="mfd", description=monitor.description,
                                   epilog=monitor.epilog, add_help=False,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    # Options only: the monitor's hidden "command"/"args" positionals are what
    # the subparsers below replace (and shtab counts hidden positionals too).
    for action in monitor._actions:
        if action.option_strings:
            root._add_action(action)
    sub = root.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    for name, (_usage, summary) in cli.COMMANDS.items():
        own = cli.command(name).build_parser()
        sub.add_parser(name, parents=[own], add_help=False, help=summary,
                       description=own.description, epilog=own.epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    for parser in [root] + list(sub.choices.values()):
        for action in parser._actions:
            if action.type is common.path_arg or action.dest == "file":
                action.complete = shtab.FILE
            elif action.dest == "events":
                action.complete = _EVENTS_COMPLETE
    return root


def subparsers(root: argparse.ArgumentParser):
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


# -- roff ---------------------------------------------------------------------


def roff(text: str) -> str:
    r"""Plain text as roff text: backslashes and hyphens escaped, and a line
    that would start with a control character (. or ') guarded with \&."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line
                     for line in text.split("\n"))


def literal(text: str) -> str:
    """A block shown as typed (examples, usage): no filling, no adjusting."""
    return ".PP\n.nf\n" + roff(text.rstrip("\n")) + "\n.fi"


def split_epilog(epilog: str):
    """(example lines, other paragraphs) of a parser's epilog.  The monitor's
    "commands:" paragraph is left out: the command list comes from the
    subparsers."""
    examples, rest = [], []
    for para in (epilog or "").strip("\n").split("\n\n"):
        if para.startswith("examples:"):
            examples += [line.strip() for line in para.split("\n")[1:] if line.strip()]
        elif not para.startswith("commands:"):
            rest.append(para)
    return examples, rest


def example_items(lines) -> str:
    """Example lines ("COMMAND   what it does", aligned in -h) as roff tagged
    paragraphs: they fit 80 columns where the -h layout does not."""
    pairs = [re.match(r"(.*?\S) {2,}(\S.*)", line) for line in lines]
    # A command that fills its column leaves one space before the text: cut it
    # where the others' text starts.
    starts = [m.start(2) for m in pairs if m]
    column = max(set(starts), key=starts.count) if starts else 0
    out = []
    for line, m in zip(lines, pairs):
        cmd, what = m.groups() if m else (line[:column].rstrip(), line[column:])
        out.append(".TP\n.B \"%s\"\n%s" % (roff(cmd).replace('"', '\\(dq'), roff(what)))
    return "\n".join(out)


def paragraphs(paras) -> str:
    return "\n".join(".PP\n" + roff(" ".join(p.split())) for p in paras)


def manual(root: argparse.ArgumentParser) -> str:
    root.man_short_description = "Linux physical-memory fragmentation monitor"
    man = Manpage(root)
    # argparse-manpage 1.2.2 takes the synopsis from format_usage() split at
    # ':' (so HOST:PORT breaks it) and prints it as one line: ours is written
    # below from mfd's own usage text instead.
    man.synopsis = []
    page = str(man)
    cmds = subparsers(root)
    date = datetime.datetime.fromtimestamp(
        int(os.environ.get("SOURCE_DATE_EPOCH") or datetime.datetime.now().timestamp()),
        datetime.timezone.utc).strftime("%Y-%m-%d")
    # Section 8 (a root tool) with date, source and manual names; 1.2.2 writes
    # '.TH prog "1" Manual' with no way to change it.
    page = re.sub(r'\A\.TH .*\n', f'.TH MFD 8 {date} "mfd {__version__}" "System Administration"\n',
                  page)
    usage = cli.build_parser().usage.replace("\n       ", "\n")
    page = page.replace(".SH DESCRIPTION\n", ".SH SYNOPSIS\n" + literal(usage).replace(".PP\n", "", 1)
                        + "\n.SH DESCRIPTION\n", 1)
    # Each command's section: argparse-manpage heads it ".SH OPTIONS 'mfd x'"
    # followed by the raw "usage: ..." text; make it a plain heading and a
    # literal usage block, then add what the command's epilog says.
    for name, parser in cmds.items():
        prog = f"mfd {name}"
        head = f".SH OPTIONS '{prog}'\n"
        start = page.index(head)
        raw_usage = parser.format_usage()
        assert page.startswith(raw_usage, start + len(head)), name
        page = (page[:start] + f'.SH "MFD {name.upper()}"\n'
                + literal(raw_usage[len("usage: "):]) + "\n"
                + page[start + len(head) + len(raw_usage):])
    # The monitor's epilog (output columns) goes after its options, before the
    # command list; each command's after its own options.
    notes = {}
    for name, parser in [("", root)] + list(cmds.items()):
        notes[name] = split_epilog(parser.epilog)
    first_cmd = page.index(".SS\n")
    page = page[:first_cmd] + paragraphs(notes[""][1]) + "\n" + page[first_cmd:]
    names = list(cmds)
    for i, name in enumerate(names):
        end = page.index(f'.SH "MFD {names[i + 1].upper()}"') if i + 1 < len(names) else len(page)
        page = page[:end].rstrip("\n") + "\n" + paragraphs(notes[name][1]) + "\n" + page[end:]
    examples = "\n".join(example_items(notes[name][0]) for name in [""] + names)
    return page.rstrip("\n") + "\n.SH EXAMPLES\n" + examples + "\n" + _SECTIONS


_SECTIONS = r""".SH "EXIT STATUS"
.TP
.B 0
Success; also when mfd was ended by Ctrl\-C, SIGTERM or SIGHUP, and when the
reader of its output went away (a closed pipe, as in
.BR "mfd | head" ),
which ends mfd quietly.
.TP
.B 1
A runtime failure: mfd says in one line on standard error what went wrong and
what to do
.RB ( \-\-debug
for a traceback).
.TP
.B 2
A usage error: a bad option or value, or a flag that would do nothing in the
mode chosen.
.SH FILES
.TP
.I /var/cache/mfd
BTF answers per kernel build and the joined kernel header tree.  Trusted only
when it and every directory above it are root's and writable by root alone;
otherwise mfd says why and works without it.
.TP
.I FILE.db
Recordings written with
.BR \-\-record ,
read with
.BR "mfd report" .
Plain SQLite in WAL mode.
.TP
.I /var/lib/mfd/mfd.db
The recording kept by the
.B mfd\-record.service
unit.
.TP
.I /etc/default/mfd
Environment file of the
.B mfd\-exporter.service
and
.B mfd\-record.service
units (listen address, interval, retention, more options).
.SH SECURITY
mfd runs as root.
Output files are never written through a symbolic link unless
.B \-\-follow\-symlinks
is given.
Caches are trusted only when root alone can write them.
.B mfd serve
binds loopback unless another address is written out in full, and has no TLS
or authentication.
Strings from the kernel or from files (process names, zone names) are escaped
before they reach a terminal, and kernel addresses never leave a root terminal.
Recordings are untrusted input to
.BR "mfd report" :
their schema and every row are validated.
.SH "SEE ALSO"
.BR funccount\-bpfcc (8),
.BR trace\-bpfcc (8),
.BR perf (1),
.BR proc (5)
(\fI/proc/buddyinfo\fR, \fI/proc/zoneinfo\fR),
.BR systemd.exec (5),
Prometheus node_exporter
"""


# shtab 1.5.5 (Debian 12) reads each action's choices with ${!name} on the
# array name, which yields only its first element: "mfd --source <TAB>"
# offered only "auto" and "mfd se<TAB>" nothing.  Read the whole array, and
# join it with IFS (a newline there) for compgen -W.
_BASH_FIXES = (
    ('local current_action_choices_var="${current_action}_choices"\n'
     '  current_action_choices="${!current_action_choices_var}"',
     'local current_action_choices_var="${current_action}_choices[@]"\n'
     '  current_action_choices=("${!current_action_choices_var}")'),
    ('compgen -W "${current_action_choices}"', 'compgen -W "${current_action_choices[*]}"'),
)


def bash_completion(root: argparse.ArgumentParser) -> str:
    text = shtab.complete(root, "bash", preamble=_BASH_PREAMBLE)
    for old, new in _BASH_FIXES:
        if old in text:     # a shtab without the bug writes something else
            text = text.replace(old, new)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write mfd.8, mfd.bash and _mfd into OUTDIR.")
    ap.add_argument("outdir")
    outdir = ap.parse_args(argv).outdir
    root = combined_parser()
    outputs = {
        "mfd.8": manual(root),
        "mfd.bash": bash_completion(root),
        "_mfd": shtab.complete(root, "zsh"),
    }
    try:
        os.makedirs(outdir, exist_ok=True)
        for name, text in outputs.items():
            with open(os.path.join(outdir, name), "w", encoding="utf-8") as f:
                f.write(text)
    except OSError as e:
        print(f"gen_docs.py: {e.filename or outdir}: {e.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
