#!/usr/bin/env python3
"""Footprint: RSS and PSS of each long-running mfd mode once settled, beside node_exporter.

Each mode runs as its own process, one after the other: the monitor loop
(`mfd -d 1`, tables discarded), with `--events all` on either allocator probe,
the recorder (`--record`), the exporter (`mfd serve` and its alias
`--prometheus`), the live view (`-v`, in a tmux pane of 200x50), and the
recorder and live view with `--events all` (`mfd serve` and `--prometheus`
take no `--events`).  Once a mode is up (its first line on stdout, its
recording created, its /metrics answering or its first frame drawn) it is
left alone for --seconds, then its VmRSS (/proc/PID/status) and Pss
(/proc/PID/smaps_rollup) are read, and whether any of its mappings is
libLLVM or libclang (the goal is "no").  The baseline, started in the same
run and read the same way once it has been up as long: Debian's
prometheus-node-exporter with only the buddyinfo and zoneinfo collectors,
checked to export node_buddyinfo_blocks.

Scrape latency, right after the `serve` mode's memory is read: --scrapes
sequential GET /metrics, each over a fresh connection, alternating between
`mfd serve` and node_exporter (so noise hits both alike), after --warmup
scrapes of each; median and p90 in ms, and the ratios mfd/node_exporter.
With --runs > 1 every figure is the median across runs (ratios taken within
each run).  The last lines are rows to paste into a README table.

A default run (9 modes x 30 s, plus start-ups and 2 x 200 scrapes) takes
about 5 minutes.  Run as root:  sudo .venv/bin/python bench/footprint.py
[--modes serve,monitor] [--seconds 30] [--runs 1] [--scrapes 200]
"""
from __future__ import annotations

import argparse
import http.client
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import median  # noqa: E402

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
NODE_EXPORTER_ARGS = ["--collector.disable-defaults", "--collector.buddyinfo",
                      "--collector.zoneinfo"]
UP_TIMEOUT = 90.0  # s; compiling the walker under a busy CI can take a while

# name: (mfd arguments, how to tell it is up); {db} and {port} are filled in per run
MODES = {
    "monitor": (["-d", "1"], "stdout"),
    "monitor-events-kprobe": (["-d", "1", "--events", "all", "--alloc-probe", "kprobe"],
                              "stdout"),
    "monitor-events-tracepoint": (["-d", "1", "--events", "all", "--alloc-probe",
                                   "tracepoint"], "stdout"),
    "record": (["-d", "1", "--record", "{db}"], "record"),
    "record-events": (["-d", "1", "--events", "all", "--record", "{db}"], "record"),
    "serve": (["serve", "--listen", "127.0.0.1:{port}"], "http"),
    "prometheus": (["--prometheus", "127.0.0.1:{port}"], "http"),
    "live": (["-v", "-d", "1"], "tmux"),
    "live-events": (["-v", "-d", "1", "--events", "all"], "tmux"),
}


class Failed(Exception):
    """A mode that did not come up or died; the message says why (mfd's own line)."""


# -- processes we start, all stopped on the way out -----------------------------------------

STARTED: List["Proc"] = []


class Proc:
    """One process we started: a Popen child, or mfd inside a tmux server of our own."""

    def __init__(self, argv, log: str, stdout_lines: bool = False):
        self.log = log
        self.first_line = threading.Event()
        self.tmux_sock: Optional[str] = None
        with open(log, "wb") as err:
            self.popen: Optional[subprocess.Popen] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stderr=err,
                stdout=subprocess.PIPE if stdout_lines else subprocess.DEVNULL)
        self.pid = self.popen.pid
        STARTED.append(self)
        if stdout_lines:  # read as it comes and discard: the pipe never fills
            threading.Thread(target=self._drain, daemon=True).start()

    @classmethod
    def in_tmux(cls, argv, log: str, width=200, height=50) -> "Proc":
        self = cls.__new__(cls)
        self.log, self.popen, self.pid = log, None, None
        self.first_line = threading.Event()
        self.tmux_sock = f"mfd-footprint-{uuid.uuid4().hex[:8]}"
        STARTED.append(self)
        cmd = ("exec env LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=tmux-256color "
               f"{shlex.join(argv)} 2>{shlex.quote(log)}")
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "fp", "-x", str(width),
                  "-y", str(height), cmd)
        return self

    def tmux(self, *args) -> str:
        return subprocess.run(["tmux", "-L", self.tmux_sock, *args], capture_output=True,
                              text=True, timeout=20, check=True).stdout

    def _drain(self):
        for _ in self.popen.stdout:
            self.first_line.set()

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return self.pid is not None and os.path.exists(f"/proc/{self.pid}")

    def why(self, default: str) -> str:
        """mfd's last line on stderr, else ``default``."""
        try:
            with open(self.log, errors="replace") as f:
                lines = [ln.strip() for ln in f if ln.strip()]
        except OSError:
            lines = []
        if self.popen is not None and self.popen.poll() is not None:
            default = f"exited with status {self.popen.returncode}"
        return lines[-1] if lines else default

    def stop(self):
        if self in STARTED:
            STARTED.remove(self)
        if self.popen is not None:
            if self.popen.poll() is None:
                self.popen.terminate()
                try:
                    self.popen.wait(10)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait()
            return
        subprocess.run(["tmux", "-L", self.tmux_sock, "kill-server"], capture_output=True,
                       timeout=20)  # SIGHUP to the pane: mfd ends
        deadline = time.monotonic() + 10
        while self.pid is not None and self.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.pid is not None and self.alive():
            os.kill(self.pid, signal.SIGKILL)


def stop_all():
    for p in list(STARTED):
        try:
            p.stop()
        except Exception as e:  # keep stopping the others
            print(f"footprint: could not stop pid {p.pid}: {e}", file=sys.stderr)


# -- waiting until a mode is up -------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, timeout: float = 10.0):
    """One GET /metrics over a fresh connection: (status, body)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", "/metrics")
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_until(proc: Proc, ready, what: str):
    deadline = time.monotonic() + UP_TIMEOUT
    while time.monotonic() < deadline:
        if ready():
            return
        if not proc.alive():
            raise Failed(proc.why("exited"))
        time.sleep(0.1)
    raise Failed(proc.why(f"no {what} after {UP_TIMEOUT:.0f} s"))


def wait_http(proc: Proc, port: int, must_contain: bytes):
    def ready():
        try:
            status, body = get(port, timeout=5)
        except OSError:
            return False
        if status != 200 or must_contain not in body:
            raise Failed(f"/metrics answered {status} without {must_contain.decode()}")
        return True
    wait_until(proc, ready, "answer on /metrics")


def descendants(pid: int) -> List[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def is_mfd(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return any(a == b"-m" and b == b"mfd" for a, b in zip(argv, argv[1:]))


def wait_tmux(proc: Proc):
    def ready():
        if proc.pid is None:
            try:
                panes = proc.tmux("list-panes", "-t", "fp", "-F", "#{pane_pid}").split()
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                raise Failed(proc.why("the tmux pane closed"))
            found = [p for p in descendants(int(panes[0])) if is_mfd(p)] if panes else []
            if not found:
                return False
            proc.pid = found[0]
        try:
            return "ORDER" in proc.tmux("capture-pane", "-p", "-t", "fp")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            raise Failed(proc.why("the tmux pane closed"))

    deadline = time.monotonic() + UP_TIMEOUT
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.pid is not None and not proc.alive():
            raise Failed(proc.why("exited"))
        time.sleep(0.2)
    raise Failed(proc.why(f"no frame after {UP_TIMEOUT:.0f} s"))


# -- memory -----------------------------------------------------------------------------------

def kb(path: str, key: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    raise Failed(f"no {key} in {path}")


def footprint(proc: Proc) -> dict:
    """VmRSS and Pss in MB (MiB), and whether libLLVM/libclang is mapped."""
    pid = proc.pid
    try:
        rss = kb(f"/proc/{pid}/status", "VmRSS:")
        pss = kb(f"/proc/{pid}/smaps_rollup", "Pss:")
        with open(f"/proc/{pid}/maps") as f:
            llvm = any("libLLVM" in line or "libclang" in line for line in f)
    except FileNotFoundError:
        raise Failed(proc.why("exited while settling"))
    if not proc.alive():
        raise Failed(proc.why("exited while settling"))
    return {"rss": rss / 1024, "pss": pss / 1024, "llvm": llvm}


# -- scrape latency ---------------------------------------------------------------------------

def scrape_ms(port: int) -> float:
    t0 = time.perf_counter()
    status, _body = get(port)
    t = time.perf_counter() - t0
    if status != 200:
        raise Failed(f"/metrics on port {port} answered {status}")
    return t * 1000


def p90(xs) -> float:
    return statistics.quantiles(xs, n=10, method="inclusive")[8]


def latency(mfd_port: int, ne_port: int, n: int, warmup: int) -> dict:
    for _ in range(warmup):
        scrape_ms(mfd_port)
        scrape_ms(ne_port)
    ours, base = [], []
    for i in range(n):  # alternating, and which goes first alternates too
        pair = [(mfd_port, ours), (ne_port, base)]
        for port, out in (pair if i % 2 == 0 else pair[::-1]):
            out.append(scrape_ms(port))
    m = {"mfd_med": median(ours), "mfd_p90": p90(ours),
         "ne_med": median(base), "ne_p90": p90(base)}
    m["ratio_med"] = m["mfd_med"] / m["ne_med"]
    m["ratio_p90"] = m["mfd_p90"] / m["ne_p90"]
    return m


# -- one run ---------------------------------------------------------------------------------

def mode_argv(name: str, tmp: str, port: int) -> List[str]:
    args, _kind = MODES[name]
    return [a.format(db=os.path.join(tmp, f"{name}.db"), port=port) for a in args]


def shown(name: str) -> str:
    """The mode's command line as printed: PORT and DB.db for the per-run values."""
    return "mfd " + " ".join(a.format(db="DB.db", port="PORT") for a in MODES[name][0])


def start_mode(name: str, tmp: str):
    port = free_port()
    argv = [sys.executable, "-m", "mfd", *mode_argv(name, tmp, port)]
    log = os.path.join(tmp, f"{name}.stderr")
    kind = MODES[name][1]
    if kind == "tmux":
        proc = Proc.in_tmux(argv, log)
        wait_tmux(proc)
    elif kind == "http":
        proc = Proc(argv, log)
        wait_http(proc, port, b"mfd_build_info")
    else:
        proc = Proc(argv, log, stdout_lines=True)
        db = os.path.join(tmp, f"{name}.db")
        wait_until(proc, lambda: proc.first_line.is_set() and
                   (kind != "record" or os.path.exists(db)), "first line on stdout")
    return proc, port


def one_run(modes, a, tmp: str, say) -> dict:
    """{"modes": {name: footprint dict or "failed: ..."}, "baseline": ..., "latency": ...}"""
    out: Dict[str, object] = {"modes": {}, "baseline": None, "latency": None}
    ne_port = free_port()
    ne = Proc([NODE_EXPORTER, *NODE_EXPORTER_ARGS, f"--web.listen-address=127.0.0.1:{ne_port}"],
              os.path.join(tmp, "node_exporter.stderr"))
    try:
        wait_http(ne, ne_port, b"node_buddyinfo_blocks")
    except Failed as e:
        raise SystemExit(f"footprint: node_exporter did not start: {e}")
    ne_up = time.monotonic()

    def baseline(wait: bool):
        if out["baseline"] is None:
            left = a.seconds - (time.monotonic() - ne_up)
            if left > 0 and not wait:
                return
            time.sleep(max(0.0, left))
            out["baseline"] = footprint(ne)

    try:
        for name in modes:
            say(f"  {name}: {shown(name)}")
            proc = None
            try:
                proc, port = start_mode(name, tmp)
                time.sleep(a.seconds)
                out["modes"][name] = footprint(proc)
                if name == "serve" and a.scrapes:
                    baseline(wait=True)  # before node_exporter is scraped
                    say(f"  scrape latency: {a.scrapes} x 2 scrapes")
                    out["latency"] = latency(port, ne_port, a.scrapes, a.warmup)
            except Failed as e:
                out["modes"][name] = f"failed: {e}"
            finally:
                if proc is not None:
                    proc.stop()
            baseline(wait=False)
        baseline(wait=True)
    finally:
        ne.stop()
    return out


# -- report ----------------------------------------------------------------------------------

def combine(runs: List[dict], modes) -> dict:
    """Medians across runs; ratios to node_exporter are taken within each run first."""
    base = [r["baseline"] for r in runs]
    res = {"baseline": {"rss": median([b["rss"] for b in base]),
                        "pss": median([b["pss"] for b in base]),
                        "llvm": any(b["llvm"] for b in base), "ratio": 1.0}}
    for name in modes:
        ok = [(r["modes"][name], r["baseline"]) for r in runs
              if isinstance(r["modes"][name], dict)]
        if not ok:
            res[name] = runs[-1]["modes"][name]
            continue
        res[name] = {"rss": median([m["rss"] for m, _b in ok]),
                     "pss": median([m["pss"] for m, _b in ok]),
                     "ratio": median([m["rss"] / b["rss"] for m, b in ok]),
                     "llvm": any(m["llvm"] for m, _b in ok),
                     "runs": len(ok)}
    lat = [r["latency"] for r in runs if r["latency"]]
    res["latency"] = ({k: median([x[k] for x in lat]) for k in lat[0]} if lat else None)
    return res


def versions() -> str:
    def first_line(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            return (r.stdout or r.stderr).splitlines()[0].strip()
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    ne = first_line([NODE_EXPORTER, "--version"]).replace("node_exporter, version ", "")
    return f"{first_line([sys.executable, '-m', 'mfd', '--version'])}; node_exporter {ne}"


def machine() -> str:
    mem = kb("/proc/meminfo", "MemTotal:") / 1024 / 1024
    return (f"machine: kernel {os.uname().release}, nproc {len(os.sched_getaffinity(0))}, "
            f"MemTotal {mem:.1f} GiB; {versions()}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="all",
                    help="comma-separated, from: " + ", ".join(MODES) + " (default all)")
    ap.add_argument("--seconds", type=float, default=30.0,
                    help="settle time after a mode is up, before its memory is read")
    ap.add_argument("--runs", type=int, default=1, help="medians across runs when > 1")
    ap.add_argument("--scrapes", type=int, default=200,
                    help="timed scrapes of each exporter (0: none; needs the serve mode)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed scrapes of each first")
    a = ap.parse_args()
    modes = list(MODES) if a.modes == "all" else [m.strip() for m in a.modes.split(",")
                                                 if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        ap.error(f"unknown mode {', '.join(unknown) or '(none)'}; "
                 f"choose from {', '.join(MODES)}")
    if a.runs < 1 or a.seconds < 0 or a.scrapes < 0 or a.warmup < 0:
        ap.error("--runs must be >= 1, --seconds, --scrapes and --warmup >= 0")
    if a.scrapes and a.scrapes < 2:
        ap.error("--scrapes must be 0 or at least 2 (p90)")
    if os.geteuid() != 0:
        raise SystemExit("footprint: run as root: sudo .venv/bin/python bench/footprint.py")
    for tool in (NODE_EXPORTER,) + (("tmux",) if any(MODES[m][1] == "tmux" for m in modes)
                                     else ()):
        if not shutil.which(tool):
            raise SystemExit(f"footprint: needs {tool} (apt install "
                             f"{'prometheus-node-exporter' if tool == NODE_EXPORTER else tool})")

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)  # unwinds through the finally blocks
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    argv = getattr(sys, "orig_argv", [sys.executable] + sys.argv)
    print(("$ sudo " if os.environ.get("SUDO_USER") else "$ ") + shlex.join(argv))
    print(machine(), flush=True)

    def say(msg):
        print(msg, file=sys.stderr, flush=True)

    tmp = tempfile.mkdtemp(prefix="mfd-footprint-")
    runs = []
    try:
        for i in range(a.runs):
            say(f"run {i + 1}/{a.runs}:")
            runs.append(one_run(modes, a, tmp, say))
    except KeyboardInterrupt:
        say("footprint: interrupted")
        return 130
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    res = combine(runs, modes)
    ne_cmd = "prometheus-node-exporter " + " ".join(NODE_EXPORTER_ARGS)
    what = "medians of %d runs" % a.runs if a.runs > 1 else "1 run"
    print(f"{what}; memory read {a.seconds:g} s after each mode was up "
          f"(VmRSS, smaps_rollup Pss; MB = MiB); baseline: {ne_cmd}")
    w = max(len(m) for m in modes + ["node_exporter"])
    print(f"  {'mode':{w}s}  {'RSS MB':>7s}  {'PSS MB':>7s}  {'RSS/node_exporter':>17s}  "
          f"LLVM mapped")
    for name in modes + ["baseline"]:
        r = res[name]
        label = "node_exporter" if name == "baseline" else name
        if isinstance(r, dict):
            print(f"  {label:{w}s}  {r['rss']:7.1f}  {r['pss']:7.1f}  {r['ratio']:17.2f}  "
                  f"{'yes' if r['llvm'] else 'no'}")
        else:
            print(f"  {label:{w}s}  {r}")
    print("commands:")
    for name in modes:
        print(f"  {name:{w}s}  {shown(name)}")
    lat = res["latency"]
    if lat:
        print(f"scrape latency, {a.scrapes} GET /metrics each over a fresh connection, "
              f"alternating, after {a.warmup} each (ms):")
        print(f"  mfd serve:     median {lat['mfd_med']:.2f}  p90 {lat['mfd_p90']:.2f}")
        print(f"  node_exporter: median {lat['ne_med']:.2f}  p90 {lat['ne_p90']:.2f}")
        print(f"  ratio mfd/node_exporter: median {lat['ratio_med']:.2f}  "
              f"p90 {lat['ratio_p90']:.2f}")
    elif a.scrapes:
        why = "the serve mode failed" if "serve" in modes else "needs the serve mode"
        print(f"scrape latency: not measured ({why})")

    print("README rows (mode | RSS MB | PSS MB | RSS / node_exporter | LLVM mapped):")
    for name in modes + ["baseline"]:
        r = res[name]
        cmd = f"`{ne_cmd}`" if name == "baseline" else f"`{shown(name)}`"
        if isinstance(r, dict):
            print(f"| {cmd} | {r['rss']:.0f} | {r['pss']:.0f} | {r['ratio']:.2f} | "
                  f"{'yes' if r['llvm'] else 'no'} |")
        else:
            print(f"| {cmd} | {r} | | | |")
    if lat:
        print("README rows (scrape /metrics, fresh connection | mfd serve | node_exporter | "
              "ratio):")
        print(f"| median ms | {lat['mfd_med']:.2f} | {lat['ne_med']:.2f} | "
              f"{lat['ratio_med']:.2f} |")
        print(f"| p90 ms | {lat['mfd_p90']:.2f} | {lat['ne_p90']:.2f} | "
              f"{lat['ratio_p90']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
